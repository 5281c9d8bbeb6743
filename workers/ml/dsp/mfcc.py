"""The MFCC block: mel-frequency cepstral coefficients of successive frames of an audio window.

Follows python_speech_features' mfcc: pre-emphasis y[n] = x[n] - a x[n-1] (y[0] = x[0]) over
the whole window, rectangular frames, |rfft|^2 / fft_length, HTK-mel triangular filters, natural
log, orthonormal DCT-II, first num_cepstral coefficients, lifter 1 + (L/2) sin(pi n / L).
Differences, on purpose: only whole frames are kept (psf zero-pads a last partial frame); c0 is
replaced by the log frame energy only when append_energy is set (psf's default is on); energies
are floored at 1e-30 before the log (psf replaces exact zeros with float64 eps), so silence
gives a finite, fixed value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import dct

from workers.ml.dsp import mfe
from workers.ml.dsp.common import (
    DspParamError,
    as_time_series,
    check_framing,
    check_mel_block,
    frames_of,
    param,
    power_spectrum,
    samples_for,
)

TITLE = "MFCC"
IMPLEMENTATION_VERSION = 1
ENERGY_FLOOR = 1e-30


@dataclass(frozen=True)
class Params:
    """Parameters of MFCC."""

    frame_length: float = param(0.02, min=0.0, exclusive_min=True, max=10.0, help="Frame (s)")
    frame_stride: float = param(0.02, min=0.0, exclusive_min=True, max=10.0, help="Stride (s)")
    num_filters: int = param(32, min=2, max=512, help="Mel filters")
    fft_length: int = param(256, min=8, max=8192, help="FFT length (power of two)")
    num_cepstral: int = param(13, min=1, max=512, help="Cepstral coefficients kept")
    low_frequency: float = param(0.0, min=0.0, help="Lowest band edge (Hz)")
    high_frequency: float | None = param(
        None, min=0.0, help="Highest band edge (Hz); None: Nyquist"
    )
    pre_emphasis: float = param(0.98, min=0.0, max=1.0, help="Pre-emphasis coefficient, 0 for none")
    cepstral_lifter: int = param(0, min=0, max=1000, help="Lifter L, 0 for none")
    append_energy: bool = param(False, help="Replace c0 by the log frame energy")


def validate(params: Params, *, input_shape: tuple, frequency: float) -> None:
    check_mel_block(params, input_shape=input_shape, frequency=frequency)
    if params.num_cepstral > params.num_filters:
        raise DspParamError(
            f"num_cepstral {params.num_cepstral} is more than num_filters {params.num_filters}"
        )


def features(window: np.ndarray, params: Params, *, frequency: float) -> np.ndarray:
    """Flattened [frames, num_cepstral], frame-major."""
    x = as_time_series(window)[:, 0]
    if params.pre_emphasis:
        x = np.concatenate([x[:1], x[1:] - params.pre_emphasis * x[:-1]])
    e = mfe.energies(
        x,
        frequency=frequency,
        frame_length=params.frame_length,
        frame_stride=params.frame_stride,
        num_filters=params.num_filters,
        fft_length=params.fft_length,
        low_frequency=params.low_frequency,
        high_frequency=params.high_frequency,
    )
    cep = dct(np.log(np.maximum(e, ENERGY_FLOOR)), type=2, axis=1, norm="ortho")
    cep = cep[:, : params.num_cepstral]
    if params.cepstral_lifter > 0:
        n = np.arange(params.num_cepstral)
        cep = cep * (
            1.0 + params.cepstral_lifter / 2.0 * np.sin(np.pi * n / params.cepstral_lifter)
        )
    if params.append_energy:
        frame_len = samples_for(params.frame_length, frequency)
        step = samples_for(params.frame_stride, frequency)
        total = power_spectrum(frames_of(x, frame_len, step), params.fft_length).sum(axis=1)
        cep[:, 0] = np.log(np.maximum(total, ENERGY_FLOOR))
    return cep.reshape(-1).astype(np.float32)


def output_shape(params: Params, *, input_shape: tuple, frequency: float) -> tuple:
    _, _, frames = check_framing(
        frame_length=params.frame_length,
        frame_stride=params.frame_stride,
        fft_length=params.fft_length,
        input_shape=input_shape,
        frequency=frequency,
    )
    return (frames, params.num_cepstral)


def feature_names(
    params: Params, *, axes: list[str], input_shape: tuple, frequency: float
) -> list[str]:
    frames, ceps = output_shape(params, input_shape=input_shape, frequency=frequency)
    return [f"frame {f} c{c}" for f in range(frames) for c in range(ceps)]
