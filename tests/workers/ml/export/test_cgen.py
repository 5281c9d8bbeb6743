"""The generated int8 C engine against the LiteRT interpreter (and TFLite Micro), bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.workers.ml.export.conftest import litert_run, run_generated_c, to_int8_tflite
from workers.ml.export.cgen import (
    CGenError,
    UnsupportedOpError,
    _Buffer,
    generate_c,
    plan_arena,
    quantize_multiplier,
)
from workers.ml.export.tflite_reader import TFLiteReadError, read_tflite


def _random_inputs(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, size=(n, size)).astype(np.int8)


def test_reader_returns_per_channel_weights_and_builtin_options(cnn_tflite):
    g = read_tflite(cnn_tflite)
    ops = [op.op for op in g.operators]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "MAX_POOL_2D"} <= set(ops)
    conv = next(op for op in g.operators if op.op == "CONV_2D")
    assert conv.options["padding"] == "SAME" and conv.options["fused_activation_function"] == "RELU"
    filt = g.tensors[conv.inputs[1]]
    assert filt.dtype == "int8" and filt.data.shape == (8, 3, 3, 1)
    assert filt.quantization.per_channel and filt.quantization.scale.size == 8
    dw = [op for op in g.operators if op.op == "DEPTHWISE_CONV_2D"]
    assert dw[1].options["depth_multiplier"] == 2 and dw[1].options["stride_h"] == 2


def test_reader_rejects_bytes_that_are_not_tflite():
    with pytest.raises(TFLiteReadError, match="TFL3"):
        read_tflite(b"not a model at all")


@pytest.mark.slow
def test_dense_model_outputs_are_identical_to_litert_on_50_inputs(dense_tflite, tmp_path):
    cm = generate_c(dense_tflite)
    assert cm.ops == ("FULLY_CONNECTED",) * 3 + ("SOFTMAX",)
    x = _random_inputs(50, cm.input_size)
    np.testing.assert_array_equal(run_generated_c(cm, x, tmp_path), litert_run(dense_tflite, x))


@pytest.mark.slow
def test_conv1d_as_conv2d_model_outputs_are_identical_to_litert(conv1d_tflite, tmp_path):
    cm = generate_c(conv1d_tflite)
    # Keras 3's Reshape/Flatten emit SHAPE/STRIDED_SLICE/PACK for the shape: dropped, static.
    assert "SHAPE" not in cm.ops and "CONV_2D" in cm.ops
    x = _random_inputs(50, cm.input_size, seed=1)
    np.testing.assert_array_equal(run_generated_c(cm, x, tmp_path), litert_run(conv1d_tflite, x))


@pytest.mark.slow
def test_cnn_with_depthwise_pooling_and_add_is_identical_to_litert(cnn_tflite, tmp_path):
    cm = generate_c(cnn_tflite)
    assert {"DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "MAX_POOL_2D"} <= set(cm.ops)
    x = _random_inputs(50, cm.input_size, seed=2)
    np.testing.assert_array_equal(run_generated_c(cm, x, tmp_path), litert_run(cnn_tflite, x))


_TFLM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from tflite_micro import runtime
    model = open(sys.argv[1], "rb").read()
    xs = np.load(sys.argv[2])
    it = runtime.Interpreter.from_bytes(model, arena_size=200_000)
    outs = []
    for x in xs:
        it.set_input(x.reshape(json.loads(sys.argv[3])), 0)
        it.invoke()
        outs.append(it.get_output(0).reshape(-1).astype(int).tolist())
    print(json.dumps(outs))
    """
)


@pytest.mark.slow
def test_tflm_match_mode_is_identical_to_tflite_micro(cnn_tflite, tmp_path):
    cm = generate_c(cnn_tflite, match="tflm", prefix="model")
    x = _random_inputs(30, cm.input_size, seed=3)
    (tmp_path / "m.tflite").write_bytes(cnn_tflite)
    np.save(tmp_path / "x.npy", x)
    # TFLite Micro can abort the process on a bad model: keep it in a child.
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _TFLM_SCRIPT,
            str(tmp_path / "m.tflite"),
            str(tmp_path / "x.npy"),
            json.dumps(list(cm.input_shape)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    expected = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    np.testing.assert_array_equal(run_generated_c(cm, x, tmp_path / "c"), expected)


def test_model_with_tanh_raises_unsupported_op_naming_tanh():
    import keras
    from keras import layers

    m = keras.Sequential([keras.Input((10,)), layers.Dense(8, activation="tanh"), layers.Dense(2)])
    with pytest.raises(UnsupportedOpError, match="op TANH is not supported by the C generator"):
        generate_c(to_int8_tflite(m, (10,)))


@pytest.mark.slow
def test_global_average_pooling_mean_is_identical_to_litert_and_refused_for_tflm(tmp_path):
    import keras
    from keras import layers

    i = keras.Input((8, 8, 2))
    x = layers.Conv2D(6, 3, activation="relu")(i)
    o = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    model = to_int8_tflite(keras.Model(i, o), (8, 8, 2))
    cm = generate_c(model)
    assert "MEAN" in cm.ops
    x = _random_inputs(50, cm.input_size, seed=4)
    np.testing.assert_array_equal(run_generated_c(cm, x, tmp_path), litert_run(model, x))
    with pytest.raises(UnsupportedOpError, match="op MEAN is not supported .* match='tflm'"):
        generate_c(model, match="tflm")


def test_float_input_model_is_rejected_naming_the_input_tensor():
    import keras
    import tensorflow as tf
    from keras import layers

    m = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    with pytest.raises(CGenError, match="input tensor .* is float32"):
        generate_c(conv.convert())


def test_arena_reuses_memory_of_tensors_whose_lifetimes_do_not_overlap():
    bufs = [_Buffer(0, 100, 0, 1), _Buffer(1, 60, 1, 2), _Buffer(2, 100, 2, 3)]
    size = plan_arena(bufs)
    # 0 and 2 never live together: they share offset 0, the 60-byte one sits after them.
    assert bufs[0].offset == bufs[2].offset == 0
    assert bufs[1].offset == 100
    assert size == 160


def test_dense_arena_is_smaller_than_the_sum_of_its_activations(dense_tflite):
    cm = generate_c(dense_tflite)
    # FC1 out (20 B) and FC2 out (10 B) live together; FC3 out (4 B) reuses FC1's bytes and
    # the softmax writes straight into the caller's output: 30 bytes, not 34.
    assert cm.arena_size == 30
    assert "static int8_t arena[" in cm.files["model.c"]
    assert "const int8_t model_op0_filter" in cm.files["model_data.c"]


def test_quantize_multiplier_matches_tflite_on_known_values():
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.0) == (0, 0)
    m, s = quantize_multiplier(0.0123)
    assert abs(m * 2.0 ** (s - 31) - 0.0123) < 1e-9


def test_prefix_must_be_a_c_identifier(dense_tflite):
    with pytest.raises(CGenError, match="not a C identifier"):
        generate_c(dense_tflite, prefix="my model")


def test_add_writes_in_place_so_the_cnn_arena_holds_two_activations_not_three(cnn_tflite):
    cm = generate_c(cnn_tflite)
    # conv out and depthwise out (16x16x8 = 2048 B each) are alive at the ADD; its output
    # reuses the conv output's bytes, which die there.
    assert cm.arena_size == 2 * 2048


def test_dense_on_a_3d_input_with_run_time_shapes_is_refused_with_the_reason():
    import keras
    from keras import layers

    i = keras.Input((10, 4))
    model = to_int8_tflite(keras.Model(i, layers.Dense(3)(i)), (10, 4))
    with pytest.raises(CGenError, match="only known at run time"):
        generate_c(model)
