import numpy as np
import pytest

from workers.ml import optimize, profile
from workers.ml.learn.classifier import ArchSpec, build_model


@pytest.fixture(scope="module")
def models():
    import keras

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 33)).astype(np.float32)
    dense = build_model(ArchSpec(layers=(20, 10)), 33, 4)
    cnn = build_model(ArchSpec(kind="conv2d", layers=(8,), input_shape=(8, 8)), 64, 3)
    x_img = np.random.default_rng(1).normal(size=(32, 64)).astype(np.float32)
    return {
        "dense_int8": optimize.to_tflite_int8(dense, x),
        "dense_float": optimize.to_tflite_float(dense),
        "cnn_int8": optimize.to_tflite_int8(cnn, x_img),
        "x": x,
        "x_img": x_img,
    }


def test_macs_are_counted_from_the_layer_shapes(models):
    assert profile.count_macs(models["dense_int8"]) == 33 * 20 + 20 * 10 + 10 * 4
    assert profile.count_macs(models["dense_float"]) == 33 * 20 + 20 * 10 + 10 * 4
    # 8x8x8 conv 3x3 over 1 channel, then 4x4x8 = 128 features -> 3
    assert profile.count_macs(models["cnn_int8"]) == 8 * 8 * 8 * 9 + 128 * 3


def test_tflite_micro_reports_a_real_arena_and_matches_litert_within_two_lsb(models):
    q = models["dense_int8"]
    arena = profile.tflm_arena_bytes(q)
    assert 500 < arena < 20_000
    scale, zero, dtype = profile.input_quantization(q)
    x_q = profile.quantize(models["x"][:16], scale, zero, dtype)
    litert = profile.run_tflite_raw(q, x_q).astype(int)
    tflm = profile.tflm_run(q, x_q).astype(int)
    assert tflm.dtype.kind == "i" and tflm.shape == (16, 4)
    # FC outputs differ by <= 1 LSB between the runtimes; softmax can stretch that to 2.
    assert np.abs(litert - tflm).max() <= 2
    assert np.mean(litert == tflm) > 0.9


def test_tflite_micro_matches_litert_within_one_lsb_without_softmax():
    import keras

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 33)).astype(np.float32)
    q = optimize.to_tflite_int8(build_model(ArchSpec(), 33, 4, task="regression"), x)
    x_q = profile.quantize(x, *profile.input_quantization(q))
    assert np.abs(profile.run_tflite_raw(q, x_q).astype(int) - profile.tflm_run(q, x_q)).max() <= 1


def test_a_too_small_arena_is_an_error_not_a_crash(models):
    with pytest.raises(profile.TflmError, match="arena"):
        profile.tflm_run(models["cnn_int8"], np.zeros((1, 64), np.int8), arena_size=64)


def test_footprint_reports_size_arena_macs_and_latency(models):
    fp = profile.footprint(models["cnn_int8"], latency_runs=10)
    assert fp["size_bytes"] == fp["flash_bytes"] == len(models["cnn_int8"])
    assert fp["arena_bytes"] > 8 * 8 * 8  # the conv output alone is 512 int8 values
    assert fp["macs"] == 8 * 8 * 8 * 9 + 128 * 3
    assert 0 < fp["host_latency"]["p50_ms"] <= fp["host_latency"]["p99_ms"]
    assert fp["m4_latency_estimate"]["ms"] == pytest.approx(fp["macs"] * 1.5 / 64_000)


def test_evaluate_tflite_scores_the_file_with_the_same_metrics(models):
    x = models["x"]
    y = profile.run_tflite(models["dense_float"], x).argmax(1)
    m = profile.evaluate_tflite(models["dense_int8"], x, y, ["a", "b", "c", "d"])
    assert m["accuracy"] > 0.8 and np.array(m["confusion_matrix"]).sum() == len(x)
