import gzip

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from workers.ml import optimize, profile
from workers.ml.learn.classifier import ArchSpec
from workers.ml.learn.settings import LearnParamError, TrainSettings
from workers.ml.learn.train import train

TINYML_OPS = {
    "FULLY_CONNECTED",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "MAX_POOL_2D",
    "AVERAGE_POOL_2D",
    "ADD",
    "RESHAPE",
    "SOFTMAX",
}


def blobs(n_features=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, n_features)) * 1.5
    y = np.repeat(np.arange(3), 80)
    return (centers[y] + rng.normal(size=(len(y), n_features))).astype(np.float32), y


@pytest.fixture(scope="module")
def trained():
    x, y = blobs()
    return (
        train(x, y, ["a", "b", "c"], ArchSpec(layers=(64, 32)), TrainSettings(epochs=5)).model,
        x,
        y,
    )


def op_names(model_bytes):
    return {d["op_name"] for d in Interpreter(model_content=model_bytes)._get_ops_details()}


@pytest.mark.parametrize(
    "arch",
    [
        ArchSpec(),
        ArchSpec(kind="conv1d", layers=(8, 16), input_shape=(10, 2)),
        ArchSpec(kind="conv2d", layers=(4, 8), input_shape=(5, 4)),
    ],
    ids=["dense", "conv1d", "conv2d"],
)
def test_int8_file_is_full_integer_and_uses_only_microcontroller_ops(arch):
    from workers.ml.learn.classifier import build_model

    model = build_model(arch, 20, 3)
    x, _ = blobs()
    q = optimize.to_tflite_int8(model, x)
    details = Interpreter(model_content=q)
    assert details.get_input_details()[0]["dtype"] == np.int8
    assert details.get_output_details()[0]["dtype"] == np.int8
    assert op_names(q) <= TINYML_OPS
    assert op_names(optimize.to_tflite_float(model)) <= TINYML_OPS


def test_int8_model_agrees_with_the_float_model(trained):
    model, x, _ = trained
    q = optimize.to_tflite_int8(model, x, max_samples=50)
    f = optimize.to_tflite_float(model)
    keras_top1 = model.predict(x, verbose=0).argmax(1)
    assert np.mean(profile.run_tflite(q, x).argmax(1) == keras_top1) > 0.97
    np.testing.assert_allclose(profile.run_tflite(f, x), model.predict(x, verbose=0), atol=1e-5)
    assert len(q) < len(f) / 1.5


def test_pruning_reaches_the_sparsity_and_the_gzip_of_the_int8_file_shrinks(trained):
    model, x, y = trained
    pruned = optimize.prune(model, x, y, sparsity=0.8, epochs=3, settings=TrainSettings(seed=1))
    assert abs(optimize.sparsity_of(pruned) - 0.8) <= 0.02
    assert optimize.sparsity_of(model) < 0.01  # the original is untouched
    assert np.mean(pruned.predict(x, verbose=0).argmax(1) == y) > 0.9
    plain = optimize.to_tflite_int8(model, x)
    thin = optimize.to_tflite_int8(pruned, x)
    assert len(gzip.compress(thin)) < 0.8 * len(gzip.compress(plain))


def test_polynomial_schedule_rises_fast_then_flattens_to_the_target():
    s = [optimize.polynomial_sparsity(t, 100, 0.8) for t in (0, 25, 50, 100, 150)]
    assert s[0] == 0 and s[-2] == s[-1] == 0.8
    assert s[1] > 0.8 * 0.25 and s[1] < s[2] < 0.8


def test_bad_pruning_and_conversion_inputs_are_rejected(trained):
    model, x, y = trained
    with pytest.raises(LearnParamError, match="sparsity"):
        optimize.prune(model, x, y, sparsity=1.5, epochs=1, settings=TrainSettings())
    with pytest.raises(LearnParamError, match="representative"):
        optimize.to_tflite_int8(model, np.full((4, 20), np.nan, np.float32))
