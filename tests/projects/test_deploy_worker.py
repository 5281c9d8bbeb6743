"""End to end on a real Celery worker: a tiny gesture model trained in the studio gets its optimization table
without a click, every deployment target builds through the API, downloads with a matching sha256 and a
green report, and the Arduino and C++ zips build with their README commands and predict like the Python
pipeline."""

from __future__ import annotations

import hashlib
import io
import subprocess
import time
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from projects.models import Category, Job, Sample, TrainedModel
from projects.storage import read_bytes
from tests.conftest import start_celery_worker
from tests.helpers.gestures import add_samples, impulse_spec
from workers.ml import samples as canonical
from workers.ml.pipeline import parse_impulse, sample_features, sample_windows

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
TARGETS = ["tflite-float", "tflite-int8", "onnx-float", "onnx-int8", "arduino", "cpp"]


@pytest.fixture(autouse=True)
def shared_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def wait_job(job_id: int, worker, timeout: float = 240) -> Job:
    # Polls with plain reads: a logged-in test client writes its session, which would contend for SQLite.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            assert job.status == "succeeded", f"{job.error}\n{job.log[-3000:]}"
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish\n{worker.output()[-3000:]}")


def test_a_model_trained_in_the_studio_deploys_to_every_target_verified(
    api, project, tmp_path, settings
):
    from django.db import connection

    bob, vic = api("bob"), api("vic")
    add_samples(project, per_label=4)
    add_samples(project, per_label=1, category="testing", seed=7)
    spec = impulse_spec(epochs=30, anomaly=False)
    assert bob.put(f"/api/v1/projects/{project.id}/impulse", spec, format="json").status_code == 200
    worker = start_celery_worker(
        tmp_path, connection.settings_dict, extra_env={"MEDIA_ROOT": settings.MEDIA_ROOT}
    )
    try:
        for kind in ("features", "train"):
            r = bob.post(f"/api/v1/projects/{project.id}/jobs", {"kind": kind}, format="json")
            assert r.status_code == 202, r.json()
            done = wait_job(r.json()["id"], worker)
        model_id = done.result["model_id"]

        # the optimization table follows the training job by itself
        # (queued by the worker right after it marks the training job succeeded)
        deadline = time.monotonic() + 10
        while not Job.objects.filter(kind="optimize", params__model_id=model_id).exists():
            assert time.monotonic() < deadline, "no optimize job was queued after training"
            time.sleep(0.2)
        wait_job(Job.objects.get(kind="optimize", params__model_id=model_id).id, worker)
        table = vic.get(f"/api/v1/trained-models/{model_id}/variants").json()
        assert table["evaluated_on"] == "test set"
        rows = table["variants"]
        assert list(rows) == ["float32", "int8", "pruned", "pruned-int8"]
        assert rows["int8"]["size"] < rows["float32"]["size"] and rows["pruned"]["sparsity"] >= 0.45
        assert rows["pruned"]["size_gzip"] < rows["float32"]["size_gzip"]
        for r in rows.values():
            assert (
                r["accuracy"] >= 0.8
                and r["ram"] > 0
                and r["latency_host_ms"] > 0
                and r["latency_m4_ms"] > 0
            )
        assert rows["int8"]["c_flash"] > 0 and rows["float32"]["m4_cycles_per_mac"] == 6.0
        page = vic.get(f"/projects/{project.id}/models/{model_id}/")
        assert page.status_code == 200 and b'data-variant="pruned-int8"' in page.content

        jobs = {}
        for target in TARGETS:
            r = bob.post(
                f"/api/v1/projects/{project.id}/deployments",
                {"model": model_id, "target": target},
                format="json",
            )
            assert r.status_code == 202, r.json()
            jobs[target] = r.json()["id"]
        files = {}
        for target, job_id in jobs.items():
            result = wait_job(job_id, worker).result
            dep = vic.get(f"/api/v1/deployments/{result['deployment_id']}").json()
            assert dep["ok"] is True and all(
                s["status"] in ("ok", "skipped") for s in dep["report"]["steps"]
            ), dep
            got = vic.get(dep["download_url"])
            body = b"".join(got.streaming_content)
            assert hashlib.sha256(body).hexdigest() == dep["sha256"] and len(body) == dep["size"]
            assert got["Content-Disposition"] == f'attachment; filename="{dep["file_name"]}"'
            files[target] = body
        listed = vic.get(f"/api/v1/projects/{project.id}/deployments").json()
        assert sorted(d["target"] for d in listed) == sorted(TARGETS)

        # the float file brought back as one's own model is profiled on the project's test data (shapes fit)
        up = bob.post(
            f"/api/v1/projects/{project.id}/uploaded-models",
            {"file": SimpleUploadedFile("mine.tflite", files["tflite-float"])},
            format="multipart",
        )
        assert up.status_code == 202, up.json()
        wait_job(up.json()["job"]["id"], worker)
        report = vic.get(f"/api/v1/uploaded-models/{up.json()['id']}").json()["report"]
        assert report["accuracy_on"].startswith("the project's test set (15 windows")
        assert report["model"]["accuracy"] == rows["float32"]["accuracy"]
    finally:
        worker.stop()

    # the raw test windows, their Python-pipeline features and the int8 model's predictions in LiteRT
    from workers.ml import profile

    engine = parse_impulse(TrainedModel.objects.get(pk=model_id).impulse.spec)
    windows, feats = [], []
    for s in Sample.objects.filter(project=project, category=Category.TESTING).order_by("id"):
        payload = canonical.decode(read_bytes(s.payload_path))
        windows.append(sample_windows(payload, engine)[0])
        feats.append(sample_features(payload, engine)[0]["spectral"])
    windows, feats = np.concatenate(windows), np.concatenate(feats)
    labels = TrainedModel.objects.get(pk=model_id).labels
    python = [labels[i] for i in profile.run_tflite(files["tflite-int8"], feats).argmax(axis=1)]

    for target in ("arduino", "cpp"):
        root = tmp_path / target
        zipfile.ZipFile(io.BytesIO(files[target])).extractall(root)
        (lib,) = list(root.iterdir())
        assert (lib / "REPORT.md").exists() and (lib / "REPORT.json").exists()
        test = subprocess.run(
            ["make", "test"], check=False, cwd=lib, capture_output=True, text=True, timeout=180
        )
        assert test.returncode == 0, test.stdout + test.stderr
        if target == "cpp":
            assert (
                subprocess.run(
                    ["make"], check=False, cwd=lib, capture_output=True, timeout=180
                ).returncode
                == 0
            )
            text = "\n".join(", ".join(f"{v:.9g}" for v in w.reshape(-1)) for w in windows)
            (exe,) = list((lib / "build").glob("*_classify"))
            out = subprocess.run(
                [str(exe)],
                check=False,
                input=text,
                cwd=lib,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
            c_predictions = [
                line.split(": ", 1)[1]
                for line in out.stdout.splitlines()
                if line.startswith("prediction: ")
            ]
            assert c_predictions == python
