"""Transfer learning for images: a pretrained backbone (MobileNetV2, pluggable) plus a small head."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from workers.ml.learn.metrics import classification_metrics
from workers.ml.learn.settings import LearnParamError, TrainingCancelled, TrainSettings
from workers.ml.learn.train import TrainResult, _Batches, _Hooks, check_inputs, split_validation


class PretrainedWeightsMissing(FileNotFoundError):
    """The backbone's weights file is not in the pretrained directory."""


class WeightsFileMismatch(ValueError):
    """A weights file does not fit the backbone; the message names the first bad layer."""


@dataclass(frozen=True)
class Backbone:
    """How to build a headless backbone, name and load its weights file.

    ``input_scale``/``input_offset`` map features in [0, 1] (the image block's
    pixels / 255) to what the backbone was trained on.
    """

    build: Callable[[tuple[int, int, int], float], keras.Model]
    weights_file: Callable[[float, int], str]
    load: Callable[[keras.Model, Path], None]
    alphas: tuple[float, ...]
    sizes: tuple[int, ...]
    input_scale: float
    input_offset: float


def mobilenet_v2_weights_file(alpha: float, size: int) -> str:
    """The name Keras publishes the headless MobileNetV2 weights under."""
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{size}_no_top.h5"


def build_mobilenet_v2(input_shape: tuple[int, int, int], alpha: float) -> keras.Model:
    return keras.applications.MobileNetV2(
        input_shape=input_shape, alpha=alpha, include_top=False, weights=None
    )


def _legacy_h5():
    # Keras publishes MobileNetV2 weights in the legacy (Keras 2) HDF5 layout; Keras 3
    # reads and writes it only through this module.
    from keras.src.legacy.saving import legacy_h5_format

    return legacy_h5_format


def _file_layers(path: Path) -> list[tuple[str, list[tuple[int, ...]]]]:
    """(layer name, weight shapes) of every layer with weights, in file order."""
    import h5py

    h5 = _legacy_h5()
    try:
        with h5py.File(path, "r") as f:
            group = f.get("model_weights", f)
            layers = []
            for name in h5.load_attributes_from_hdf5_group(group, "layer_names"):
                g = group[name]
                weight_names = h5.load_attributes_from_hdf5_group(g, "weight_names")
                if weight_names:
                    layers.append((name, [tuple(g[w].shape) for w in weight_names]))
            return layers
    except (OSError, KeyError) as e:
        raise WeightsFileMismatch(f"{path}: not a Keras HDF5 weights file ({e})") from None


def _model_layers(model: keras.Model) -> list[tuple[str, list[tuple[int, ...]]]]:
    h5 = _legacy_h5()
    return [
        (layer.name, [tuple(w.shape) for w in h5._legacy_weights(layer)])
        for layer in model.layers
        if h5._legacy_weights(layer)
    ]


def check_model_weights_file(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Raise ``WeightsFileMismatch`` naming the first layer whose weight shapes differ."""
    path = Path(path)
    file_layers, model_layers = _file_layers(path), _model_layers(model)
    for (fname, fshapes), (mname, mshapes) in zip(file_layers, model_layers, strict=False):
        if fshapes != mshapes:
            raise WeightsFileMismatch(
                f"{path.name}: layer {mname} needs weights {mshapes}, "
                f"the file's layer {fname} has {fshapes}"
            )
    if len(file_layers) != len(model_layers):
        raise WeightsFileMismatch(
            f"{path.name}: the file has {len(file_layers)} layers with weights, "
            f"the backbone {len(model_layers)}"
        )


def check_weights_file(
    path: str | os.PathLike[str], alpha: float, size: int, backbone: str = "mobilenetv2"
) -> None:
    """Check by shape that the file holds the headless backbone of this alpha (and size)."""
    bb = _backbone(backbone)
    check_model_weights_file(bb.build((size, size, 3), alpha), path)


def _load_mobilenet(base: keras.Model, path: Path) -> None:
    check_model_weights_file(base, path)
    base.load_weights(str(path))


def save_base_weights(base: keras.Model, path: str | os.PathLike[str]) -> None:
    """Write base weights in the layout Keras publishes (legacy HDF5, any file name)."""
    import h5py

    with h5py.File(path, "w") as f:
        _legacy_h5().save_weights_to_hdf5_group(f, base)


def load_base_weights(base: keras.Model, path: str | os.PathLike[str]) -> None:
    """Load a MobileNetV2-layout weights file into ``base`` after checking it by shape."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsMissing(f"pretrained weights not found: {path}")
    _load_mobilenet(base, path)


def _efficientnet_lite0() -> Backbone:
    # Imported on use: the EfficientNet-Lite0 port is its own module.
    from workers.ml.learn import efficientnet_lite as eff

    def build(shape: tuple[int, int, int], alpha: float) -> keras.Model:
        return eff.build_efficientnet_lite0(shape, include_top=False)

    def load(model: keras.Model, path: Path) -> None:
        try:
            model.load_weights(str(path))
        except ValueError as e:
            raise WeightsFileMismatch(
                f"{path.name}: does not fit EfficientNet-Lite0 ({e})"
            ) from None

    return Backbone(
        build=build,
        weights_file=lambda alpha, size: eff.BASE_WEIGHTS_FILE,
        load=load,
        alphas=(1.0,),
        sizes=(96, 160, 224),
        # (255 x - 127) / 128: Google's EfficientNet-Lite normalisation.
        input_scale=255.0 / 128.0,
        input_offset=-127.0 / 128.0,
    )


BACKBONES: dict[str, Callable[[], Backbone]] = {
    "mobilenetv2": lambda: Backbone(
        build=build_mobilenet_v2,
        weights_file=mobilenet_v2_weights_file,
        load=_load_mobilenet,
        alphas=(0.35, 0.1),
        sizes=(96, 160),
        input_scale=2.0,  # MobileNetV2 was trained on [-1, 1]
        input_offset=-1.0,
    ),
    "efficientnet-lite0": _efficientnet_lite0,
}


def _backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise LearnParamError(
            f"TransferSpec.backbone must be one of {', '.join(BACKBONES)}: {name!r}"
        )
    return BACKBONES[name]()


@dataclass(frozen=True)
class TransferSpec:
    """An image classifier on a pretrained backbone.

    backbone: a key of BACKBONES. alpha: width multiplier (MobileNetV2: 0.35 or 0.1).
    image_size: square input side; the studio offers 96 and 160 (32..320 accepted).
    Input features are the flat RGB image, values in [0, 1].
    dense_units: hidden layer of the head (0 = none, up to 1024). dropout: [0, 0.9).
    fine_tune_layers: the last N backbone layers to unfreeze after the frozen phase
    (0 = no fine-tuning; batch-norm layers stay frozen); fine_tune_epochs: 0..1000;
    fine_tune_lr_factor: (0, 1], multiplies the learning rate for that phase.
    """

    backbone: str = "mobilenetv2"
    alpha: float = 0.35
    image_size: int = 96
    dense_units: int = 0
    dropout: float = 0.1
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 0
    fine_tune_lr_factor: float = 0.1

    def validate(self) -> Backbone:
        bb = _backbone(self.backbone)
        if self.alpha not in bb.alphas:
            raise LearnParamError(
                f"TransferSpec.alpha must be one of {bb.alphas} for {self.backbone}: {self.alpha}"
            )
        if not 32 <= self.image_size <= 320:
            raise LearnParamError(
                f"TransferSpec.image_size out of range 32..320: {self.image_size}"
            )
        if not 0 <= self.dense_units <= 1024:
            raise LearnParamError(
                f"TransferSpec.dense_units out of range 0..1024: {self.dense_units}"
            )
        if not 0 <= self.dropout < 0.9:
            raise LearnParamError(f"TransferSpec.dropout out of range [0, 0.9): {self.dropout}")
        if not 0 <= self.fine_tune_layers <= 1000 or not 0 <= self.fine_tune_epochs <= 1000:
            raise LearnParamError(
                f"TransferSpec.fine_tune_layers/fine_tune_epochs out of range 0..1000: "
                f"{self.fine_tune_layers}/{self.fine_tune_epochs}"
            )
        if not 0 < self.fine_tune_lr_factor <= 1:
            raise LearnParamError(
                f"TransferSpec.fine_tune_lr_factor out of range (0, 1]: {self.fine_tune_lr_factor}"
            )
        return bb


def available_backbones(pretrained_dir: str | os.PathLike[str] | None) -> list[dict]:
    """The backbone/alpha/size combinations whose weights file is installed."""
    found = []
    if not pretrained_dir:
        return found
    for name in BACKBONES:
        bb = _backbone(name)
        for alpha in bb.alphas:
            for size in bb.sizes:
                path = Path(pretrained_dir) / bb.weights_file(alpha, size)
                if path.is_file():
                    found.append(
                        {"backbone": name, "alpha": alpha, "image_size": size, "path": str(path)}
                    )
    return found


@dataclass
class TransferModel:
    """The model (flat image in [0, 1] -> softmax scores) and its parts, which share layers:
    ``extractor`` maps the image to pooled backbone features, ``head`` those to scores."""

    model: keras.Model
    base: keras.Model
    extractor: keras.Model
    head: keras.Model


def build_transfer_model(
    spec: TransferSpec,
    n_outputs: int,
    *,
    pretrained_dir: str | os.PathLike[str] | None,
    from_scratch: bool = False,
) -> TransferModel:
    """Backbone + average pooling + a small head.

    Pretrained: the backbone is frozen and runs in inference mode (its batch-norm
    statistics are the pretrained ones). ``from_scratch=True`` (only when asked
    for explicitly) starts from random weights and trains the whole network,
    batch norm included.
    """
    bb = spec.validate()
    shape = (spec.image_size, spec.image_size, 3)
    base = bb.build(shape, spec.alpha)
    if from_scratch:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                # With a few hundred steps, 0.999 leaves the moving statistics at their init.
                layer.momentum = 0.9
    else:
        path = Path(pretrained_dir or "") / bb.weights_file(spec.alpha, spec.image_size)
        if not pretrained_dir or not path.is_file():
            raise PretrainedWeightsMissing(
                f"pretrained weights for {spec.backbone} alpha {spec.alpha} "
                f"{spec.image_size}x{spec.image_size} not installed: {path} "
                "(install the file into STUDIO_PRETRAINED_DIR, or train from scratch explicitly)"
            )
        bb.load(base, path)
        base.trainable = False
    inputs = keras.Input((int(np.prod(shape)),), name="features")
    h = keras.layers.Reshape(shape)(inputs)
    # Becomes MUL/ADD in the .tflite file (TFLM has both); it lets the image block
    # keep one [0, 1] pixel format for every learning block.
    h = keras.layers.Rescaling(bb.input_scale, offset=bb.input_offset)(h)
    h = base(h, training=None if from_scratch else False)
    # AVERAGE_POOL_2D over the whole map rather than MEAN: the op TFLM kernels cover best.
    h = keras.layers.AveragePooling2D(pool_size=tuple(h.shape[1:3]))(h)
    pooled = keras.layers.Flatten()(h)
    head_in = keras.Input((pooled.shape[-1],), name="backbone_features")
    g = head_in
    if spec.dense_units:
        g = keras.layers.Dense(spec.dense_units, activation="relu")(g)
    if spec.dropout:
        g = keras.layers.Dropout(spec.dropout)(g)
    g = keras.layers.Dense(n_outputs, activation="softmax", name="output")(g)
    head = keras.Model(head_in, g, name="head")
    model = keras.Model(inputs, head(pooled), name=f"{spec.backbone}_transfer")
    return TransferModel(model, base, keras.Model(inputs, pooled, name="extractor"), head)


def recalibrate_batchnorm(base: keras.Model, model: keras.Model, x: np.ndarray) -> None:
    """Set every batch-norm layer's moving statistics to those of one pass over ``x``.

    After a short from-scratch training the moving averages still lag the weights;
    without this, inference-mode outputs can collapse to one class.
    """
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.0
    model(x[:256], training=True)
    for layer, momentum in zip(bns, saved, strict=True):
        layer.momentum = momentum


def _unfreeze_last(base: keras.Model, n_layers: int) -> None:
    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= len(base.layers) - n_layers and not isinstance(
            layer, keras.layers.BatchNormalization
        )


def train_transfer(
    x: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    spec: TransferSpec,
    settings: TrainSettings,
    *,
    pretrained_dir: str | os.PathLike[str] | None,
    from_scratch: bool = False,
    on_epoch: Callable[[int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Frozen-backbone training for ``settings.epochs``, then optional fine-tuning.

    ``x`` holds flat RGB images (image_size² × 3 values in [0, 1]); the rest is as
    ``train.train``. Epoch numbers passed to ``on_epoch`` run on across both phases.
    """
    settings.validate()
    spec.validate()
    x = np.asarray(x, dtype=np.float32)
    y = check_inputs(x, np.asarray(y), labels, "classification")
    size = spec.image_size
    if x.shape[1] != size * size * 3:
        raise LearnParamError(
            f"x has {x.shape[1]} features per row; a {size}x{size} RGB image has {size * size * 3}"
        )
    keras.utils.set_random_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    train_idx, val_idx = split_validation(y, settings.validation_split, rng, True)
    tm = build_transfer_model(
        spec, len(labels), pretrained_dir=pretrained_dir, from_scratch=from_scratch
    )
    weights = np.ones(len(y), dtype=np.float32)
    if settings.class_balancing:
        counts = np.bincount(y[train_idx], minlength=len(labels)).astype(np.float64)
        per_class = np.divide(
            len(train_idx), len(labels) * counts, out=np.zeros(len(labels)), where=counts > 0
        )
        weights = per_class[y].astype(np.float32)
    has_val = len(val_idx) > 0
    hooks = _Hooks(on_epoch, should_stop)
    history: dict[str, list[float]] = {}
    # A frozen backbone in inference mode gives the same features every epoch: compute
    # them once and train only the head on them (one backbone pass instead of one
    # per epoch). Image augmentation needs the images, so it trains end to end.
    cached = not from_scratch and settings.augmentation == "none"
    inputs = tm.extractor.predict(x, verbose=0, batch_size=64) if cached else x
    trained = tm.head if cached else tm.model
    image_shape = (size, size, 3) if settings.augmentation == "image-flip" and not cached else None

    def phase(
        model: keras.Model, data: np.ndarray, epochs: int, lr: float, initial_epoch: int
    ) -> None:
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        callbacks: list[keras.callbacks.Callback] = [hooks]
        if settings.early_stopping_patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss" if has_val else "loss",
                    patience=settings.early_stopping_patience,
                    restore_best_weights=True,
                )
            )
        batches = _Batches(data[train_idx], y[train_idx], weights[train_idx], settings, image_shape)
        fit = model.fit(
            batches,
            epochs=initial_epoch + epochs,
            initial_epoch=initial_epoch,
            validation_data=(data[val_idx], y[val_idx]) if has_val else None,
            callbacks=callbacks,
            verbose=0,
        )
        if hooks.cancelled:
            raise TrainingCancelled("training cancelled")
        for k, v in fit.history.items():
            history.setdefault(k, []).extend(float(a) for a in v)

    phase(trained, inputs, settings.epochs, settings.learning_rate, 0)
    if from_scratch:
        recalibrate_batchnorm(tm.base, tm.model, x[train_idx])
    final, data = trained, inputs
    if spec.fine_tune_layers and spec.fine_tune_epochs and not from_scratch:
        _unfreeze_last(tm.base, spec.fine_tune_layers)
        phase(
            tm.model,
            x,
            spec.fine_tune_epochs,
            settings.learning_rate * spec.fine_tune_lr_factor,
            len(history.get("loss", [])),
        )
        final, data = tm.model, x
    eval_idx = val_idx if has_val else train_idx
    predictions = final.predict(data[eval_idx], verbose=0, batch_size=64)
    metrics = classification_metrics(y[eval_idx], predictions.argmax(axis=1), labels)
    p_true = np.clip(predictions[np.arange(len(eval_idx)), y[eval_idx]], 1e-7, 1.0)
    metrics["loss"] = float(-np.mean(np.log(p_true)))
    metrics["evaluated_on"] = "validation" if has_val else "training"
    metrics["epochs_run"] = len(history.get("loss", []))
    return TrainResult(tm.model, history, metrics, val_idx, predictions)
