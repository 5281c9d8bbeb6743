"""The MFE block: mel filterbank energies of successive frames of a one-axis (audio) window.

Follows python_speech_features' fbank: rectangular frames, |rfft|^2 / fft_length, triangular
HTK-mel filters on bins floor((N+1) f / fs). Differences, on purpose: only whole frames are kept
(psf zero-pads a last partial frame), there is no pre-emphasis (Edge Impulse's MFE has none), and
the energies are then 10 log10, mapped from noise_floor_db..+12 dB onto 0..1 (Edge Impulse's MFE
scale) so a network sees inputs in 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.ml.dsp.common import (
    as_time_series,
    check_framing,
    check_mel_block,
    frames_of,
    hz_to_mel,
    log_energy_db,
    mel_filterbank,
    mel_to_hz,
    param,
    power_spectrum,
    samples_for,
)

TITLE = "MFE (mel filterbank energies)"
IMPLEMENTATION_VERSION = 1


@dataclass(frozen=True)
class Params:
    """Parameters of MFE."""

    frame_length: float = param(0.02, min=0.0, exclusive_min=True, max=10.0, help="Frame (s)")
    frame_stride: float = param(0.01, min=0.0, exclusive_min=True, max=10.0, help="Stride (s)")
    num_filters: int = param(40, min=2, max=512, help="Mel filters")
    fft_length: int = param(256, min=8, max=8192, help="FFT length (power of two)")
    low_frequency: float = param(0.0, min=0.0, help="Lowest band edge (Hz)")
    high_frequency: float | None = param(
        None, min=0.0, help="Highest band edge (Hz); None: Nyquist"
    )
    noise_floor_db: float = param(-52.0, min=-200.0, max=0.0, help="dB mapped to 0")


def validate(params: Params, *, input_shape: tuple, frequency: float) -> None:
    check_mel_block(params, input_shape=input_shape, frequency=frequency)


def energies(
    signal: np.ndarray,
    *,
    frequency: float,
    frame_length: float,
    frame_stride: float,
    num_filters: int,
    fft_length: int,
    low_frequency: float,
    high_frequency: float | None,
) -> np.ndarray:
    """Linear filterbank energies [frames, num_filters] of a 1-D signal (shared with MFCC)."""
    frame_len = samples_for(frame_length, frequency)
    step = samples_for(frame_stride, frequency)
    power = power_spectrum(frames_of(signal, frame_len, step), fft_length)
    high = frequency / 2.0 if high_frequency is None else high_frequency
    bank = mel_filterbank(num_filters, fft_length, frequency, low_frequency, high)
    return power @ bank.T


def features(window: np.ndarray, params: Params, *, frequency: float) -> np.ndarray:
    """Flattened [frames, num_filters], frame-major, in 0..1."""
    e = energies(
        as_time_series(window)[:, 0],
        frequency=frequency,
        frame_length=params.frame_length,
        frame_stride=params.frame_stride,
        num_filters=params.num_filters,
        fft_length=params.fft_length,
        low_frequency=params.low_frequency,
        high_frequency=params.high_frequency,
    )
    return log_energy_db(e, params.noise_floor_db).reshape(-1).astype(np.float32)


def output_shape(params: Params, *, input_shape: tuple, frequency: float) -> tuple:
    _, _, frames = check_framing(
        frame_length=params.frame_length,
        frame_stride=params.frame_stride,
        fft_length=params.fft_length,
        input_shape=input_shape,
        frequency=frequency,
    )
    return (frames, params.num_filters)


def feature_names(
    params: Params, *, axes: list[str], input_shape: tuple, frequency: float
) -> list[str]:
    frames, filters = output_shape(params, input_shape=input_shape, frequency=frequency)
    high = frequency / 2.0 if params.high_frequency is None else params.high_frequency
    centres = mel_to_hz(np.linspace(hz_to_mel(params.low_frequency), hz_to_mel(high), filters + 2))
    return [f"frame {f} mel {c:.0f} Hz" for f in range(frames) for c in centres[1:-1]]
