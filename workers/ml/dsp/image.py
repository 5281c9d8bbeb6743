"""The image processing block: pixels scaled to 0..1 or to the int8 range, in RGB or grayscale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.ml.dsp.common import DspParamError, check_ranges, param

TITLE = "Image"
IMPLEMENTATION_VERSION = 1

# ITU-R BT.601 luma, the weights Pillow's "L" conversion uses
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Params:
    """Parameters of the image block. "0-1" divides by 255; "int8" subtracts 128 (-128..127),
    the range of a fully int8-quantized model's input."""

    scale: str = param("0-1", choices=("0-1", "int8"), help="Pixel range")
    color: str = param("rgb", choices=("rgb", "grayscale"), help="Channels")


def _image_shape(input_shape: tuple) -> tuple[int, int, int]:
    if len(input_shape) != 3 or input_shape[2] not in (1, 3) or min(input_shape) < 1:
        raise DspParamError(f"input_shape must be (height, width, 1 or 3), got {input_shape}")
    return int(input_shape[0]), int(input_shape[1]), int(input_shape[2])


def validate(params: Params, *, input_shape: tuple, frequency: float) -> None:
    check_ranges(params)
    _image_shape(input_shape)


def features(window: np.ndarray, params: Params, *, frequency: float) -> np.ndarray:
    """Flattened [H, W, 1 or 3] (row-major, channels last)."""
    img = np.asarray(window, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise DspParamError(f"image window must be [H, W, 1 or 3], got shape {img.shape}")
    if params.color == "grayscale" and img.shape[2] == 3:
        img = (img @ LUMA)[:, :, None]
    elif params.color == "rgb" and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img / np.float32(255.0) if params.scale == "0-1" else img - np.float32(128.0)
    return img.reshape(-1).astype(np.float32)


def output_shape(params: Params, *, input_shape: tuple, frequency: float) -> tuple:
    h, w, _ = _image_shape(input_shape)
    return (h, w, 1 if params.color == "grayscale" else 3)


def feature_names(
    params: Params, *, axes: list[str], input_shape: tuple, frequency: float
) -> list[str]:
    h, w, c = output_shape(params, input_shape=input_shape, frequency=frequency)
    channels = ["gray"] if c == 1 else ["r", "g", "b"]
    return [f"y{y} x{x} {ch}" for y in range(h) for x in range(w) for ch in channels]
