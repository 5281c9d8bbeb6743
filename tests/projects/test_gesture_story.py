"""The gesture story in Chromium, on the real processes (daphne, a Celery worker) and a real data set
(BasicMotions smartwatch recordings from projects/demo_data): upload through the EI ingestion API, design
the impulse (spectral analysis + dense classifier + k-means), generate features, train while the live
chart moves, read the confusion matrix, run model testing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from projects.models import Job, TrainedModel
from tests.conftest import login_page

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DATA = Path(__file__).resolve().parents[2] / "projects" / "demo_data" / "basicmotions"
LABELS = ("badminton", "running", "standing", "walking")


def upload(base_url: str, key: str, category: str, per_label: int) -> int:
    sent = 0
    for label in LABELS:
        files = sorted((DATA / category).glob(f"{label}.*.json"))[:per_label]
        parts = [("data", (f.name, f.read_bytes(), "application/json")) for f in files]
        r = requests.post(
            f"{base_url}/api/{category}/files",
            files=parts,
            headers={"x-api-key": key, "x-label": label},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        sent += len(files)
    return sent


def wait_status(page, container: str, status: str, timeout_ms: int) -> None:
    page.wait_for_function(
        "([sel, want]) => { const b = document.querySelector(sel + ' [data-testid=job-status]');"
        " return b && (b.textContent === want || b.textContent === 'failed' || b.textContent === 'cancelled'); }",
        arg=[container, status],
        timeout=timeout_ms,
    )
    got = page.text_content(f"{container} [data-testid=job-status]")
    assert got == status, page.text_content(container)


def test_the_gesture_story_in_a_browser(
    project, api_keys, asgi_server, celery_worker_process, page
):
    base = asgi_server.url
    assert upload(base, api_keys["ingestion"], "training", 6) == 24
    assert upload(base, api_keys["ingestion"], "testing", 3) == 12

    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login_page(page, base, "bob")
    # design the impulse: 5 s windows every second, spectral analysis on all six axes, a dense
    # classifier (the default) and a k-means anomaly block added by hand
    page.goto(f"{base}/projects/{project.id}/impulse")
    page.wait_for_selector("input[name=window_size_ms]")
    assert page.text_content("[data-testid=impulse-version]") == "not saved yet"
    page.fill("input[name=window_size_ms]", "5000")
    page.dispatch_event("input[name=window_size_ms]", "change")
    page.fill("input[name=window_increase_ms]", "1000")
    page.dispatch_event("input[name=window_increase_ms]", "change")
    page.click("#add-learn")
    assert page.locator(".learn-block").count() == 2
    page.click("#save-impulse")
    page.wait_for_function(
        "document.querySelector('[data-testid=save-status]').textContent.startsWith('Saved')"
    )
    assert page.text_content("[data-testid=impulse-version]") == "version 1"
    spec = page.evaluate("JSON.parse(document.getElementById('impulse-json').value)")
    assert spec["input"]["window_size_ms"] == 5000
    assert [b["block"] for b in spec["learn"]] == ["classifier", "anomaly"]
    assert spec["dsp"][0]["axes"] == ["accX", "accY", "accZ", "gyrX", "gyrY", "gyrZ"]

    page.click("#generate-features")
    wait_status(page, "#features-job", "succeeded", 120_000)
    page.wait_for_selector("[data-testid=explorer-count]")
    assert "24 windows" not in page.text_content(
        "[data-testid=explorer-count]"
    )  # 6 windows per 10 s sample
    assert "144 windows" in page.text_content("[data-testid=explorer-count]")

    # train: the chart gains points while the job runs
    page.goto(f"{base}/projects/{project.id}/training")
    page.wait_for_function("document.getElementById('epochs').value !== ''")
    page.fill("#epochs", "60")
    page.click("#start-training")
    page.wait_for_selector("#train-job [data-testid=epoch-chart]")
    seen = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = page.text_content("#train-job [data-testid=job-status]")
        points = int(page.get_attribute("#train-job [data-testid=epoch-chart]", "data-points") or 0)
        if status == "running" and points:
            seen.add(points)
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)
    assert status == "succeeded", page.text_content("#train-job")
    assert len(seen) >= 2, f"the chart did not move while training: {sorted(seen)}"
    page.wait_for_selector("#model-card:not([hidden]) [data-testid=confusion-matrix]")
    assert page.locator("[data-testid=confusion-matrix] tr").count() == 5  # header + four labels
    accuracy = float(page.text_content("[data-testid=model-accuracy]").rstrip(" %"))
    model = TrainedModel.objects.get(project=project)
    assert accuracy == pytest.approx(100 * model.metrics["accuracy"], abs=0.1)
    assert accuracy >= 75
    assert model.anomaly["clusters"] == 32 and len(model.history["loss"]) == 60

    # a reload shows the same finished chart (from the row, not the websocket)
    page.reload()
    page.wait_for_function(
        "document.querySelector('#train-job [data-testid=epoch-chart]') &&"
        " document.querySelector('#train-job [data-testid=epoch-chart]').dataset.points === '60'"
    )

    page.goto(f"{base}/projects/{project.id}/model-testing")
    page.click("#classify-all")
    wait_status(page, "#test-job", "succeeded", 120_000)
    page.wait_for_selector("#results:not([hidden]) [data-testid=per-sample]")
    test_accuracy = float(page.text_content("[data-testid=test-accuracy]").rstrip(" %"))
    assert test_accuracy >= 60
    assert page.locator("[data-testid=per-sample] tr").count() == 13
    assert page.locator("#test-confusion [data-testid=confusion-matrix]").count() == 1
    page.click("[data-testid=per-sample] tr >> nth=1 >> text=Scores")
    page.wait_for_selector("[data-testid=score-chart][data-windows='6']")

    page.goto(f"{base}/projects/{project.id}/jobs")
    jobs = list(Job.objects.filter(project=project).values_list("kind", "status"))
    mine = [
        j for j in jobs if j[0] in ("features", "train", "test")
    ]  # training may chain others (optimize)
    assert mine == [("test", "succeeded"), ("train", "succeeded"), ("features", "succeeded")], jobs
    assert page.locator("[data-testid=jobs-table] tr").count() == 1 + len(jobs), page.inner_html(
        "[data-testid=jobs-table]"
    )
    train_job = Job.objects.get(project=project, kind="train")
    page.click(f"text=#{train_job.id}")
    page.wait_for_function(
        "document.querySelector('[data-testid=epoch-chart]') &&"
        " document.querySelector('[data-testid=epoch-chart]').dataset.points === '60'"
    )
    assert "epoch 60/60" in page.text_content("[data-testid=job-log]")
    # the transfer-learning form says when no weights are installed
    page.goto(f"{base}/projects/{project.id}/impulse")
    page.wait_for_selector(".learn-block")
    page.select_option(".learn-block >> nth=0 >> select >> nth=0", "transfer")
    assert "No pretrained weights" in page.text_content("[data-testid=weights-note]")
    assert not errors, errors
