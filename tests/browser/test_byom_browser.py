"""The bring-your-own-model page in a real browser: upload a .tflite with a test set, watch the profile job,
land on the report with latency at 1 and 4 threads and the accuracy; then Silero VAD with sample inputs,
whose report says they fed it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import login_page, start_asgi_server, start_celery_worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_uploaded_model_is_profiled_and_its_report_shown(
    page, project, users, settings, tmp_path
):
    import keras
    from django.db import connection

    from workers.ml import optimize

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    (tmp_path / "tiny.tflite").write_bytes(optimize.to_tflite_float(model))
    buf = io.BytesIO()
    np.savez(buf, x=x, y=model.predict(x, verbose=0).argmax(axis=1))
    (tmp_path / "test.npz").write_bytes(buf.getvalue())

    settings.MEDIA_ROOT = str(tmp_path / "media")
    env = {"MEDIA_ROOT": settings.MEDIA_ROOT}
    worker = start_celery_worker(tmp_path, connection.settings_dict, extra_env=env)
    server = start_asgi_server(tmp_path, connection.settings_dict, extra_env=env)
    try:
        base = server.url
        login_page(page, base, "bob")
        page.goto(f"{base}/projects/{project.id}/models/upload")
        assert page.locator("nav a", has_text="Models").count() >= 1
        page.set_input_files("#byom-file", str(tmp_path / "tiny.tflite"))
        page.set_input_files("#byom-test", str(tmp_path / "test.npz"))
        page.click("[data-testid=byom-upload]")
        page.wait_for_url(f"{base}/projects/{project.id}/models/upload/*", timeout=120_000)
        table = page.locator("[data-testid=profile-table]")
        table.wait_for(timeout=60_000)
        text = table.text_content()
        assert "1 thread" in text and "4 threads" in text and "100.0 % of 12" in text

        # a model with three inputs, one of free size: its sample inputs go in the form's third field
        np.savez(tmp_path / "vad-feeds.npz", input=np.zeros((3, 1, 512), np.float32),
                 state=np.zeros((3, 2, 1, 128), np.float32), sr=np.full(3, 16000, np.int64))
        page.goto(f"{base}/projects/{project.id}/models/upload")
        assert "first axis = feeds" in page.locator("#byom-inputs-help").text_content()
        page.set_input_files("#byom-file", str(Path(__file__).parents[1] / "data/models/silero_vad.onnx"))
        page.set_input_files("#byom-inputs", str(tmp_path / "vad-feeds.npz"))
        page.click("[data-testid=byom-upload]")
        page.wait_for_url(lambda url: url != f"{base}/projects/{project.id}/models/upload", timeout=120_000)
        page.locator("[data-testid=profile-table]").wait_for(timeout=120_000)
        assert "Inputs fed: the uploaded sample inputs (3 feeds)" in page.locator(
            "[data-testid=profile-feeds]").text_content()
    finally:
        server.stop()
        worker.stop()
