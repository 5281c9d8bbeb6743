"""Story 3, as a new user lives it: a model of their own on a Raspberry Pi-class CPU.

The wizard's "Bring a model" project opens the model page; the user uploads an ONNX classifier and its
.npz test set there; the profile job measures latency and peak memory in ONNX Runtime, quantizes it to
int8 (onnxruntime, QDQ, calibrated on the test set) and compares accuracy; then a real third-party model
(Silero VAD, with state inputs and a free-size audio input) is profiled through the JSON API on sample
inputs the user uploads beside it.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import login_page
from tests.helpers.jobs import wait_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"


def make_digits_model(out: Path) -> tuple[Path, Path, float]:
    """A small ONNX classifier of scikit-learn's bundled 8x8 digits (no download), its test set and the
    Keras accuracy on it."""
    import keras
    import tensorflow as tf
    import tf2onnx
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, activation="relu"),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[train], y[train], epochs=20, batch_size=32, verbose=0)
    keras_accuracy = float(model.evaluate(x[test], y[test], verbose=0)[1])
    spec = (tf.TensorSpec((None, 64), tf.float32, name="pixels"),)
    proto, _ = tf2onnx.convert.from_function(tf.function(lambda v: model(v), input_signature=spec),
                                             input_signature=spec, opset=17)
    onnx_path, npz_path = out / "digits.onnx", out / "digits-test.npz"
    onnx_path.write_bytes(proto.SerializeToString())
    np.savez(npz_path, x=x[test], y=y[test])
    return onnx_path, npz_path, keras_accuracy


def test_story_3_bring_an_onnx_model_profile_it_quantize_to_int8_and_compare_accuracy(
        users, asgi_server, celery_worker_process, page, tmp_path):
    from projects import services
    from projects.models import Project, UploadedModel

    base = asgi_server.url
    t0 = time.monotonic()
    onnx_path, npz_path, keras_accuracy = make_digits_model(tmp_path)

    login_page(page, base, "alice")
    page.fill("#new-project input[name=name]", "Pi models")
    page.check("#project-kind input[value=model]")
    page.click("#new-project button[type=submit]")
    page.wait_for_url("**/projects/*/models/upload")
    project = Project.objects.get(name="Pi models")

    page.set_input_files("#byom-file", str(onnx_path))
    page.set_input_files("#byom-test", str(npz_path))
    page.click("[data-testid=byom-upload]")
    page.wait_for_url("**/models/upload/*")  # the upload opens the model's page, which follows the job
    page.wait_for_selector("[data-testid=profile-table]", timeout=180_000)
    row = UploadedModel.objects.select_related("job").get(project=project)
    assert row.job.status == "succeeded", row.job.error
    report = row.report
    fl, q = report["model"], report["int8"]
    assert fl["accuracy"] == pytest.approx(keras_accuracy, abs=0.01)  # ONNX Runtime = Keras
    assert q["accuracy"] >= fl["accuracy"] - 0.03 and q["vs_float"]["top1_agreement"] >= 0.95
    assert q["size_bytes"] < 0.5 * fl["size_bytes"]
    took = time.monotonic() - t0

    # A real model with state inputs (Silero VAD), through the API like a script would.
    _, key = services.api_key_create(project=project, actor=services.Actor(user=users["alice"]), name="t",
                                     role="editor")
    api = requests.Session()
    api.headers["x-api-key"] = key
    # Four 32 ms chunks of 16 kHz audio, the zero state a stream starts from, the sample rate.
    feeds = io.BytesIO()
    np.savez(feeds, input=np.random.default_rng(0).normal(0, 0.1, (4, 1, 512)).astype(np.float32),
             state=np.zeros((4, 2, 1, 128), np.float32), sr=np.full(4, 16000, np.int64))
    with (MODELS / "silero_vad.onnx").open("rb") as fh:
        r = api.post(f"{base}/api/v1/projects/{project.id}/uploaded-models",
                     files={"file": fh, "inputs": ("vad-feeds.npz", feeds.getvalue())})
    assert r.status_code == 202, r.text
    body = r.json()
    done = wait_job(api, base, body["job"]["id"], 180)
    vad = api.get(f"{base}/api/v1/uploaded-models/{body['id']}").json()["report"]

    def lat(part: dict) -> str:
        return " / ".join(f"{t} thread(s) {v['p50']:.3f} ms" for t, v in part["latency_ms"].items())

    figures = {
        "digits MLP (ONNX) float32": f"{fl['size_bytes'] / 1024:.1f} KB, accuracy {100 * fl['accuracy']:.1f} %, "
                                     f"p50 {lat(fl)}, peak RSS {fl['peak_rss_bytes'] / 2**20:.0f} MiB",
        "int8 (onnxruntime QDQ)": f"{q['size_bytes'] / 1024:.1f} KB, accuracy {100 * q['accuracy']:.1f} %, "
                                  f"p50 {lat(q)}, top-1 agreement {100 * q['vs_float']['top1_agreement']:.1f} %",
        "wall time from an empty project to the int8 comparison": f"{took:.0f} s",
    }
    assert done["status"] == "succeeded", done["error"]
    figures["Silero VAD float32"] = (f"{vad['model']['size_bytes'] / 1e6:.1f} MB, p50 {lat(vad['model'])}, "
                                     f"peak RSS {vad['model']['peak_rss_bytes'] / 2**20:.0f} MiB")
    if vad.get("int8") and vad["int8"].get("latency_ms"):
        figures["Silero VAD int8"] = f"{vad['int8']['size_bytes'] / 1e6:.1f} MB, p50 {lat(vad['int8'])}"
    print("\nstory 3 (BYOM):", "; ".join(f"{k}: {v}" for k, v in figures.items()))
    # Silero's free-size audio input is fed the uploaded 512-sample chunks, not random data with free
    # dimensions as 1 (which its STFT refuses)
    assert vad["feeds"] == "the uploaded sample inputs (4 feeds)" and vad["inputs"]["feeds"] == 4
    assert vad["model"]["latency_ms"]["1"]["p50"] > 0 and vad["model"]["peak_rss_bytes"] > 0
