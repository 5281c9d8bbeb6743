"""The impulse's input block: resampling and cutting time series into windows, and preparing images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from PIL import Image
from scipy.signal import resample_poly


class InputBlockError(ValueError):
    """An input block's setting (or the sample it is given) is not usable; the message names it."""


@dataclass(frozen=True)
class TimeSeriesInput:
    """Windows of window_size_ms every window_increase_ms, resampled to frequency_hz."""

    window_size_ms: int = 1000
    window_increase_ms: int = 500
    frequency_hz: float = 100.0
    zero_pad: bool = True

    def validate(self) -> None:
        for name in ("window_size_ms", "window_increase_ms", "frequency_hz"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputBlockError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise InputBlockError(f"{name} must be positive, got {value}")
        if not isinstance(self.zero_pad, bool):
            raise InputBlockError(f"zero_pad must be true or false, got {self.zero_pad!r}")
        if window_length(self) < 1:
            raise InputBlockError(
                f"window_size_ms {self.window_size_ms} holds no sample at {self.frequency_hz} Hz"
            )


def window_length(inp: TimeSeriesInput) -> int:
    """Values per window (per axis)."""
    return round(inp.window_size_ms * inp.frequency_hz / 1000.0)


def _increase_length(inp: TimeSeriesInput) -> int:
    return max(1, round(inp.window_increase_ms * inp.frequency_hz / 1000.0))


def resample(values: np.ndarray, from_hz: float, to_hz: float) -> np.ndarray:
    """[n, axes] at from_hz -> [~n*to/from, axes] at to_hz (polyphase, anti-aliased)."""
    if from_hz <= 0 or to_hz <= 0:
        raise InputBlockError(f"frequencies must be positive, got {from_hz} -> {to_hz} Hz")
    values = np.asarray(values, dtype=np.float64)
    if from_hz == to_hz:
        return values
    # a limit of 1000 keeps the polyphase filter short; 0.1 % rate error is below sensor drift
    ratio = Fraction(to_hz / from_hz).limit_denominator(1000)
    return resample_poly(values, ratio.numerator, ratio.denominator, axis=0)


def split_windows(
    values: np.ndarray, interval_ms: float, inp: TimeSeriesInput
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a sample [n, axes] taken every interval_ms into windows.

    Returns float32 [n_windows, window_length, axes] and the start of each window in ms. A sample
    shorter than one window gives one zero-padded window when zero_pad, else no window.
    """
    inp.validate()
    if not (interval_ms > 0 and math.isfinite(interval_ms)):
        raise InputBlockError(f"interval_ms must be positive, got {interval_ms}")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[1] < 1:
        raise InputBlockError(f"values must be [samples, axes], got shape {values.shape}")
    x = resample(values, 1000.0 / interval_ms, inp.frequency_hz)
    n, axes = x.shape
    win, step = window_length(inp), _increase_length(inp)
    if n < win:
        if not inp.zero_pad or n == 0:
            return np.zeros((0, win, axes), np.float32), np.zeros(0)
        padded = np.zeros((1, win, axes), np.float32)
        padded[0, :n] = x
        return padded, np.zeros(1)
    count = 1 + (n - win) // step
    idx = np.arange(win)[None, :] + step * np.arange(count)[:, None]
    starts_ms = step * np.arange(count) * 1000.0 / inp.frequency_hz
    return x[idx].astype(np.float32), starts_ms


RESIZE_MODES = ("squash", "fit-short", "fit-long", "crop")
COLORS = ("rgb", "grayscale")


@dataclass(frozen=True)
class ImageInput:
    """Images resized to width x height.

    squash: stretch to the target; fit-short: scale so the shorter side fits, centre-crop the
    rest; fit-long: scale so the longer side fits, letterbox with black; crop: centre-crop the
    target size at the original scale (black where the image is smaller).
    """

    width: int = 96
    height: int = 96
    resize_mode: str = "squash"
    color: str = "rgb"

    def validate(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputBlockError(f"{name} must be a positive integer, got {value!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise InputBlockError(
                f"resize_mode must be one of {list(RESIZE_MODES)}, got {self.resize_mode!r}"
            )
        if self.color not in COLORS:
            raise InputBlockError(f"color must be one of {list(COLORS)}, got {self.color!r}")


def _to_pil(img: np.ndarray) -> Image.Image:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise InputBlockError(f"image must be uint8, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return Image.fromarray(a)
    if a.ndim == 3 and a.shape[2] == 3:
        return Image.fromarray(a)
    if a.ndim == 3 and a.shape[2] == 4:
        return Image.fromarray(a).convert("RGB")
    raise InputBlockError(f"image must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {a.shape}")


def prepare_image(img: np.ndarray, inp: ImageInput) -> np.ndarray:
    """uint8 image -> float32 [height, width, 1 or 3] in 0..255 per the input block."""
    inp.validate()
    pil = _to_pil(img)
    if min(pil.size) < 1:
        raise InputBlockError(f"image is empty: {pil.size[0]}x{pil.size[1]}")
    pil = pil.convert("L" if inp.color == "grayscale" else "RGB")
    w, h = pil.size
    tw, th = inp.width, inp.height
    resample_filter = Image.Resampling.BILINEAR
    if inp.resize_mode == "squash":
        out = pil.resize((tw, th), resample_filter)
    elif inp.resize_mode == "fit-short":
        scale = max(tw / w, th / h)
        sw, sh = max(tw, round(w * scale)), max(th, round(h * scale))
        left, top = (sw - tw) // 2, (sh - th) // 2
        out = pil.resize((sw, sh), resample_filter).crop((left, top, left + tw, top + th))
    elif inp.resize_mode == "fit-long":
        scale = min(tw / w, th / h)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        out = Image.new(pil.mode, (tw, th))
        out.paste(pil.resize((sw, sh), resample_filter), ((tw - sw) // 2, (th - sh) // 2))
    else:  # crop; PIL fills outside the image with black
        left, top = (w - tw) // 2, (h - th) // 2
        out = pil.crop((left, top, left + tw, top + th))
    a = np.asarray(out, dtype=np.float32)
    return a[:, :, None] if a.ndim == 2 else a
