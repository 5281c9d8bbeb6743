"""Neural-network architectures of the classification and regression learning blocks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

from workers.ml.learn.settings import LearnParamError

KINDS = ("dense", "conv1d", "conv2d")
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class ArchSpec:
    """A small network over the flat feature vector.

    kind: "dense" | "conv1d" | "conv2d".
    layers: units per dense layer, or filters per conv layer (1..8 layers, 1..1024 each).
    kernel_size: 1..15 (conv only). dropout: [0, 0.9).
    input_shape: the DSP output shape; conv1d takes (frames, channels) (empty = (n, 1)),
    conv2d takes (height, width) or (height, width, channels).
    """

    kind: str = "dense"
    layers: tuple[int, ...] = (20, 10)
    kernel_size: int = 3
    dropout: float = 0.1
    input_shape: tuple[int, ...] = ()

    def validate(self, n_inputs: int) -> tuple[int, ...]:
        """Check the spec against the feature count; return the shape the CNN reshapes to."""
        if self.kind not in KINDS:
            raise LearnParamError(f"ArchSpec.kind must be one of {', '.join(KINDS)}: {self.kind!r}")
        if not 1 <= len(self.layers) <= 8 or not all(
            isinstance(u, int) and 1 <= u <= 1024 for u in self.layers
        ):
            raise LearnParamError(f"ArchSpec.layers needs 1..8 sizes in 1..1024: {self.layers!r}")
        if not 1 <= self.kernel_size <= 15:
            raise LearnParamError(f"ArchSpec.kernel_size out of range 1..15: {self.kernel_size}")
        if not 0 <= self.dropout < 0.9:
            raise LearnParamError(f"ArchSpec.dropout out of range [0, 0.9): {self.dropout}")
        if self.kind == "dense":
            return (n_inputs,)
        shape = tuple(self.input_shape) or ((n_inputs, 1) if self.kind == "conv1d" else ())
        if self.kind == "conv1d" and len(shape) == 1:
            shape = (shape[0], 1)
        if self.kind == "conv2d" and len(shape) == 2:
            shape = (shape[0], shape[1], 1)
        want = 2 if self.kind == "conv1d" else 3
        if len(shape) != want:
            raise LearnParamError(
                f"ArchSpec.input_shape {self.input_shape!r} does not suit {self.kind}"
            )
        if math.prod(shape) != n_inputs:
            raise LearnParamError(
                f"ArchSpec.input_shape {shape} holds {math.prod(shape)} values, "
                f"the features have {n_inputs}"
            )
        return shape


def build_model(
    arch: ArchSpec, n_inputs: int, n_outputs: int, *, task: str = "classification"
) -> keras.Model:
    """Build the network; its input is always the flat feature vector.

    CNNs start with a Reshape. conv1d is built as Reshape to (frames, 1, channels)
    and Conv2D with (k, 1) kernels: Keras' Conv1D converts to EXPAND_DIMS/SQUEEZE
    around CONV_2D, ops that not every TFLM build carries, while this form stays
    within FULLY_CONNECTED, CONV_2D, MAX_POOL_2D, RESHAPE and SOFTMAX.
    """
    if task not in TASKS:
        raise LearnParamError(f"task must be one of {', '.join(TASKS)}: {task!r}")
    if n_outputs < 1:
        raise LearnParamError(f"n_outputs must be at least 1: {n_outputs}")
    shape = arch.validate(n_inputs)
    inputs = keras.Input((n_inputs,), name="features")
    h = inputs
    if arch.kind == "dense":
        for units in arch.layers:
            h = keras.layers.Dense(units, activation="relu")(h)
            if arch.dropout:
                h = keras.layers.Dropout(arch.dropout)(h)
    else:
        if arch.kind == "conv1d":
            h = keras.layers.Reshape((shape[0], 1, shape[1]))(h)
            kernel, pool = (arch.kernel_size, 1), (2, 1)
        else:
            h = keras.layers.Reshape(shape)(h)
            kernel, pool = (arch.kernel_size, arch.kernel_size), (2, 2)
        for filters in arch.layers:
            h = keras.layers.Conv2D(filters, kernel, padding="same", activation="relu")(h)
            # Pool only the axes that are still longer than 1, so deep stacks on short inputs work.
            size = h.shape[1:3]
            p = tuple(k if n > 1 else 1 for k, n in zip(pool, size, strict=True))
            if p != (1, 1):
                h = keras.layers.MaxPooling2D(p, padding="same")(h)
            if arch.dropout:
                h = keras.layers.Dropout(arch.dropout)(h)
        h = keras.layers.Flatten()(h)
    activation = "softmax" if task == "classification" else None
    outputs = keras.layers.Dense(n_outputs, activation=activation, name="output")(h)
    return keras.Model(inputs, outputs, name=f"{arch.kind}_{task}")
