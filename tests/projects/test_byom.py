"""Bring-your-own-model: upload checks (size limit, kind, magic bytes, test set, sample inputs) and the
profile job run in-process through the worker's task on real tiny models and Silero VAD, including the
files it must refuse."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from projects.models import Job, UploadedModel
from workers.tasks import run_job

pytestmark = pytest.mark.django_db
N_IN, N_OUT = 8, 3
SILERO = Path(__file__).resolve().parents[1] / "data" / "models" / "silero_vad.onnx"


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


def upload(api, project, name, data, test_set=None, who="bob", inputs=None, inputs_name="inputs.npz"):
    body = {"file": SimpleUploadedFile(name, data)}
    if test_set is not None:
        body["test_set"] = SimpleUploadedFile("test.npz", test_set)
    if inputs is not None:
        body["inputs"] = SimpleUploadedFile(inputs_name, inputs)
    return api(who).post(f"/api/v1/projects/{project.id}/uploaded-models", body, format="multipart")


def profiled(api, project, name, data, test_set=None, inputs=None) -> tuple[Job, dict]:
    r = upload(api, project, name, data, test_set, inputs=inputs)
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


# ---------------------------------------------------------------- sample inputs (Silero VAD: 3 inputs)


def npz(compressed: bool = False, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def vad_feeds(n: int = 4, samples: int = 512, **change) -> dict:
    """n feeds of Silero VAD's inputs: a 512-sample chunk of noise, a zero state, the sample rate."""
    feeds = {
        "input": np.random.default_rng(1).normal(0, 0.1, (n, 1, samples)).astype(np.float32),
        "state": np.zeros((n, 2, 1, 128), np.float32),
        "sr": np.full((n,), 16000, np.int64),
    }
    return {k: v for k, v in (feeds | change).items() if v is not None}


def stored_files(settings) -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


@pytest.mark.slow
def test_silero_vad_with_sample_inputs_is_profiled_on_them_and_deleted_with_them(
    api, project, settings, django_capture_on_commit_callbacks
):
    job, row = profiled(api, project, "silero_vad.onnx", SILERO.read_bytes(), inputs=npz(**vad_feeds(4)))
    assert job.status == "succeeded", job.error
    rep, m = row["report"], row["report"]["model"]
    assert row["has_inputs"] and not row["has_test_set"]
    assert [i["name"] for i in m["inputs"]] == ["input", "state", "sr"]
    assert set(m["latency_ms"]) == {"1", "4"} and m["latency_ms"]["1"]["p99"] >= m["latency_ms"]["1"]["p50"] > 0
    assert m["peak_rss_bytes"] > m["runtime_rss_bytes"] > 0
    assert m["feeds"] == "representative data (4 feeds)"  # not random data with free dimensions as 1
    assert rep["feeds"] == "the uploaded sample inputs (4 feeds)"
    assert rep["inputs"] == {"feeds": 4, "shapes": {"input": [4, 1, 512], "state": [4, 2, 1, 128], "sr": [4]}}
    # the int8 version is calibrated on the same feeds (or says why it could not be built)
    assert rep["int8"].get("calibration") == "representative data (4 feeds)" or rep["int8"].get("error")
    assert "no accuracy" in rep["accuracy_on"]
    assert {p.name for p in stored_files(settings)} == {"silero_vad.onnx", "inputs.npz"}

    with django_capture_on_commit_callbacks(execute=True):
        assert api("bob").delete(f"/api/v1/uploaded-models/{row['id']}").status_code == 204
    assert stored_files(settings) == []


@pytest.mark.slow
def test_sample_inputs_with_a_test_set_leave_timing_to_the_test_set_and_say_so(api, project, tiny):
    import onnx

    name = onnx.load_from_string(tiny["onnx"]).graph.input[0].name
    x = np.random.default_rng(2).normal(size=(5, 1, N_IN)).astype(np.float32)
    job, row = profiled(api, project, "tiny.onnx", tiny["onnx"], tiny["npz"], inputs=npz(**{name: x}))
    assert job.status == "succeeded", job.error
    assert row["report"]["model"]["feeds"] == "test set x (30 samples)"
    assert row["report"]["feeds"].endswith("the uploaded sample inputs were not used (a test set comes first)")


@pytest.mark.parametrize(
    "inputs, name, words",
    [
        (b"input,state,sr\n", "inputs.csv", "must be an .npz file"),
        (npz(**vad_feeds())[:300], "inputs.npz", "not an .npz (not a zip archive"),
        (npz(**vad_feeds(), extra=np.array([{"a": 1}], dtype=object)), "inputs.npz", "pickled (object) arrays"),
        (npz(**vad_feeds(sr=None)), "inputs.npz", "no array for model input 'sr'"),
        (npz(**vad_feeds(), srate=np.full(4, 16000)), "inputs.npz", "array 'srate' is not an input of the model"),
        (
            npz(**vad_feeds(state=np.zeros((3, 2, 1, 128), np.float32))),
            "inputs.npz",
            "same number of feeds (first axis); got 'input' 4, 'state' 3, 'sr' 4",
        ),
        (npz(**vad_feeds(0)), "inputs.npz", "no feeds"),
        (npz(**vad_feeds(257)), "inputs.npz", "257 feeds, over the limit of 256"),
        (
            npz(**vad_feeds(state=np.zeros((4, 2, 1, 64), np.float32))),
            "inputs.npz",
            "input 'state': each feed must have shape (2, ?, 128), got (2, 1, 64)",
        ),
        (npz(**vad_feeds(samples=0)), "inputs.npz", "input 'input': each feed must have shape (?, ?), got (1, 0)"),
        (npz(**vad_feeds(sr=np.full(4, 16000.0))), "inputs.npz", "input 'sr' takes int64 (integer arrays only); got float64"),
        (
            npz(**vad_feeds(input=np.full((4, 1, 512), np.nan, np.float32))),
            "inputs.npz",
            "input 'input' has NaN or infinite values (first in feed 0)",
        ),
        (npz(**vad_feeds(sr=np.zeros(4, bool))), "inputs.npz", "input 'sr' takes int64 (integer arrays only); got bool"),
    ],
)
def test_bad_sample_inputs_are_refused_naming_the_problem_and_nothing_is_saved(
    api, project, settings, inputs, name, words
):
    r = upload(api, project, "silero_vad.onnx", SILERO.read_bytes(), inputs=inputs, inputs_name=name)
    assert r.status_code == 400, r.json()
    assert r.json()["field"] == "inputs" and words in r.json()["detail"], r.json()["detail"]
    assert not UploadedModel.objects.exists() and not Job.objects.exists()
    assert stored_files(settings) == []


@pytest.mark.parametrize(
    "compressed, words",
    [(False, "'inputs.npz' is 4"), (True, "'inputs.npz' unpacks to 4")],
)
def test_sample_inputs_over_the_size_limit_are_refused_with_413(api, project, settings, compressed, words):
    settings.STUDIO_MAX_MODEL_BYTES = 4 * 1024 * 1024  # the model (2.3 MB) fits, 4 MiB of zeros do not
    data = npz(compressed, **vad_feeds(64, samples=16384, input=np.zeros((64, 1, 16384), np.float32)))
    r = upload(api, project, "silero_vad.onnx", SILERO.read_bytes(), inputs=data)
    assert r.status_code == 413 and r.json()["field"] == "inputs", r.json()
    assert words in r.json()["detail"] and f"over the limit of {4 * 1024 * 1024} bytes" in r.json()["detail"]
    assert not UploadedModel.objects.exists() and stored_files(settings) == []


def test_sample_inputs_with_a_model_that_cannot_be_read_are_refused_at_upload(api, project, settings):
    cut = SILERO.read_bytes()[:100_000]
    r = upload(api, project, "silero_vad.onnx", cut, inputs=npz(**vad_feeds()))
    assert r.status_code == 400 and r.json()["field"] == "file", r.json()
    assert "silero_vad.onnx" in r.json()["detail"] and "sample inputs" in r.json()["detail"]
    assert not UploadedModel.objects.exists() and stored_files(settings) == []
