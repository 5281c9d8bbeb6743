"""Small Keras models converted to full-int8 .tflite, shared by the C generator and bundle tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def to_int8_tflite(model, input_shape: tuple[int, ...], seed: int = 0) -> bytes:
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(32):
            yield [rng.normal(size=(1, *input_shape)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def _randomize_biases(model, seed: int) -> None:
    # Untrained layers have zero biases, which the converter drops; real models have them.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if len(weights) == 2:
            layer.set_weights(
                [weights[0], rng.normal(scale=0.2, size=weights[1].shape).astype(np.float32)]
            )


def _keras():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    return keras, layers


@pytest.fixture(scope="session")
def dense_tflite() -> bytes:
    """Gesture-like dense model: 33 -> 20 -> 10 -> 4 softmax."""
    keras, layers = _keras()
    m = keras.Sequential(
        [
            keras.Input((33,)),
            layers.Dense(20, activation="relu"),
            layers.Dense(10, activation="relu"),
            layers.Dense(4, activation="softmax"),
        ]
    )
    _randomize_biases(m, 1)
    return to_int8_tflite(m, (33,))


@pytest.fixture(scope="session")
def conv1d_tflite() -> bytes:
    """A 1-D convolution over time written as Conv2D on [time, 1, axes]."""
    keras, layers = _keras()
    m = keras.Sequential(
        [
            keras.Input((64, 3)),
            layers.Reshape((64, 1, 3)),
            layers.Conv2D(8, (5, 1), strides=(2, 1), padding="same", activation="relu"),
            layers.MaxPooling2D((2, 1)),
            layers.Conv2D(6, (3, 1), padding="valid", activation="relu6"),
            layers.Flatten(),
            layers.Dense(4, activation="softmax"),
        ]
    )
    _randomize_biases(m, 2)
    return to_int8_tflite(m, (64, 3))


@pytest.fixture(scope="session")
def cnn_tflite() -> bytes:
    """Small 2-D CNN: conv, depthwise conv, add (residual), average and max pooling, dense."""
    keras, layers = _keras()
    i = keras.Input((16, 16, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(i)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.Add()([x, y])
    x = layers.AveragePooling2D(2)(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="valid", depth_multiplier=2)(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    o = layers.Dense(3, activation="softmax")(x)
    m = keras.Model(i, o)
    _randomize_biases(m, 3)
    return to_int8_tflite(m, (16, 16, 1))


@pytest.fixture(scope="session")
def flatten_tflite() -> bytes:
    """Classifier over the flatten block's 21 features (3 axes x 7 statistics)."""
    keras, layers = _keras()
    m = keras.Sequential(
        [
            keras.Input((21,)),
            layers.Dense(8, activation="relu"),
            layers.Dense(3, activation="softmax"),
        ]
    )
    _randomize_biases(m, 4)
    return to_int8_tflite(m, (21,))


MAIN_C = r"""
#include <stdio.h>
#include "model.h"
int main(void)
{
    static int8_t in[MODEL_INPUT_SIZE];
    int8_t out[MODEL_OUTPUT_SIZE];
    int v;
    for (;;) {
        for (int i = 0; i < MODEL_INPUT_SIZE; i++) {
            if (scanf("%d", &v) != 1) return 0;
            in[i] = (int8_t)v;
        }
        model_invoke(in, out);
        for (int i = 0; i < MODEL_OUTPUT_SIZE; i++) printf("%d ", out[i]);
        printf("\n");
    }
}
"""


def run_generated_c(cmodel, inputs: np.ndarray, workdir: Path) -> np.ndarray:
    """Compile the generated engine with gcc (-Werror) and run it on each int8 input row."""
    assert shutil.which("gcc"), "gcc is needed for the C generator tests"
    cmodel.write(workdir)
    (workdir / "main.c").write_text(MAIN_C)
    sources = sorted(str(p.name) for p in workdir.glob("*.c"))
    subprocess.run(
        [
            "gcc",
            "-std=c99",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-ffp-contract=off",
            "-o",
            "engine",
            *sources,
        ],
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    text = "\n".join(" ".join(str(int(v)) for v in row.reshape(-1)) for row in inputs)
    proc = subprocess.run(
        ["./engine"], cwd=workdir, input=text, capture_output=True, text=True, check=True
    )
    return np.array([[int(v) for v in line.split()] for line in proc.stdout.strip().splitlines()])


def litert_run(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes)
    it.allocate_tensors()
    din, dout = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for x in inputs:
        it.set_tensor(din["index"], x.reshape(din["shape"]).astype(np.int8))
        it.invoke()
        outs.append(it.get_tensor(dout["index"]).reshape(-1).copy())
    return np.array(outs, dtype=np.int64)
