"""The spectral analysis block: filtered-signal statistics, spectral peaks and band powers per axis.

Per axis, after scaling: the mean is removed; an optional Butterworth low- or high-pass filter
(causal, second-order sections, so a microcontroller computes the same thing); RMS, skewness and
excess kurtosis of the filtered signal; then a Welch power spectral density (Hann window of
fft_length, 50 % overlap, density scaling g^2/Hz, as scipy.signal.welch) from which come the
`spectral_peaks_count` highest local maxima above `spectral_peaks_threshold` (frequency, PSD) and
the power (PSD x bin width, summed) in each band. A window shorter than fft_length is zero-padded
to it. With `do_log`, peak heights and band powers are log10 (floored at 1e-10).

With analysis_type "wavelet", the filtered signal instead goes through a `wavelet_level`-level
discrete wavelet transform (periodization mode, as PyWavelets' wavedec(mode="periodization")),
and each coefficient array (cA_L, cD_L, ..., cD_1) gives WAVELET_FEATURES: the Shannon entropy
of its normalised energy, zero and mean crossing counts, 5/25/75/95th percentiles, median, mean,
std, variance and RMS (Edge Impulse's wavelet feature set, with an energy entropy in place of
the entropy of exact-value counts, which is log(n) for any real-valued signal).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from workers.ml.dsp.common import (
    DspParamError,
    as_time_series,
    check_ranges,
    moments,
    param,
    require_frequency,
    require_power_of_two,
    time_series_shape,
)

TITLE = "Spectral analysis"
IMPLEMENTATION_VERSION = 1
LOG_FLOOR = 1e-10


@dataclass(frozen=True)
class Params:
    """Parameters of spectral analysis (defaults suit 100 Hz accelerometer windows of 2 s)."""

    scale_axes: float = param(1.0, min=-1e6, max=1e6, help="Multiply every value by this first")
    filter_type: str = param("low", choices=("none", "low", "high"), help="Butterworth filter")
    filter_cutoff: float = param(3.0, min=0.0, exclusive_min=True, help="Cut-off frequency (Hz)")
    filter_order: int = param(6, min=1, max=12, help="Filter order")
    fft_length: int = param(128, min=8, max=4096, help="FFT length (power of two)")
    spectral_peaks_count: int = param(3, min=0, max=32, help="Number of spectral peaks")
    spectral_peaks_threshold: float = param(0.1, min=0.0, help="Minimum PSD of a peak")
    spectral_power_edges: tuple[float, ...] = param(
        (0.5, 1.5, 3.0, 5.0, 10.0), min=0.0, help="Band edges (Hz); empty for even bands"
    )
    spectral_power_bands: int = param(4, min=1, max=64, help="Even bands 0..Nyquist if no edges")
    do_log: bool = param(False, help="log10 of peak heights and band powers")
    analysis_type: str = param("fft", choices=("fft", "wavelet"), help="FFT or wavelet features")
    wavelet: str = param("db4", choices=("haar", "db2", "db4"), help="Wavelet (wavelet analysis)")
    wavelet_level: int = param(1, min=1, max=8, help="Decomposition levels (wavelet analysis)")


WAVELET_FEATURES = (
    "entropy",
    "zero_crossings",
    "mean_crossings",
    "p5",
    "p25",
    "p75",
    "p95",
    "median",
    "mean",
    "std",
    "var",
    "rms",
)
# Daubechies decomposition low-pass filters, as PyWavelets publishes them (dec_lo)
WAVELET_LOW_PASS = {
    "haar": (0.7071067811865476, 0.7071067811865476),
    "db2": (-0.12940952255126037, 0.2241438680420134, 0.8365163037378079, 0.48296291314453416),
    "db4": (
        -0.010597401785069032,
        0.0328830116668852,
        0.030841381835560764,
        -0.18703481171909309,
        -0.027983769416859854,
        0.6308807679298589,
        0.7148465705529157,
        0.2303778133088965,
    ),
}


def wavelet_max_level(n_values: int, wavelet: str) -> int:
    """Deepest level whose coefficients still outnumber the filter taps (pywt.dwt_max_level)."""
    taps = len(WAVELET_LOW_PASS[wavelet])
    return int(np.floor(np.log2(n_values / (taps - 1)))) if n_values >= taps - 1 else 0


def wavedec(x: np.ndarray, wavelet: str, level: int) -> list[np.ndarray]:
    """[cA_level, cD_level, ..., cD_1] of a 1-D signal, periodization mode."""
    lo = np.asarray(WAVELET_LOW_PASS[wavelet])
    taps = len(lo)
    hi = lo[::-1] * np.where(np.arange(taps) % 2 == 0, -1.0, 1.0)  # quadrature mirror
    details = []
    approx = x
    for _ in range(level):
        if len(approx) % 2:  # odd lengths repeat the last sample, as pywt does
            approx = np.append(approx, approx[-1])
        n = len(approx)
        idx = (2 * np.arange(n // 2)[:, None] + taps // 2 - np.arange(taps)[None, :]) % n
        approx, detail = approx[idx] @ lo, approx[idx] @ hi
        details.append(detail)
    return [approx, *details[::-1]]


def wavelet_features(c: np.ndarray) -> np.ndarray:
    energy = c * c
    total = energy.sum()
    if total > 0:
        p = energy[energy > 0] / total
        entropy = float(-(p * np.log(p)).sum())
    else:
        entropy = 0.0
    zero_crossings = np.count_nonzero(np.diff(c > 0))
    mean_crossings = np.count_nonzero(np.diff(c > c.mean()))
    p5, p25, p75, p95, median = np.percentile(c, [5, 25, 75, 95, 50])
    return np.array(
        [
            entropy,
            zero_crossings,
            mean_crossings,
            p5,
            p25,
            p75,
            p95,
            median,
            c.mean(),
            c.std(),
            c.var(),
            np.sqrt(np.mean(energy)),
        ]
    )


def band_edges(params: Params, frequency: float) -> np.ndarray:
    if params.spectral_power_edges:
        return np.asarray(params.spectral_power_edges, dtype=np.float64)
    return np.linspace(0.0, frequency / 2.0, params.spectral_power_bands + 1)


def filter_sos(params: Params, frequency: float) -> np.ndarray:
    """Second-order sections [n, 6] of the filter (empty for none); the C block gets these too."""
    if params.filter_type == "none":
        return np.zeros((0, 6))
    btype = "lowpass" if params.filter_type == "low" else "highpass"
    return _butter_sos(params.filter_order, params.filter_cutoff, btype, frequency).copy()


@functools.lru_cache(maxsize=64)
def _butter_sos(order: int, cutoff: float, btype: str, frequency: float) -> np.ndarray:
    # designing costs more than filtering a window: every window of a dataset shares one design
    sos = sps.butter(order, cutoff, btype=btype, fs=frequency, output="sos")
    sos.flags.writeable = False
    return sos


def per_axis_count(params: Params, frequency: float) -> int:
    if params.analysis_type == "wavelet":
        return len(WAVELET_FEATURES) * (params.wavelet_level + 1)
    return 3 + 2 * params.spectral_peaks_count + len(band_edges(params, frequency)) - 1


def validate(params: Params, *, input_shape: tuple, frequency: float) -> None:
    check_ranges(params)
    require_frequency(frequency)
    time_series_shape(input_shape)
    if params.scale_axes == 0:
        raise DspParamError("scale_axes must not be zero")
    require_power_of_two("fft_length", params.fft_length)
    nyquist = frequency / 2.0
    if params.filter_type != "none" and params.filter_cutoff >= nyquist:
        raise DspParamError(
            f"filter_cutoff {params.filter_cutoff} Hz must be below the Nyquist frequency {nyquist} Hz"
        )
    if params.analysis_type == "wavelet":
        n_values, _ = time_series_shape(input_shape)
        deepest = wavelet_max_level(n_values, params.wavelet)
        if params.wavelet_level > deepest:
            raise DspParamError(
                f"wavelet_level {params.wavelet_level} is too deep for {n_values} values with "
                f"{params.wavelet}: at most {deepest}"
            )
        return
    edges = params.spectral_power_edges
    if edges:
        if len(edges) < 2:
            raise DspParamError("spectral_power_edges needs at least two edges")
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise DspParamError(f"spectral_power_edges must increase, got {list(edges)}")
        if edges[-1] > nyquist:
            raise DspParamError(
                f"spectral_power_edges {edges[-1]} Hz is above the Nyquist frequency {nyquist} Hz"
            )

    for i, (a, b) in enumerate(band_bins(params, frequency)):
        if a == b:
            name = "spectral_power_edges" if edges else "spectral_power_bands"
            lo, hi = band_edges(params, frequency)[i : i + 2]
            raise DspParamError(
                f"{name}: band {lo:g}-{hi:g} Hz holds no FFT bin at fft_length "
                f"{params.fft_length} ({frequency / params.fft_length:g} Hz per bin)"
            )


def welch_psd(x: np.ndarray, fft_length: int, frequency: float) -> np.ndarray:
    """One-sided Welch PSD of the columns of x [n, axes] -> [fft_length/2+1, axes]."""
    n = x.shape[0]
    if n < fft_length:
        x = np.concatenate([x, np.zeros((fft_length - n, x.shape[1]))])
        n = fft_length
    step = fft_length // 2
    segments = 1 + (n - fft_length) // step
    idx = np.arange(fft_length)[None, :] + step * np.arange(segments)[:, None]
    win = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(fft_length) / fft_length)  # periodic Hann
    seg = x[idx] * win[None, :, None]  # [segments, fft, axes]
    spec = np.fft.rfft(seg, axis=1)
    psd = (spec.real**2 + spec.imag**2).mean(axis=0) / (frequency * (win * win).sum())
    psd[1 : (fft_length + 1) // 2] *= 2.0  # fold negative frequencies (not DC, not Nyquist)
    return psd


def peaks(psd: np.ndarray, count: int, threshold: float, df: float) -> np.ndarray:
    """[count, 2] (frequency, height) of the highest local maxima above threshold, zero-filled."""
    out = np.zeros((count, 2))
    if count == 0:
        return out
    inner = psd[1:-1]
    is_peak = (inner > psd[:-2]) & (inner >= psd[2:]) & (inner > threshold)
    where = np.nonzero(is_peak)[0] + 1
    # stable sort on -height so equal heights keep the lower frequency first (the C code agrees)
    where = where[np.argsort(-psd[where], kind="stable")][:count]
    out[: len(where), 0] = where * df
    out[: len(where), 1] = psd[where]
    return out


def band_powers(psd: np.ndarray, bins: list[tuple[int, int]], df: float) -> np.ndarray:
    return np.array([psd[a:b].sum() * df for a, b in bins])


def band_bins(params: Params, frequency: float) -> list[tuple[int, int]]:
    """[first, last + 1) PSD bins of each band; bands include their low edge, the last band
    also its high edge."""
    edges = band_edges(params, frequency)
    freqs = np.arange(params.fft_length // 2 + 1) * (frequency / params.fft_length)
    ranges = []
    for i in range(len(edges) - 1):
        last = i == len(edges) - 2
        hi_ok = freqs <= edges[i + 1] if last else freqs < edges[i + 1]
        idx = np.nonzero((freqs >= edges[i]) & hi_ok)[0]
        ranges.append((int(idx[0]), int(idx[-1]) + 1) if len(idx) else (0, 0))
    return ranges


def features(window: np.ndarray, params: Params, *, frequency: float) -> np.ndarray:
    """Per axis: rms, skewness, kurtosis, peaks (freq, height)..., band powers..."""
    x = as_time_series(window) * params.scale_axes
    x = x - x.mean(axis=0)
    sos = filter_sos(params, frequency)
    if len(sos):
        x = sps.sosfilt(sos, x, axis=0)
    if params.analysis_type == "wavelet":
        return np.concatenate(
            [
                wavelet_features(c)
                for a in range(x.shape[1])
                for c in wavedec(x[:, a], params.wavelet, params.wavelet_level)
            ]
        ).astype(np.float32)
    _, _std, skew, kurt = moments(x)
    rms = np.sqrt((x * x).mean(axis=0))
    psd = welch_psd(x, params.fft_length, frequency)
    df = frequency / params.fft_length
    bins = band_bins(params, frequency)
    out = []
    for a in range(x.shape[1]):
        pk = peaks(psd[:, a], params.spectral_peaks_count, params.spectral_peaks_threshold, df)
        bp = band_powers(psd[:, a], bins, df)
        if params.do_log:
            pk[:, 1] = np.log10(np.maximum(pk[:, 1], LOG_FLOOR))
            bp = np.log10(np.maximum(bp, LOG_FLOOR))
        out.append(np.concatenate([[rms[a], skew[a], kurt[a]], pk.reshape(-1), bp]))
    return np.concatenate(out).astype(np.float32)


def output_shape(params: Params, *, input_shape: tuple, frequency: float) -> tuple:
    _, n_axes = time_series_shape(input_shape)
    return (n_axes * per_axis_count(params, frequency),)


def feature_names(
    params: Params, *, axes: list[str], input_shape: tuple, frequency: float
) -> list[str]:
    if params.analysis_type == "wavelet":
        level = params.wavelet_level
        arrays = [f"cA{level}"] + [f"cD{i}" for i in range(level, 0, -1)]
        return [f"{axis} {c} {f}" for axis in axes for c in arrays for f in WAVELET_FEATURES]
    edges = band_edges(params, frequency)
    names = []
    for axis in axes:
        names += [f"{axis} rms", f"{axis} skewness", f"{axis} kurtosis"]
        for i in range(params.spectral_peaks_count):
            names += [f"{axis} peak {i + 1} freq", f"{axis} peak {i + 1} height"]
        names += [f"{axis} power {lo:g}-{hi:g} Hz" for lo, hi in itertools.pairwise(edges)]
    return names
