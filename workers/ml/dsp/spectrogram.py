"""The spectrogram block: power spectrum of successive frames of a one-axis (audio) window.

Frames are rectangular (no window function), only whole frames are kept, and the power is
|rfft(frame, fft_length)|^2 / fft_length per bin, as python_speech_features' powspec. With
`show_db` it is 10 log10, mapped from noise_floor_db..+12 dB onto 0..1 (Edge Impulse's scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.ml.dsp.common import (
    as_time_series,
    check_framing,
    check_ranges,
    frames_of,
    log_energy_db,
    param,
    power_spectrum,
    samples_for,
)

TITLE = "Spectrogram"
IMPLEMENTATION_VERSION = 1


@dataclass(frozen=True)
class Params:
    """Parameters of the spectrogram."""

    frame_length: float = param(0.02, min=0.0, exclusive_min=True, max=10.0, help="Frame (s)")
    frame_stride: float = param(0.01, min=0.0, exclusive_min=True, max=10.0, help="Stride (s)")
    fft_length: int = param(256, min=8, max=8192, help="FFT length (power of two)")
    show_db: bool = param(True, help="Log scale (dB) normalised by the noise floor")
    noise_floor_db: float = param(-52.0, min=-200.0, max=0.0, help="dB mapped to 0")


def validate(params: Params, *, input_shape: tuple, frequency: float) -> None:
    check_ranges(params)
    check_framing(
        frame_length=params.frame_length,
        frame_stride=params.frame_stride,
        fft_length=params.fft_length,
        input_shape=input_shape,
        frequency=frequency,
    )


def spectrum(window: np.ndarray, params: Params, *, frequency: float) -> np.ndarray:
    """[frames, fft_length/2+1] power, before any dB scaling."""
    x = as_time_series(window)[:, 0]
    frame_len = samples_for(params.frame_length, frequency)
    step = samples_for(params.frame_stride, frequency)
    return power_spectrum(frames_of(x, frame_len, step), params.fft_length)


def features(window: np.ndarray, params: Params, *, frequency: float) -> np.ndarray:
    """Flattened [frames, fft_length/2+1], frame-major."""
    power = spectrum(window, params, frequency=frequency)
    if params.show_db:
        power = log_energy_db(power, params.noise_floor_db)
    return power.reshape(-1).astype(np.float32)


def output_shape(params: Params, *, input_shape: tuple, frequency: float) -> tuple:
    _, _, frames = check_framing(
        frame_length=params.frame_length,
        frame_stride=params.frame_stride,
        fft_length=params.fft_length,
        input_shape=input_shape,
        frequency=frequency,
    )
    return (frames, params.fft_length // 2 + 1)


def feature_names(
    params: Params, *, axes: list[str], input_shape: tuple, frequency: float
) -> list[str]:
    frames, bins = output_shape(params, input_shape=input_shape, frequency=frequency)
    df = frequency / params.fft_length
    return [f"frame {f} {b * df:g} Hz" for f in range(frames) for b in range(bins)]
