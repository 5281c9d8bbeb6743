"""Spectral analysis against an independent scipy pipeline: butter(ba) + lfilter, scipy.stats,
scipy.signal.welch and find_peaks. Tolerance: 1e-4 relative (float32 output, and lfilter's
transfer-function form rounds differently from the block's second-order sections)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps
from scipy import stats

from workers.ml.dsp import DspParamError, params_from_dict, spectral


def reference(x: np.ndarray, p: spectral.Params, fs: float) -> np.ndarray:
    x = x.astype(np.float64) * p.scale_axes
    x = x - x.mean(axis=0)
    if p.filter_type != "none":
        b, a = sps.butter(p.filter_order, p.filter_cutoff, btype=p.filter_type, fs=fs)
        x = sps.lfilter(b, a, x, axis=0)
    n = p.fft_length
    padded = np.concatenate([x, np.zeros((max(0, n - len(x)), x.shape[1]))])
    freqs, psd = sps.welch(
        padded, fs=fs, window="hann", nperseg=n, noverlap=n // 2, detrend=False, axis=0
    )
    df = freqs[1]
    edges = spectral.band_edges(p, fs)
    out = []
    for a in range(x.shape[1]):
        col = psd[:, a]
        found, props = sps.find_peaks(col, height=p.spectral_peaks_threshold)
        order = np.argsort(-props["peak_heights"], kind="stable")[: p.spectral_peaks_count]
        pk = np.zeros((p.spectral_peaks_count, 2))
        pk[: len(order), 0] = freqs[found[order]]
        pk[: len(order), 1] = col[found[order]]
        bands = []
        for i in range(len(edges) - 1):
            hi_ok = freqs <= edges[i + 1] if i == len(edges) - 2 else freqs < edges[i + 1]
            bands.append(col[(freqs >= edges[i]) & hi_ok].sum() * df)
        bands = np.array(bands)
        if p.do_log:
            pk[:, 1] = np.log10(np.maximum(pk[:, 1], 1e-10))
            bands = np.log10(np.maximum(bands, 1e-10))
        head = [np.sqrt(np.mean(x[:, a] ** 2)), stats.skew(x[:, a]), stats.kurtosis(x[:, a])]
        out.append(np.concatenate([head, pk.reshape(-1), bands]))
    return np.concatenate(out)


CASES = [
    spectral.Params(),
    spectral.Params(
        filter_type="high",
        filter_cutoff=2.0,
        filter_order=4,
        fft_length=64,
        spectral_power_edges=(1.0, 4.0, 10.0, 20.0),
    ),
    spectral.Params(
        filter_type="none", spectral_power_edges=(), spectral_power_bands=5, do_log=True
    ),
    spectral.Params(fft_length=256, spectral_peaks_count=5, spectral_peaks_threshold=0.01),
]


@pytest.mark.parametrize("params", CASES, ids=["low", "high-fft64", "none-even-log", "fft-pad"])
def test_spectral_features_match_scipy_reference(noisy_accel: np.ndarray, params) -> None:
    spectral.validate(params, input_shape=noisy_accel.shape, frequency=100.0)
    out = spectral.features(noisy_accel, params, frequency=100.0)
    ref = reference(noisy_accel, params, 100.0)
    assert (
        out.shape
        == ref.shape
        == spectral.output_shape(params, input_shape=noisy_accel.shape, frequency=100.0)
    )
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)


def test_a_sine_shows_its_frequency_as_the_first_peak() -> None:
    t = np.arange(400) / 100.0
    x = np.sin(2 * np.pi * 12.5 * t)[:, None].astype(np.float32)
    p = spectral.Params(filter_type="none", fft_length=64, spectral_power_edges=())
    out = spectral.features(x, p, frequency=100.0)
    names = spectral.feature_names(p, axes=["x"], input_shape=x.shape, frequency=100.0)
    assert out[names.index("x peak 1 freq")] == pytest.approx(12.5)
    # Parseval: band powers sum to the variance of a unit sine, 0.5
    bands = [v for n, v in zip(names, out, strict=True) if "power" in n]
    assert sum(bands) == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"fft_length": 100}, "fft_length"),
        ({"fft_length": 0}, "fft_length"),
        ({"filter_cutoff": -1.0}, "filter_cutoff"),
        ({"filter_cutoff": 0}, "filter_cutoff"),
        ({"filter_cutoff": 60.0}, "Nyquist"),
        ({"filter_order": 0}, "filter_order"),
        ({"spectral_peaks_count": -1}, "spectral_peaks_count"),
        ({"spectral_power_edges": [1.0, 0.5]}, "spectral_power_edges"),
        ({"spectral_power_edges": [1.0, 80.0]}, "Nyquist"),
        ({"filter_type": "band"}, "filter_type"),
        ({"spectral_power_edges": [0.1, 0.5, 1.0]}, "band 0.1-0.5 Hz holds no FFT bin"),
        (
            {"spectral_power_edges": [], "spectral_power_bands": 64, "fft_length": 64},
            "spectral_power_bands",
        ),
        ({"wavelets": "haar"}, "wavelets"),
        ({"wavelet": "db8"}, "wavelet"),
        ({"analysis_type": "wavelet", "wavelet_level": 5}, "wavelet_level 5 is too deep"),
        ({"analysis_type": "wavelet", "wavelet_level": 0}, "wavelet_level"),
    ],
)
def test_bad_parameters_are_rejected_naming_them(params: dict, word: str) -> None:
    with pytest.raises(DspParamError, match=word):
        spectral.validate(
            params_from_dict("spectral-analysis", params), input_shape=(200, 3), frequency=100.0
        )


@pytest.mark.parametrize(("wavelet", "level"), [("haar", 2), ("db2", 3), ("db4", 4)])
def test_wavelet_features_match_pywavelets_and_scipy(
    noisy_accel: np.ndarray, wavelet: str, level: int
) -> None:
    pywt = pytest.importorskip("pywt")
    p = spectral.Params(analysis_type="wavelet", wavelet=wavelet, wavelet_level=level)
    spectral.validate(p, input_shape=noisy_accel.shape, frequency=100.0)
    assert level <= pywt.dwt_max_level(200, pywt.Wavelet(wavelet).dec_len)
    out = spectral.features(noisy_accel, p, frequency=100.0)
    x = noisy_accel.astype(np.float64)
    x = x - x.mean(axis=0)
    b, a = sps.butter(p.filter_order, p.filter_cutoff, btype="low", fs=100.0)
    x = sps.lfilter(b, a, x, axis=0)
    ref = []
    for axis in range(3):
        for c in pywt.wavedec(x[:, axis], wavelet, mode="periodization", level=level):
            ref += [
                stats.entropy(c**2),  # normalises to a distribution itself
                np.count_nonzero(np.diff(np.sign(c)) != 0),
                np.count_nonzero(np.diff(np.sign(c - c.mean())) != 0),
                *np.percentile(c, [5, 25, 75, 95, 50]),
                c.mean(),
                c.std(),
                c.var(),
                np.sqrt(np.mean(c**2)),
            ]
    assert out.shape == spectral.output_shape(p, input_shape=(200, 3), frequency=100.0)
    # float32 output; the mean of a detail array is ~0, hence the absolute term
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)
