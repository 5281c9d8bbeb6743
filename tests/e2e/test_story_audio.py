"""The keyword-spotting style story: the wizard's "Audio" project, WAV files uploaded from the data page, the
impulse it sets (1 s windows of 16 kHz audio, MFCC, a 1D CNN), training, model testing and an int8 .tflite.

The "keywords" are made here (no download): rising and falling chirps and background noise, one second each,
with random pitch, timing, loudness and noise, so the network has to read the spectrogram over time.
"""
from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import login_page
from tests.helpers.jobs import wait_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RATE = 16000
WORDS = ("up", "down", "noise")


def clip(word: str, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(RATE) / RATE
    out = rng.normal(0, 0.03, RATE)
    if word != "noise":
        start, length = rng.uniform(0.05, 0.3), rng.uniform(0.45, 0.6)
        lo, hi = rng.uniform(300, 500), rng.uniform(1400, 2200)
        f0, f1 = (lo, hi) if word == "up" else (hi, lo)
        on = (t >= start) & (t < start + length)
        tt = (t - start) / length
        phase = 2 * np.pi * length * (f0 * tt + (f1 - f0) * tt**2 / 2)
        out[on] += rng.uniform(0.3, 0.7) * np.sin(phase[on]) * np.hanning(on.sum())
    return out


def write_wavs(folder: Path, per_word: int, seed: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for word in WORDS:
        for k in range(per_word):
            pcm = (np.clip(clip(word, rng), -1, 1) * 32767).astype("<i2")
            path = folder / f"{word}.{seed}{k:03d}.wav"
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(RATE)
                w.writeframes(pcm.tobytes())
            paths.append(str(path))
    return paths


def test_keyword_spotting_story_wav_upload_mfcc_1d_cnn_train_test_and_int8(
        users, asgi_server, celery_worker_process, page, tmp_path):
    from projects import services
    from projects.models import Project, Sample, TrainedModel

    base = asgi_server.url
    t0 = time.monotonic()
    login_page(page, base, "alice")
    page.fill("#new-project input[name=name]", "Keywords")
    page.check("#project-kind input[value=audio]")
    page.click("#new-project button[type=submit]")
    page.wait_for_url("**/projects/*/data")
    project = Project.objects.get(name="Keywords")

    for category, per_word, seed in (("training", 24, 1), ("testing", 6, 2)):
        paths = write_wavs(tmp_path / category, per_word, seed)
        expected = Sample.objects.filter(project=project).count() + len(paths)
        page.set_input_files("#upload-files", paths)
        page.select_option("#upload-category", category)
        page.check("input[name=label-mode][value=infer]")
        page.click("#upload-start")
        deadline = time.monotonic() + 120
        while Sample.objects.filter(project=project).count() < expected and time.monotonic() < deadline:
            time.sleep(0.3)
        assert Sample.objects.filter(project=project).count() == expected
    assert set(Sample.objects.filter(project=project).values_list("kind", flat=True)) == {"audio"}

    _, key = services.api_key_create(project=project, actor=services.Actor(user=users["alice"]), name="t",
                                     role="editor")
    api = requests.Session()
    api.headers["x-api-key"] = key
    spec = api.get(f"{base}/api/v1/projects/{project.id}/impulse").json()["spec"]
    assert [d["block"] for d in spec["dsp"]] == ["mfcc"] and spec["learn"][0]["arch"]["kind"] == "conv1d"
    for kind, timeout in (("features", 120), ("train", 240), ("test", 120)):
        job = api.post(f"{base}/api/v1/projects/{project.id}/jobs", json={"kind": kind}).json()
        done = wait_job(api, base, job["id"], timeout)
        assert done["status"] == "succeeded", done["error"]
    model = TrainedModel.objects.get(project=project)
    test_accuracy = model.test_results["accuracy"]

    r = api.post(f"{base}/api/v1/projects/{project.id}/deployments", json={"model": model.id, "target": "tflite-int8"})
    assert r.status_code == 202, r.text
    done = wait_job(api, base, r.json()["id"], 240)
    assert done["status"] == "succeeded", done["error"]
    total = time.monotonic() - t0
    print(f"\nkeyword spotting: validation accuracy {100 * model.metrics['accuracy']:.1f} %, test accuracy "
          f"{100 * test_accuracy:.1f} %, int8 .tflite {done['result']['size'] / 1024:.1f} KB, "
          f"wall time from an empty project {total:.0f} s")
    assert test_accuracy >= 0.75  # per window, "uncertain" below 0.6 counted wrong
