"""Story 1, as a new user lives it: gestures on a microcontroller, from an empty project to flash and RAM.

The wizard's "Motion" project; simulated accelerometers (`studio-device simulate`) stream and record labelled
samples; a board on a serial port (a pty here) is forwarded with `studio-device forward`, and a recording is
started and stopped on its device page; the impulse the wizard set (spectral
analysis + dense classifier + k-means anomaly) generates features and trains; model testing; an Arduino library
built and downloaded on the deployment page, compiled here with arm-none-eabi-gcc for a Cortex-M4F.
Screenshots for the README walkthrough go to docs/img/ when STUDIO_DOCS_SCREENSHOTS=1 is set (otherwise to a
temporary directory, so a test run leaves the checkout as it was).
"""
from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tty
import zipfile
from pathlib import Path

import pytest
import requests

from tests.conftest import login_page

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
DOCS_IMG = ROOT / "docs" / "img"
LABELS = ("idle", "wave", "circle")
RATE_HZ = 62.5  # the wizard's motion impulse
SECONDS = 10
DEVICES = 5  # per label; the last two go to the test set (other simulated people than the training set)


def shot(page, name: str) -> None:
    folder = DOCS_IMG if os.environ.get("STUDIO_DOCS_SCREENSHOTS") else Path(tempfile.gettempdir()) / "story1-shots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"story1-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 10_000, f"{path} is a blank page"


def simulate(base: str, key: str, label: str, *, devices: int, seconds: float, record: bool, prefix: str,
             log: Path) -> subprocess.Popen:
    cmd = [str(Path(sys.executable).parent / "studio-device"), "simulate", "--url", base, "--api-key", key,
           "--devices", str(devices), "--rate", str(RATE_HZ), "--axes", "3", "--label", label,
           "--seconds", str(seconds), "--prefix", prefix]
    if not Path(cmd[0]).exists():
        cmd[:1] = [sys.executable, "-m", "workers.devices.cli"]
    if record:
        cmd.append("--record")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


class SerialBoard:
    """A board on a pty printing "accX,accY,accZ" lines of a wave gesture at RATE_HZ, like an Arduino sketch
    that prints its IMU over USB serial."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        os.write(self.master, b"IMU ready\r\n")
        start, i = time.monotonic(), 0
        while not self.stop.is_set():
            t = i / RATE_HZ
            row = (4 * math.sin(2 * math.pi * 1.3 * t), 1.5 * math.sin(2 * math.pi * 2.6 * t + 1), 9.8)
            try:
                os.write(self.master, (",".join(f"{v:.3f}" for v in row) + "\r\n").encode())
            except OSError:
                return
            i += 1
            time.sleep(max(0.0, start + i / RATE_HZ - time.monotonic()))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        os.close(self.master)
        os.close(self.slave)


def wait_status(page, container: str, status: str, timeout_ms: int) -> None:
    page.wait_for_function(
        "([sel, want]) => { const b = document.querySelector(sel + ' [data-testid=job-status]');"
        " return b && (b.textContent === want || b.textContent === 'failed' || b.textContent === 'cancelled'); }",
        arg=[container, status], timeout=timeout_ms)
    got = page.text_content(f"{container} [data-testid=job-status]")
    assert got == status, page.text_content(container)


def test_story_1_gestures_from_an_empty_project_to_an_arduino_library_built_for_cortex_m4(
        users, asgi_server, celery_worker_process, page, tmp_path):
    from projects import services
    from projects.models import Deployment, Project, Sample, TrainedModel

    base = asgi_server.url
    figures: dict = {}
    t0 = time.monotonic()

    # 1. A new project from the wizard: "Motion" sets the impulse and opens data acquisition.
    login_page(page, base, "alice")
    page.fill("#new-project input[name=name]", "Gestures")
    page.check("#project-kind input[value=motion]")
    shot(page, "01-new-project")
    page.click("#new-project button[type=submit]")
    page.wait_for_url("**/projects/*/data")
    project = Project.objects.get(name="Gestures")
    assert project.kind == "motion" and project.impulses.count() == 1

    # 2. Keys: an ingestion key for the devices, an editor key for the API calls of this test.
    actor = services.Actor(user=users["alice"])
    _, ingest_key = services.api_key_create(project=project, actor=actor, name="devices", role="ingestion")
    _, editor_key = services.api_key_create(project=project, actor=actor, name="scripts", role="editor")
    api = requests.Session()
    api.headers["x-api-key"] = editor_key

    # 3. Simulated devices stream and record one sample each per gesture (the three gestures at once).
    t_data = time.monotonic()
    runs = [simulate(base, ingest_key, label, devices=DEVICES, seconds=SECONDS, record=True, prefix=label,
                     log=tmp_path / f"sim-{label}.log") for label in LABELS]
    for label, proc in zip(LABELS, runs):
        assert proc.wait(timeout=120) == 0, (tmp_path / f"sim-{label}.log").read_text()[-2000:]
    figures["streamed and recorded"] = f"{len(LABELS) * DEVICES} samples in {time.monotonic() - t_data:.1f} s"
    assert Sample.objects.filter(project=project).count() == len(LABELS) * DEVICES

    # 4. A real board on a serial port, forwarded, watched and recorded from its page.
    board = SerialBoard()
    forward_cmd = [str(Path(sys.executable).parent / "studio-device"), "forward", "--port", board.port,
                   "--url", base, "--api-key", ingest_key, "--axes", "accX,accY,accZ", "--device-id", "board-uno"]
    if not Path(forward_cmd[0]).exists():
        forward_cmd[:1] = [sys.executable, "-m", "workers.devices.cli"]
    forward_log = tmp_path / "forward.log"
    live = subprocess.Popen(forward_cmd, cwd=ROOT, stdout=forward_log.open("w"), stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        page.goto(f"{base}/projects/{project.id}/devices")
        page.wait_for_selector("#devices tr[data-device=board-uno]", timeout=30_000)
        page.reload()
        page.wait_for_selector("#devices tr[data-device=board-uno] .badge.ok", timeout=30_000)
        page.click("#devices tr[data-device=board-uno] a")
        page.wait_for_function("!document.getElementById('live-status').textContent.startsWith('Waiting')",
                               timeout=30_000)
        page.fill("#recording input[name=label]", "wave")
        page.click("#rec-start")
        page.wait_for_function("document.getElementById('rec-stop').disabled === false")
        time.sleep(4)
        shot(page, "02-device-live")
        page.click("#rec-stop")
        page.wait_for_function("/saved|sample/i.test(document.getElementById('rec-status').textContent)",
                               timeout=30_000)
    finally:
        live.terminate()
        live.wait(timeout=30)
        board.close()
    assert "Detected 3 axes at 62.5 Hz" in forward_log.read_text(), forward_log.read_text()[-2000:]
    recorded = Sample.objects.get(project=project, device_name="board-uno", label="wave")
    assert recorded.interval_ms == 16 and recorded.duration_ms >= 3000

    # 5. Two simulated people per gesture become the test set (a bulk move through the API).
    rows = api.get(f"{base}/api/v1/projects/{project.id}/samples", params={"limit": 200}).json()["results"]
    held_out = [r["id"] for r in rows if r.get("device_name", "").endswith(("-0003", "-0004"))]
    assert len(held_out) == 2 * len(LABELS)
    r = api.post(f"{base}/api/v1/projects/{project.id}/samples/bulk",
                 json={"ids": held_out, "action": "move", "category": "testing"})
    assert r.status_code == 200, r.text
    page.goto(f"{base}/projects/{project.id}/data")
    page.wait_for_load_state("networkidle")
    shot(page, "03-data")

    # 6. The impulse the wizard set: generate features.
    page.goto(f"{base}/projects/{project.id}/impulse")
    page.wait_for_selector("#generate-features")
    page.wait_for_function("document.getElementById('impulse-version').textContent === 'version 1'")
    page.click("#generate-features")
    wait_status(page, "#features-job", "succeeded", 120_000)
    page.wait_for_selector("[data-testid=explorer-count]")
    shot(page, "04-impulse-features")

    # 7. Train (the wizard's 30 epochs).
    page.goto(f"{base}/projects/{project.id}/training")
    page.wait_for_function("document.getElementById('epochs').value !== ''")
    page.click("#start-training")
    page.wait_for_selector("#train-job [data-testid=job-status]")
    wait_status(page, "#train-job", "succeeded", 180_000)
    page.wait_for_selector("#model-card:not([hidden]) [data-testid=confusion-matrix]")
    shot(page, "05-training")
    model = TrainedModel.objects.get(project=project)
    figures["validation accuracy"] = f"{100 * model.metrics['accuracy']:.1f} %"
    assert model.anomaly is not None

    # 8. Model testing on the held-out people.
    page.goto(f"{base}/projects/{project.id}/model-testing")
    page.click("#classify-all")
    wait_status(page, "#test-job", "succeeded", 120_000)
    page.wait_for_selector("#results:not([hidden]) [data-testid=per-sample]")
    test_accuracy = float(page.text_content("[data-testid=test-accuracy]").rstrip(" %"))
    figures["test accuracy"] = f"{test_accuracy:.1f} %"
    shot(page, "06-model-testing")
    assert test_accuracy >= 80

    # 9. Deployment: build the Arduino library (verified on host, Cortex-M4 and QEMU) and download it.
    page.goto(f"{base}/projects/{project.id}/deployment")
    page.select_option("#deploy-target", "arduino")
    page.click("#deploy-build")
    page.wait_for_selector("[data-testid=deploy-download]", timeout=240_000)
    shot(page, "07-deployment")
    with page.expect_download() as info:
        page.click("[data-testid=deploy-download]")
    zip_path = tmp_path / "library.zip"
    info.value.save_as(str(zip_path))
    total = time.monotonic() - t0
    dep = Deployment.objects.get(project=project, target="arduino")
    assert zip_path.read_bytes()[:2] == b"PK" and zip_path.stat().st_size == dep.size

    # 10. Build it here for the Nano 33 BLE's core and read flash and RAM.
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.fail("arm-none-eabi-gcc is not installed (make test installs gcc-arm-none-eabi)")
    zipfile.ZipFile(io.BytesIO(zip_path.read_bytes())).extractall(tmp_path / "lib")
    root = next((tmp_path / "lib").iterdir())
    out = subprocess.run(["make", "arm"], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    from workers.ml.export.verify import _parse_sizes

    sizes = _parse_sizes(out.stdout)
    flash = sizes["impulse.elf"]["flash"] - sizes["baseline.elf"]["flash"]
    ram = sizes["impulse.elf"]["ram"] - sizes["baseline.elf"]["ram"]
    figures["Cortex-M4F flash (DSP + model + engine)"] = f"{flash / 1024:.1f} KB"
    figures["Cortex-M4F static RAM"] = f"{ram / 1024:.1f} KB"
    model.refresh_from_db()
    int8 = (model.variants or {}).get("int8") or {}
    if int8.get("size"):
        figures["int8 .tflite model"] = f"{int8['size'] / 1024:.1f} KB"
    figures["verification"] = "ok" if dep.report.get("ok") else f"FAILED: {dep.report}"
    # The wizard's k-means block is in the library: run_classifier fills result.anomaly, checked
    # against the Python engine's scores on host and QEMU.
    header = next((root / "src").glob("*_inferencing.h")).read_text()
    assert "#define STUDIO_HAS_ANOMALY 1" in header and "STUDIO_ANOMALY_THRESHOLD" in header
    assert dep.report.get("anomaly_block") and "is included" in dep.report.get("note", "")
    for where in ("host", "qemu"):
        assert dep.report[where]["anomaly"]["within_tolerance"], dep.report[where]["anomaly"]
    a = dep.report["host"]["anomaly"]
    figures["anomaly score, max |C - Python|"] = (
        f"{a['max_abs_error_from_python_features']:.1e} (Python features), "
        f"{a['max_abs_error']:.1e} (C features, shift up to {a['max_feature_shift']:.1e})"
    )
    figures["wall time from an empty project"] = f"{total:.0f} s"
    print("\nstory 1 (gestures):", "; ".join(f"{k}: {v}" for k, v in figures.items()))
    assert flash > 0 and ram > 0
    assert dep.report.get("ok"), dep.report
