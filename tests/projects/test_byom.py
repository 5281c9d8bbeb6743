"""Bring-your-own-model: upload checks (size limit, kind, magic bytes, test set) and the profile job run
in-process through the worker's task on real tiny models, including the files it must refuse."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from projects.models import Job, UploadedModel
from workers.tasks import run_job

pytestmark = pytest.mark.django_db
N_IN, N_OUT = 8, 3


@pytest.fixture(autouse=True)
def fresh_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A tiny dense classifier as .keras, .tflite and .onnx, a matching test set and a Lambda model."""
    import keras

    from workers.ml import optimize
    from workers.ml.export.onnx import keras_to_onnx

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((N_IN,)),
            keras.layers.Dense(6, activation="relu"),
            keras.layers.Dense(N_OUT, activation="softmax"),
        ]
    )
    x = np.random.default_rng(0).normal(size=(30, N_IN)).astype(np.float32)
    y = model.predict(x, verbose=0).argmax(axis=1)
    where = tmp_path_factory.mktemp("tiny")
    model.save(where / "tiny.keras")
    lam = keras.Sequential(
        [keras.Input((N_IN,)), keras.layers.Lambda(lambda t: t * 2), keras.layers.Dense(N_OUT)]
    )
    lam.save(where / "lambda.keras")
    onnx_bytes = keras_to_onnx(model)
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    proto = onnx.load_from_string(onnx_bytes)
    convert_model_to_external_data(
        proto, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0
    )
    onnx.save_model(proto, str(where / "external.onnx"))
    npz = io.BytesIO()
    np.savez(npz, x=x, y=y)
    bad_npz = io.BytesIO()
    np.savez(bad_npz, x=np.zeros((5, N_IN + 3), np.float32), y=np.zeros(5, np.int64))
    return {
        "keras": (where / "tiny.keras").read_bytes(),
        "lambda": (where / "lambda.keras").read_bytes(),
        "tflite": optimize.to_tflite_float(model),
        "onnx": onnx_bytes,
        "external": (where / "external.onnx").read_bytes(),
        "npz": npz.getvalue(),
        "bad_npz": bad_npz.getvalue(),
    }


def upload(api, project, name, data, test_set=None, who="bob"):
    body = {"file": SimpleUploadedFile(name, data)}
    if test_set is not None:
        body["test_set"] = SimpleUploadedFile("test.npz", test_set)
    return api(who).post(f"/api/v1/projects/{project.id}/uploaded-models", body, format="multipart")


def profiled(api, project, name, data, test_set=None) -> tuple[Job, dict]:
    r = upload(api, project, name, data, test_set)
    assert r.status_code == 202, r.json()
    run_job.run(r.json()["job"]["id"])
    job = Job.objects.get(pk=r.json()["job"]["id"])
    return job, api("vic").get(f"/api/v1/uploaded-models/{r.json()['id']}").json()


@pytest.mark.slow
def test_a_tflite_upload_with_a_test_set_is_profiled_with_latency_memory_and_accuracy(
    api, project, tiny
):
    job, row = profiled(api, project, "tiny.tflite", tiny["tflite"], tiny["npz"])
    assert job.status == "succeeded", job.error
    m = row["report"]["model"]
    assert row["kind"] == "tflite" and row["has_test_set"]
    assert m["inputs"][0]["shape"][-1] == N_IN and m["outputs"][0]["shape"][-1] == N_OUT
    assert (
        set(m["latency_ms"]) == {"1", "4"}
        and m["latency_ms"]["1"]["p99"] >= m["latency_ms"]["1"]["p50"] > 0
    )
    assert (
        m["accuracy"] == 1.0 and m["test_samples"] == 30
    )  # labels are the model's own predictions
    # the weights (the converter drops the untrained all-zero biases)
    assert m["parameters"] >= N_IN * 6 + 6 * N_OUT and m["macs"] > 0 and m["peak_rss_bytes"] > 0
    assert row["report"]["accuracy_on"] == "the uploaded test set"
    listed = api("vic").get(f"/api/v1/projects/{project.id}/uploaded-models").json()
    assert [u["id"] for u in listed] == [row["id"]]


@pytest.mark.slow
def test_an_onnx_upload_is_profiled_beside_its_int8_version(api, project, tiny):
    job, row = profiled(api, project, "tiny.onnx", tiny["onnx"])
    assert job.status == "succeeded", job.error
    rep = row["report"]
    assert rep["int8"]["vs_float"]["samples"] > 0 and rep["int8"]["latency_ms"]["1"]["p50"] > 0
    assert "no test set was uploaded" in rep["accuracy_on"]


@pytest.mark.parametrize(
    "name, data, status, field, words",
    [
        ("model.pkl", b"\x80\x04junk", 400, "file", "pickle"),
        ("model.bin", b"1234", 400, "file", "unsupported extension"),
        ("model.tflite", b"\x00" * 64, 400, "file", "TFL3"),
        ("model.keras", b"not a zip at all", 400, "file", "not a .keras archive"),
        ("model.onnx", b"", 400, "file", "empty"),
    ],
)
def test_a_bad_upload_is_refused_naming_the_problem_and_nothing_is_saved(
    api, project, name, data, status, field, words
):
    r = upload(api, project, name, data)
    assert r.status_code == status, r.json()
    assert r.json()["field"] == field and words in r.json()["detail"]
    assert not UploadedModel.objects.exists() and not Job.objects.exists()


def test_a_file_over_the_size_limit_is_refused_with_413(api, project, settings, tiny):
    settings.STUDIO_MAX_MODEL_BYTES = 1000
    r = upload(api, project, "tiny.tflite", tiny["tflite"])
    assert r.status_code == 413 and "over the limit of 1000 bytes" in r.json()["detail"]
    assert not UploadedModel.objects.exists()


def test_a_test_set_without_y_is_refused(api, project, tiny):
    npz = io.BytesIO()
    np.savez(npz, x=np.zeros((3, N_IN)))
    r = upload(api, project, "tiny.tflite", tiny["tflite"], npz.getvalue())
    assert r.status_code == 400 and r.json()["field"] == "test_set" and "'y'" in r.json()["detail"]


def test_viewers_may_not_upload_and_outsiders_see_nothing(api, project, tiny):
    assert upload(api, project, "tiny.tflite", tiny["tflite"], who="vic").status_code == 403
    assert upload(api, project, "tiny.tflite", tiny["tflite"], who="charlie").status_code == 404


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, key, cut, test_set, words",
    [
        ("truncated.tflite", "tflite", 0.5, None, "truncated.tflite"),
        ("corrupt.onnx", "onnx", 0.3, None, "corrupt.onnx"),
        ("external.onnx", "external", None, None, "external data"),
        ("lambda.keras", "lambda", None, None, "Lambda"),
        ("tiny.tflite", "tflite", None, "bad_npz", "test set"),
    ],
)
def test_a_model_the_profiler_refuses_fails_its_job_naming_the_problem(
    api, project, tiny, name, key, cut, test_set, words
):
    data = tiny[key]
    if cut:
        data = data[: int(len(data) * cut)]
    job, row = profiled(api, project, name, data, tiny[test_set] if test_set else None)
    assert job.status == "failed"
    assert words in job.error, job.error
    assert words in row["report"]["error"]
