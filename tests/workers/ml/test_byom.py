"""Bring-your-own-model: real .onnx/.tflite/.keras files inspected and profiled in a limited subprocess."""

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from workers.ml.byom import (
    ByomLimits,
    FeedsError,
    ModelFileError,
    ModelLimitError,
    check_feeds,
    inspect_model,
    profile_model,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "models"
FEATURES, CLASSES = 4, 3


def _linear_classifier_weights():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(FEATURES, CLASSES)).astype(np.float32)
    b = rng.normal(size=(CLASSES,)).astype(np.float32)
    return w, b


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    """x [batch, 4] -> Gemm -> Softmax, built with onnx.helper."""
    w, b = _linear_classifier_weights()
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", FEATURES])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", CLASSES])
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["features", "w", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "linear",
        [x],
        [y],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("onnx") / "linear.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def test_npz(tmp_path_factory):
    """A labelled test set whose labels are the model's own predictions on 30 of 40 samples."""
    w, b = _linear_classifier_weights()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, FEATURES)).astype(np.float32)
    y = np.argmax(x @ w + b, axis=1)
    y[:10] = (y[:10] + 1) % CLASSES  # 10 wrong labels: accuracy is exactly 0.75
    path = tmp_path_factory.mktemp("npz") / "test.npz"
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    """A small Keras model saved as .keras and converted to .tflite, plus one with a Lambda."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("keras")
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.save(d / "small.keras")
    (d / "small.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    lam = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2, name="times_two")]
    )
    lam.save(d / "lambda.keras")
    x = np.random.default_rng(3).normal(size=(20, 6, 6, 1)).astype(np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    np.savez(d / "test.npz", x=x, y=y)
    return {"dir": d, "params": model.count_params()}


def test_onnx_model_inspection_lists_io_parameters_and_macs(onnx_path):
    info = inspect_model(onnx_path)
    assert info["kind"] == "onnx"
    assert info["inputs"] == [
        {
            "name": "features",
            "shape": [None, 4],
            "dims": ["batch", 4],
            "dtype": "float",
            "quantization": None,
        }
    ]
    assert [o["name"] for o in info["outputs"]] == ["probs"]
    assert info["parameters"] == FEATURES * CLASSES + CLASSES
    assert info["macs"] == FEATURES * CLASSES and info["macs_complete"]
    assert info["size_bytes"] == onnx_path.stat().st_size


@pytest.mark.slow
def test_onnx_model_profile_reports_accuracy_and_int8_side_by_side(onnx_path, test_npz):
    report = profile_model(onnx_path, runs=10, test_npz=str(test_npz))
    model, int8 = report["model"], report["int8"]
    assert model["accuracy"] == pytest.approx(0.75)
    assert model["test_samples"] == 40
    assert set(model["latency_ms"]) == {"1", "4"}
    for lat in model["latency_ms"].values():
        assert 0 < lat["p50"] <= lat["p99"]
    assert model["peak_rss_bytes"] > model["runtime_rss_bytes"] > 0
    assert model["macs"] == FEATURES * CLASSES
    assert int8["calibration"].startswith("test set x (40 samples)")
    assert int8["quantized_tensors"] > 0
    assert int8["accuracy"] >= 0.6
    assert int8["vs_float"]["samples"] == 40
    assert int8["vs_float"]["top1_agreement"] >= 0.85


def test_profile_with_a_test_set_of_the_wrong_shape_names_both_shapes(onnx_path, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((5, 7), np.float32), y=np.zeros(5, np.int64))
    with pytest.raises(ModelFileError, match=r"samples of shape \(7\).*takes \(\?, 4\)"):
        profile_model(onnx_path, runs=2, test_npz=str(bad))


def test_test_set_with_pickled_objects_is_refused(onnx_path, tmp_path):
    bad = tmp_path / "objects.npz"
    np.savez(bad, x=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3))
    with pytest.raises(ModelFileError, match="pickled"):
        profile_model(onnx_path, runs=2, test_npz=str(bad), int8=False)


def test_truncated_onnx_file_is_refused_as_corrupt(onnx_path, tmp_path):
    data = onnx_path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        inspect_model(cut)


def test_onnx_with_external_data_is_refused_without_reading_the_data(onnx_path, tmp_path):
    model = onnx.load(onnx_path)
    ext = tmp_path / "ext.onnx"
    onnx.save(
        model,
        ext,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (tmp_path / "weights.bin").exists()
    with pytest.raises(ModelFileError, match=r"external data.*\bw\b"):
        inspect_model(ext)
    # the check stands on the ONNX file alone: it refuses even when the data file is gone
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelFileError, match="external data"):
        profile_model(ext, runs=2)


def test_file_over_the_size_limit_is_refused_before_parsing(onnx_path):
    with pytest.raises(ModelFileError, match="over the size limit of 100 bytes"):
        inspect_model(onnx_path, limits=ByomLimits(max_file_bytes=100))


def test_pickles_are_refused_by_extension_and_by_header(tmp_path):
    import pickle

    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps({"w": [1, 2]}))
    with pytest.raises(ModelFileError, match="pickle"):
        inspect_model(pkl)
    disguised = tmp_path / "model.onnx"
    disguised.write_bytes(pickle.dumps({"w": [1, 2]}))
    with pytest.raises(ModelFileError, match="pickle"):
        inspect_model(disguised)


def test_memory_limit_too_small_gives_a_clear_error_not_a_crash(onnx_path):
    with pytest.raises(ModelLimitError, match="memory limit of 64 MiB"):
        inspect_model(onnx_path, limits=ByomLimits(memory_bytes=64 * 1024 * 1024))


def test_memory_limit_too_small_for_the_vad_model_is_reported(tmp_path):
    # enough for Python and numpy, not for ONNX Runtime with the 2.3 MB VAD loaded
    with pytest.raises(ModelLimitError, match="memory limit"):
        inspect_model(DATA / "silero_vad.onnx", limits=ByomLimits(memory_bytes=200 * 1024 * 1024))


def test_time_limit_stops_the_worker_with_a_clear_error():
    with pytest.raises(ModelLimitError, match="time limit of 0.2 s"):
        inspect_model(DATA / "silero_vad.onnx", limits=ByomLimits(timeout_s=0.2))


def test_silero_vad_is_profiled_with_its_three_inputs():
    n = 6
    rng = np.random.default_rng(4)
    feeds = {
        "input": rng.normal(0, 0.1, (n, 1, 512)).astype(np.float32),
        "state": np.zeros((n, 2, 1, 128), np.float32),
        "sr": np.full((n,), 16000, np.int64),
    }
    # int8 off: quantize_static leaves this model's If-branch weights in float (see bench/byom.py)
    report = profile_model(DATA / "silero_vad.onnx", runs=10, representative=feeds, int8=False)
    info = report["inspect"]
    assert [i["name"] for i in info["inputs"]] == ["input", "state", "sr"]
    assert [i["dtype"] for i in info["inputs"]] == ["float", "float", "int64"]
    assert info["inputs"][1]["shape"] == [2, None, 128]
    assert info["parameters"] > 300_000
    model = report["model"]
    # STFT conv 198 k, four encoder convs 234 k, LSTM cell 131 k, decoder conv: ~564 k MACs
    # per 512-sample chunk, all inside If branches that static shape inference cannot see into
    assert 500_000 < model["macs"] < 650_000
    assert model["feeds"] == "representative data (6 feeds)"
    assert model["latency_ms"]["1"]["p50"] > 0
    assert report["int8"] is None


def test_sample_feeds_are_checked_against_quantized_half_and_bool_inputs():
    """The dtype rules beyond Silero's float/int64: an int8 input with a scale takes floats (the engine
    quantizes them) or integers within int8; a float16 input refuses values that overflow it; a bool
    input takes bools only."""
    q8 = [{"name": "x", "shape": [1, 4], "dtype": "int8", "quantization": {"scale": 0.1, "zero_point": 0}}]
    assert check_feeds({"x": np.zeros((3, 1, 4), np.float32)}, q8) == 3
    assert check_feeds({"x": np.full((2, 1, 4), -128, np.int16)}, q8) == 2
    with pytest.raises(FeedsError, match=r"input 'x' takes int8; its values -128\.\.300 fall outside -128\.\.127"):
        check_feeds({"x": np.array([[[-128, 0, 1, 300]]])}, q8)
    raw8 = [dict(q8[0], quantization=None)]
    with pytest.raises(FeedsError, match="integer arrays only"):
        check_feeds({"x": np.zeros((3, 1, 4), np.float32)}, raw8)
    half = [{"name": "h", "shape": [None, 2], "dtype": "float16"}]
    assert check_feeds({"h": np.ones((1, 5, 2))}, half) == 1
    with pytest.raises(FeedsError, match=r"'h' has NaN or infinite values \(first in feed 1\) once cast to float16"):
        check_feeds({"h": np.array([[[1.0, 2.0]], [[1e6, 0.0]]])}, half)
    flags = [{"name": "m", "shape": [3], "dtype": "bool"}]
    assert check_feeds({"m": np.ones((2, 3), bool)}, flags) == 2
    with pytest.raises(FeedsError, match="input 'm' takes bool arrays; got int64"):
        check_feeds({"m": np.ones((2, 3), np.int64)}, flags)
    with pytest.raises(FeedsError, match="input 'm': the array is a scalar"):
        check_feeds({"m": np.bool_(True)}, flags)
    with pytest.raises(FeedsError, match="3 feeds, over the limit of 2"):
        check_feeds({"m": np.ones((3, 3), bool)}, flags, max_feeds=2)


@pytest.mark.slow
def test_tflite_model_is_inspected_and_profiled_with_accuracy(keras_files):
    path = keras_files["dir"] / "small.tflite"
    info = inspect_model(path)
    assert info["inputs"][0]["shape"] == [None, 6, 6, 1]  # the signature keeps a dynamic batch
    assert info["inputs"][0]["dims"] == [1, 6, 6, 1] and info["inputs"][0]["dtype"] == "float32"
    assert info["outputs"][0]["dims"] == [1, 3]
    assert info["parameters"] == keras_files["params"]
    # conv: 4x4 outputs x 2 channels x 3x3 kernel; dense: 32 inputs x 3 units
    assert info["macs"] == 4 * 4 * 2 * 9 + 32 * 3
    report = profile_model(path, runs=10, test_npz=str(keras_files["dir"] / "test.npz"))
    assert report["runtime"] == "ai_edge_litert"
    assert report["model"]["accuracy"] == 1.0
    assert report["int8"] is None


def test_truncated_tflite_file_is_refused_as_corrupt(keras_files, tmp_path):
    data = (keras_files["dir"] / "small.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.tflite"):
        inspect_model(cut)
    not_tflite = tmp_path / "zeros.tflite"
    not_tflite.write_bytes(b"\0" * 64)
    with pytest.raises(ModelFileError, match="TFL3"):
        inspect_model(not_tflite)


def test_keras_file_with_a_lambda_layer_is_refused_naming_the_layer(keras_files):
    with pytest.raises(ModelFileError, match="Lambda layer.*times_two"):
        inspect_model(keras_files["dir"] / "lambda.keras")


def test_truncated_keras_archive_is_refused_as_corrupt(keras_files, tmp_path):
    data = (keras_files["dir"] / "small.keras").read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.keras.*corrupt or truncated"):
        inspect_model(cut)


def test_keras_zip_with_pickled_member_is_refused(keras_files, tmp_path):
    import zipfile

    bad = tmp_path / "bad.keras"
    shutil.copy(keras_files["dir"] / "small.keras", bad)
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("extra/data.pkl", b"\x80\x04N.")
    with pytest.raises(ModelFileError, match="pickled members"):
        inspect_model(bad)


@pytest.mark.slow
def test_keras_model_is_inspected_and_profiled_through_its_onnx_conversion(keras_files):
    path = keras_files["dir"] / "small.keras"
    # int8 off: the ONNX it becomes takes the int8 path tested above, and TensorFlow is slow to load
    report = profile_model(path, runs=10, test_npz=str(keras_files["dir"] / "test.npz"), int8=False)
    info = report["inspect"]
    assert info["parameters"] == keras_files["params"]
    assert info["macs"] == 4 * 4 * 2 * 9 + 32 * 3
    assert report["conversion"]["keras_vs_onnx"]["max_abs_diff"] < 1e-5
    assert report["model"]["accuracy"] == 1.0
    assert report["runtime"].startswith("onnxruntime")
