"""Keras -> ONNX export and int8 quantization, checked by running both in ONNX Runtime."""

import numpy as np
import onnx
import pytest

from workers.ml.export.onnx import (
    OnnxExportError,
    keras_to_onnx,
    predicted_class,
    quantize_onnx_int8,
    run_onnx,
    top1_agreement,
    verify_onnx,
)


@pytest.fixture(scope="module")
def trained():
    """A tiny conv classifier really trained (a few epochs) on separable synthetic images."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 8, 8, 1)).astype("float32")
    # class c lights up rows 2c..2c+2: learnable by a small conv net in a few epochs
    for c in range(3):
        x[y == c, 2 * c : 2 * c + 2, :, 0] += 1.5
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.DepthwiseConv2D(3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model, x, y


@pytest.fixture(scope="module")
def onnx_bytes(trained):
    return keras_to_onnx(trained[0])


@pytest.mark.slow
def test_keras_model_exported_to_onnx_matches_keras_within_1e_5(trained, onnx_bytes):
    model, x, _ = trained
    check = verify_onnx(onnx_bytes, model, x[:64])
    assert check["max_abs_diff"] < 1e-5
    assert check["top1_agreement"] == 1.0
    graph = onnx.load_model_from_string(onnx_bytes)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) == 17
    # the batch axis stays dynamic: a batch of 64 and a single sample both run
    assert run_onnx(onnx_bytes, x[:1]).shape == (1, 3)


@pytest.mark.slow
def test_int8_onnx_runs_and_agrees_on_top1_for_most_inputs(trained, onnx_bytes):
    _, x, y = trained
    int8 = quantize_onnx_int8(onnx_bytes, x[:100])
    graph = onnx.load_model_from_string(int8).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert int8_weights, "weights should be stored as int8"

    ref = run_onnx(onnx_bytes, x[100:])
    got = run_onnx(int8, x[100:])
    assert top1_agreement(ref, got) >= 0.9
    # the trained model is a real classifier, and int8 keeps it one
    assert np.mean(predicted_class(got) == y[100:]) >= 0.8


def test_quantization_of_a_multi_input_model_needs_representative_data_per_input():
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 2])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "add", [a, b], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data = model.SerializeToString()
    with pytest.raises(OnnxExportError, match=r"\['a', 'b'\]"):
        quantize_onnx_int8(data, np.zeros((4, 2), np.float32))
    with pytest.raises(OnnxExportError, match="2 inputs"):
        run_onnx(data, np.zeros((1, 2), np.float32))
    y = run_onnx(data, {"a": np.ones((1, 2), np.float32), "b": np.ones((1, 2), np.float32)})
    assert np.array_equal(y, np.full((1, 2), 2.0, np.float32))
