"""The training loop of the classification and regression learning blocks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from workers.ml.learn.classifier import ArchSpec, build_model
from workers.ml.learn.metrics import classification_metrics, regression_metrics
from workers.ml.learn.settings import LearnParamError, TrainingCancelled, TrainSettings


@dataclass
class TrainResult:
    model: keras.Model
    history: dict[str, list[float]]
    metrics: dict
    validation_indices: np.ndarray
    validation_predictions: np.ndarray


def check_inputs(x: np.ndarray, y: np.ndarray, labels: list[str], task: str) -> np.ndarray:
    """Validate the training set; return y as class indices (classification) or floats."""
    if x.ndim != 2:
        raise LearnParamError(f"x must be (samples, features); got shape {x.shape}")
    if len(x) != len(y):
        raise LearnParamError(f"x has {len(x)} samples but y has {len(y)}")
    if len(x) < 2:
        raise LearnParamError(f"training needs at least two samples; found {len(x)}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise LearnParamError(
            f"features of sample row {int(np.argmax(bad))} are NaN or infinite "
            f"({int(bad.sum())} rows in all)"
        )
    if task == "regression":
        y = np.asarray(y, dtype=np.float32)
        if not np.isfinite(y).all():
            raise LearnParamError(f"target of sample row {int(np.argmax(~np.isfinite(y)))} is NaN")
        return y.reshape(len(y), -1)
    if len(set(labels)) < 2:
        raise LearnParamError(f"a classifier needs at least two labels; found: {list(labels)}")
    if y.dtype.kind in "UOS":
        index = {label: i for i, label in enumerate(labels)}
        unknown = sorted({str(v) for v in y} - set(index))
        if unknown:
            raise LearnParamError(f"y holds labels not in labels: {unknown[:5]}")
        return np.array([index[str(v)] for v in y], dtype=np.int64)
    y = np.asarray(y).astype(np.int64)
    if y.min() < 0 or y.max() >= len(labels):
        raise LearnParamError(f"class index {int(y.max())} out of range for {len(labels)} labels")
    return y


def split_validation(
    y: np.ndarray, fraction: float, rng: np.random.Generator, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation indices; stratified per class so small classes appear in both."""
    n = len(y)
    if fraction <= 0:
        return rng.permutation(n), np.array([], dtype=np.int64)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(n)]
    train, val = [], []
    for g in groups:
        g = rng.permutation(g)
        k = round(len(g) * fraction) if len(g) > 1 else 0
        val.append(g[:k])
        train.append(g[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


class _Batches(keras.utils.PyDataset):
    """Seeded shuffling, per-sample weights and augmentation, the same on every run."""

    def __init__(self, x, y, sample_weight, settings: TrainSettings, image_shape):
        super().__init__()
        self.x, self.y, self.w = x, y, sample_weight
        self.settings = settings
        self.image_shape = image_shape
        self.rng = np.random.default_rng(settings.seed)
        self.noise_std = 0.1 * x.std(axis=0, keepdims=True)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.settings.batch_size)

    def __getitem__(self, i):
        bs = self.settings.batch_size
        idx = self.order[i * bs : (i + 1) * bs]
        xb = self.x[idx]
        aug = self.settings.augmentation
        if aug in ("noise", "audio-noise"):
            xb = xb + self.rng.normal(size=xb.shape).astype(np.float32) * self.noise_std
        elif aug == "image-flip":
            flip = self.rng.random(len(xb)) < 0.5
            imgs = xb.reshape((len(xb), *self.image_shape))
            imgs[flip] = imgs[flip, :, ::-1]
            xb = imgs.reshape(len(xb), -1)
        return xb.astype(np.float32), self.y[idx], self.w[idx]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))


class _Hooks(keras.callbacks.Callback):
    def __init__(self, on_epoch, should_stop):
        super().__init__()
        self.on_epoch, self.should_stop = on_epoch, should_stop
        self.cancelled = False

    def on_train_batch_end(self, batch, logs=None):
        if self.should_stop is not None and self.should_stop():
            self.cancelled = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.on_epoch is not None and not self.cancelled:
            self.on_epoch(epoch, {k: float(v) for k, v in (logs or {}).items()})


def train(
    x: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    arch: ArchSpec,
    settings: TrainSettings,
    *,
    task: str = "classification",
    on_epoch: Callable[[int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a network on flat features and evaluate it on a held-out split.

    Classification: ``y`` holds class indices into ``labels`` (or the label strings).
    Regression: ``y`` holds floats, one or more targets per sample; ``labels`` names
    the targets (may be empty). Runs are repeatable: the seed fixes the split, the
    initial weights, the batch order and the augmentation. ``should_stop`` is checked
    after every batch; when it returns True training stops and ``TrainingCancelled``
    is raised. Features are used as given: the DSP blocks normalise them.
    """
    settings.validate()
    x = np.asarray(x, dtype=np.float32)
    y = check_inputs(x, np.asarray(y), labels, task)
    classify = task == "classification"
    keras.utils.set_random_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    train_idx, val_idx = split_validation(
        y if classify else np.zeros(len(y)), settings.validation_split, rng, classify
    )
    n_outputs = len(labels) if classify else y.shape[1]
    model = build_model(arch, x.shape[1], n_outputs, task=task)
    image_shape = None
    if settings.augmentation == "image-flip":
        shape = arch.validate(x.shape[1])
        if len(shape) != 3:
            raise LearnParamError(
                "TrainSettings.augmentation image-flip needs a conv2d input_shape (h, w, c)"
            )
        image_shape = shape

    weights = np.ones(len(y), dtype=np.float32)
    if classify and settings.class_balancing:
        counts = np.bincount(y[train_idx], minlength=n_outputs).astype(np.float64)
        per_class = np.divide(
            len(train_idx), n_outputs * counts, out=np.zeros(n_outputs), where=counts > 0
        )
        weights = per_class[y].astype(np.float32)

    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss="sparse_categorical_crossentropy" if classify else "mse",
        metrics=["accuracy"] if classify else ["mae"],
    )
    hooks = _Hooks(on_epoch, should_stop)
    callbacks: list[keras.callbacks.Callback] = [hooks]
    has_val = len(val_idx) > 0
    if settings.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss" if has_val else "loss",
                patience=settings.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    data = _Batches(x[train_idx], y[train_idx], weights[train_idx], settings, image_shape)
    fit = model.fit(
        data,
        epochs=settings.epochs,
        validation_data=(x[val_idx], y[val_idx]) if has_val else None,
        callbacks=callbacks,
        verbose=0,
    )
    if hooks.cancelled:
        raise TrainingCancelled("training cancelled")

    eval_idx = val_idx if has_val else train_idx
    predictions = model.predict(x[eval_idx], verbose=0, batch_size=256)
    if classify:
        metrics = classification_metrics(y[eval_idx], predictions.argmax(axis=1), labels)
    else:
        metrics = regression_metrics(y[eval_idx], predictions)
    # Keras computes the loss from the softmax's logits, so it matches val_loss exactly.
    evaluated = model.evaluate(x[eval_idx], y[eval_idx], verbose=0, return_dict=True)
    metrics["loss"] = float(evaluated["loss"])
    metrics["evaluated_on"] = "validation" if has_val else "training"
    metrics["epochs_run"] = len(fit.history.get("loss", []))
    history = {k: [float(v) for v in vals] for k, vals in fit.history.items()}
    return TrainResult(model, history, metrics, val_idx, predictions)
