"""Shared pieces of the DSP blocks: the error type, parameter metadata, framing, moments and mel maths."""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import field
from typing import Any

import numpy as np


class DspParamError(ValueError):
    """A processing block's parameter (or the input it is given) is not usable; the message names it."""


def param(
    default: Any,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple | None = None,
    help: str = "",
    exclusive_min: bool = False,
) -> Any:
    """A dataclass field whose metadata a form (and `check_ranges`) can read."""
    meta = {
        "min": min,
        "max": max,
        "choices": choices,
        "help": help,
        "exclusive_min": exclusive_min,
    }
    return field(default=default, metadata=meta)


def field_types(params_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(params_cls)


def _in_range(name: str, value: float, meta: dict) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None:
        if meta.get("exclusive_min") and not value > lo:
            raise DspParamError(f"{name} must be greater than {lo}, got {value}")
        if value < lo:
            raise DspParamError(f"{name} must be at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise DspParamError(f"{name} must be at most {hi}, got {value}")


def check_ranges(params: Any) -> None:
    """Check every field of a Params instance against its declared min/max/choices."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        meta = f.metadata
        if value is None:
            continue
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise DspParamError(f"{f.name} must be one of {list(meta['choices'])}, got {value!r}")
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise DspParamError(f"{f.name} must be a finite number, got {value}")
            _in_range(f.name, value, meta)
        elif isinstance(value, tuple):
            for v in value:
                _in_range(f.name, v, meta)


def is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def require_power_of_two(name: str, n: int) -> None:
    if not is_power_of_two(n):
        raise DspParamError(f"{name} must be a power of two, got {n}")


def time_series_shape(input_shape: tuple) -> tuple[int, int]:
    """(n_values, n_axes) of a time-series window, or DspParamError."""
    if len(input_shape) != 2 or input_shape[0] < 1 or input_shape[1] < 1:
        raise DspParamError(
            f"input_shape must be (values, axes) of a time series, got {input_shape}"
        )
    return int(input_shape[0]), int(input_shape[1])


def require_frequency(frequency: float) -> None:
    if not (frequency > 0 and math.isfinite(frequency)):
        raise DspParamError(f"frequency must be a positive number of Hz, got {frequency}")


def as_time_series(window: np.ndarray) -> np.ndarray:
    w = np.asarray(window, dtype=np.float64)
    if w.ndim == 1:
        w = w[:, None]
    if w.ndim != 2:
        raise DspParamError(f"window must be [values, axes], got shape {w.shape}")
    return w


# --- framing (audio-style blocks) ---------------------------------------------------------------


def samples_for(seconds: float, frequency: float) -> int:
    # round half up, as python_speech_features does, so frame sizes agree with it
    return math.floor(seconds * frequency + 0.5)


def frame_count(n_values: int, frame_len: int, frame_step: int) -> int:
    # Only whole frames: a zero-padded tail frame would make the feature count depend on rounding.
    if n_values < frame_len:
        return 0
    return 1 + (n_values - frame_len) // frame_step


def frames_of(signal: np.ndarray, frame_len: int, frame_step: int) -> np.ndarray:
    n = frame_count(len(signal), frame_len, frame_step)
    idx = np.arange(frame_len)[None, :] + frame_step * np.arange(n)[:, None]
    return signal[idx]


def power_spectrum(frames: np.ndarray, fft_length: int) -> np.ndarray:
    """|X|^2 / N per frame, the convention of python_speech_features and Edge Impulse.

    A frame longer than fft_length is truncated to it (numpy's and psf's behaviour; Edge Impulse's
    default 20 ms frames at 16 kHz with a 256-point FFT rely on it).
    """
    spec = np.fft.rfft(frames, fft_length, axis=-1)
    return (spec.real**2 + spec.imag**2) / fft_length


def check_framing(
    *,
    frame_length: float,
    frame_stride: float,
    fft_length: int,
    input_shape: tuple,
    frequency: float,
) -> tuple[int, int, int]:
    """Validate the framing parameters of an audio-style block; returns (frame_len, step, frames)."""
    require_frequency(frequency)
    n_values, n_axes = time_series_shape(input_shape)
    if n_axes != 1:
        raise DspParamError(f"this block takes one axis (audio), the input has {n_axes} axes")
    require_power_of_two("fft_length", fft_length)
    frame_len = samples_for(frame_length, frequency)
    step = samples_for(frame_stride, frequency)
    if frame_len < 1:
        raise DspParamError(
            f"frame_length {frame_length} s is shorter than one sample at {frequency} Hz"
        )
    if step < 1:
        raise DspParamError(
            f"frame_stride {frame_stride} s is shorter than one sample at {frequency} Hz"
        )
    frames = frame_count(n_values, frame_len, step)
    if frames < 1:
        raise DspParamError(
            f"frame_length {frame_length} s ({frame_len} samples) is longer than the window "
            f"({n_values} samples)"
        )
    return frame_len, step, frames


# --- mel filterbank -----------------------------------------------------------------------------


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_bin_edges(
    num_filters: int, fft_length: int, frequency: float, low_hz: float, high_hz: float
) -> np.ndarray:
    """FFT bin of each triangle's edge, num_filters + 2 values (the C blocks get these)."""
    mels = np.linspace(hz_to_mel(low_hz), hz_to_mel(high_hz), num_filters + 2)
    return np.floor((fft_length + 1) * mel_to_hz(mels) / frequency)


@functools.lru_cache(maxsize=32)
def mel_filterbank(
    num_filters: int, fft_length: int, frequency: float, low_hz: float, high_hz: float
) -> np.ndarray:
    """Triangular filters [num_filters, fft_length/2+1], evenly spaced in HTK mels.

    Edges fall on FFT bins floor((N+1) f / fs), the convention of python_speech_features, so the
    energies agree with it to rounding.
    """
    edges = mel_bin_edges(num_filters, fft_length, frequency, low_hz, high_hz)
    bins = np.arange(fft_length // 2 + 1, dtype=np.float64)[None, :]
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((bins >= left) & (bins < centre), (bins - left) / (centre - left), 0.0)
        falling = np.where(
            (bins >= centre) & (bins < right), (right - bins) / (right - centre), 0.0
        )
    bank = np.nan_to_num(rising + falling)
    bank.flags.writeable = False  # cached and shared: every window of a dataset uses one bank
    return bank


def check_mel(
    *,
    num_filters: int,
    fft_length: int,
    low_frequency: float,
    high_frequency: float | None,
    frequency: float,
) -> float:
    """Validate mel parameters; returns the effective high frequency."""
    nyquist = frequency / 2.0
    high = nyquist if high_frequency is None else float(high_frequency)
    if high > nyquist:
        raise DspParamError(f"high_frequency {high} Hz is above the Nyquist frequency {nyquist} Hz")
    if low_frequency >= high:
        raise DspParamError(
            f"low_frequency {low_frequency} Hz must be below high_frequency {high} Hz"
        )
    bins = fft_length // 2 + 1
    if num_filters > bins:
        raise DspParamError(
            f"num_filters {num_filters} is more than the {bins} FFT bins of fft_length {fft_length}"
        )
    empty = np.nonzero(
        mel_filterbank(num_filters, fft_length, frequency, low_frequency, high).sum(axis=1) == 0
    )[0]
    if len(empty):
        # an empty filter's energy is always zero: a feature that carries nothing
        raise DspParamError(
            f"num_filters {num_filters} is too many for fft_length {fft_length} between "
            f"{low_frequency} and {high} Hz: filter {int(empty[0])} covers no FFT bin"
        )
    return high


def log_energy_db(energies: np.ndarray, noise_floor_db: float) -> np.ndarray:
    """dB, then scaled so noise_floor_db..+12 dB maps to 0..1 (Edge Impulse's MFE/spectrogram scale)."""
    db = 10.0 * np.log10(np.maximum(energies, 1e-30))
    return np.clip((db - noise_floor_db) / (-noise_floor_db + 12.0), 0.0, 1.0)


# --- moments ------------------------------------------------------------------------------------


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column: mean, population std, skewness, excess kurtosis (biased, like scipy.stats defaults).

    A constant column has skewness 0 and kurtosis -3 rather than NaN, so a flat signal still trains.
    """
    mean = x.mean(axis=0)
    d = x - mean
    m2 = (d * d).mean(axis=0)
    m3 = (d**3).mean(axis=0)
    m4 = (d**4).mean(axis=0)
    flat = m2 <= 1e-20 * np.maximum(mean * mean, 1e-30)
    safe = np.where(flat, 1.0, m2)
    skew = np.where(flat, 0.0, m3 / safe**1.5)
    kurt = np.where(flat, -3.0, m4 / safe**2 - 3.0)
    return mean, np.sqrt(m2), skew, kurt


def check_mel_block(params: Any, *, input_shape: tuple, frequency: float) -> None:
    """The checks shared by the mel blocks (MFE, MFCC): ranges, framing, and the mel filterbank."""
    check_ranges(params)
    check_framing(
        frame_length=params.frame_length,
        frame_stride=params.frame_stride,
        fft_length=params.fft_length,
        input_shape=input_shape,
        frequency=frequency,
    )
    check_mel(
        num_filters=params.num_filters,
        fft_length=params.fft_length,
        low_frequency=params.low_frequency,
        high_frequency=params.high_frequency,
        frequency=frequency,
    )
