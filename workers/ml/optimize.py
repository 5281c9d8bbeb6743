"""Model compression: float and full-integer TFLite conversion, and magnitude pruning.

Pruning is our own Keras 3 callback: ``tensorflow-model-optimization`` (0.8) refuses
Keras 3 models and works only with ``TF_USE_LEGACY_KERAS=1`` plus the ``tf_keras``
package, which would pull the full ``tensorflow`` wheel. The callback zeroes the
smallest-magnitude kernel weights of every Dense/Conv layer on a polynomial schedule
(Zhu & Gupta 2017, the same schedule tfmot uses) while fine-tuning, so the network
recovers its accuracy around the holes. The pruned .tflite file is not smaller as
is; it compresses better (gzip, or a flash image compressor).
"""

from __future__ import annotations

import contextlib
import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from workers.ml.learn.settings import LearnParamError, TrainSettings

PRUNABLE = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv1D)


def _batch_one(model: keras.Model) -> keras.Model:
    """The same network with a batch size of 1 fixed in its input.

    With a dynamic batch the converter emits SHAPE/STRIDED_SLICE/PACK to compute the
    Reshape and Flatten targets; a fixed batch turns them into constant RESHAPEs,
    which is what a microcontroller runs anyway.
    """
    inp = keras.Input(model.inputs[0].shape[1:], batch_size=1, name="features")
    return keras.Model(inp, model(inp), name=model.name)


def to_tflite_float(model: keras.Model) -> bytes:
    """Convert to a float32 .tflite file (batch 1)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(_batch_one(model))
    return _convert(converter)


def _convert(converter) -> bytes:
    # Keras' SavedModel export prints its signature to stdout on every conversion;
    # it would flood the job log.
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


def to_tflite_int8(model: keras.Model, representative: np.ndarray, max_samples: int = 200) -> bytes:
    """Convert to a full-integer .tflite file: int8 weights, activations, input and output.

    ``representative`` are feature rows that calibrate the activation ranges; at most
    ``max_samples`` of them, spread evenly over the array, are used.
    """
    rep = np.asarray(representative, dtype=np.float32)
    if rep.ndim != 2 or len(rep) == 0:
        raise LearnParamError(
            f"representative must be a non-empty (samples, features) array: {rep.shape}"
        )
    if not np.isfinite(rep).all():
        raise LearnParamError("representative holds NaN or infinite features")
    if len(rep) > max_samples:
        rep = rep[np.linspace(0, len(rep) - 1, max_samples).astype(int)]

    def samples():
        for row in rep:
            yield [row[None, :]]

    converter = tf.lite.TFLiteConverter.from_keras_model(_batch_one(model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return _convert(converter)


def _prunable_kernels(model: keras.Model) -> list:
    kernels = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, PRUNABLE) and getattr(layer, "kernel", None) is not None:
            kernels.append(layer.kernel)
    return kernels


def sparsity_of(model: keras.Model) -> float:
    """Fraction of exactly-zero weights over all Dense/Conv kernels (biases excluded)."""
    kernels = [np.asarray(k) for k in _prunable_kernels(model)]
    total = sum(k.size for k in kernels)
    return float(sum(int((k == 0).sum()) for k in kernels) / total) if total else 0.0


def polynomial_sparsity(step: int, end_step: int, target: float, power: int = 3) -> float:
    """Sparsity at ``step``: rises from 0 to ``target`` at ``end_step``, fast first, then gently."""
    if end_step <= 0 or step >= end_step:
        return target
    return target * (1.0 - (1.0 - step / end_step) ** power)


class MagnitudePruning(keras.callbacks.Callback):
    """Zero the smallest |w| of each kernel after every batch, per the polynomial schedule."""

    def __init__(self, kernels: list, target: float, end_step: int):
        super().__init__()
        self.kernels, self.target, self.end_step = kernels, target, end_step
        self.step = 0
        self.masks = [np.ones(k.shape, dtype=bool) for k in kernels]

    def apply(self, sparsity: float) -> None:
        for i, kernel in enumerate(self.kernels):
            w = np.asarray(kernel)
            n_zero = round(sparsity * w.size)
            mask = np.ones(w.size, dtype=bool)
            if n_zero:
                # Earlier holes stay holes: they rank first, before live weights.
                score = np.where(self.masks[i].ravel(), np.abs(w.ravel()), -1.0)
                mask[np.argsort(score, kind="stable")[:n_zero]] = False
            self.masks[i] = mask.reshape(w.shape)
            kernel.assign(np.where(self.masks[i], w, 0).astype(w.dtype))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self.apply(polynomial_sparsity(self.step, self.end_step, self.target))

    def on_train_end(self, logs=None):
        self.apply(self.target)


def prune(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    sparsity: float,
    epochs: int,
    settings: TrainSettings,
) -> keras.Model:
    """Return a pruned, fine-tuned copy of ``model``; the original is left as it is.

    ``sparsity`` in [0, 0.99] is the fraction of each kernel set to zero. The schedule
    reaches it after two thirds of the ``epochs`` (0 = one-shot pruning, no
    fine-tuning), the rest fine-tunes with the holes fixed. ``y`` are class indices
    for a softmax model, targets otherwise. Uses the settings' learning rate,
    batch size and seed.
    """
    settings.validate()
    if not 0 <= sparsity <= 0.99:
        raise LearnParamError(f"sparsity out of range [0, 0.99]: {sparsity}")
    if not 0 <= epochs <= 1000:
        raise LearnParamError(f"epochs out of range 0..1000: {epochs}")
    x = np.asarray(x, dtype=np.float32)
    if len(x) != len(y):
        raise LearnParamError(f"x has {len(x)} samples but y has {len(y)}")
    keras.utils.set_random_seed(settings.seed)
    pruned = keras.models.clone_model(model)
    pruned.set_weights(model.get_weights())
    kernels = _prunable_kernels(pruned)
    if not kernels:
        raise LearnParamError(f"model {model.name} has no Dense or Conv layer to prune")
    steps_per_epoch = int(np.ceil(len(x) / settings.batch_size))
    callback = MagnitudePruning(
        kernels, sparsity, end_step=max(1, (2 * epochs * steps_per_epoch) // 3)
    )
    if epochs == 0:
        callback.apply(sparsity)
        return pruned
    softmax = getattr(pruned.layers[-1], "activation", None) is keras.activations.softmax
    pruned.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss="sparse_categorical_crossentropy" if softmax else "mse",
    )
    pruned.fit(
        x,
        np.asarray(y),
        epochs=epochs,
        batch_size=settings.batch_size,
        callbacks=[callback],
        verbose=0,
        shuffle=True,
    )
    return pruned
