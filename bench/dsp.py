"""Windows per second of each DSP block (Python) against an independent reference on the same
windows (scipy / python_speech_features / numpy), and the largest absolute difference.

Run: .venv/bin/python bench/dsp.py [--windows N]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from collections.abc import Callable

import numpy as np
from python_speech_features import fbank
from python_speech_features import mfcc as psf_mfcc
from scipy import signal as sps
from scipy import stats

from workers.ml.dsp import flatten, get_block, image, mfcc, mfe, raw, spectral, spectrogram
from workers.ml.dsp.common import log_energy_db

logging.getLogger().setLevel(logging.ERROR)  # psf warns when a frame is longer than the FFT


def accel_windows(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    t = np.arange(200) / 100.0
    base = np.stack([np.sin(2 * np.pi * f * t) for f in (1.0, 2.5, 4.0)], axis=1)
    return [(base + rng.normal(0, 0.5, (200, 3))).astype(np.float32) for _ in range(n)]


def audio_windows(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    t = np.arange(16000) / 16000.0
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    return [(tone + rng.normal(0, 0.1, 16000)).astype(np.float32)[:, None] for _ in range(n)]


def ref_flatten(w: np.ndarray, p: flatten.Params) -> np.ndarray:
    x = w.astype(np.float64) * p.scale_axes
    cols = [x.mean(0), x.min(0), x.max(0), np.sqrt((x**2).mean(0)), x.std(0)]
    cols += [stats.skew(x, axis=0), stats.kurtosis(x, axis=0)]
    return np.stack(cols, axis=1).reshape(-1)


def ref_spectral(w: np.ndarray, p: spectral.Params) -> np.ndarray:
    x = w.astype(np.float64) * p.scale_axes
    x = x - x.mean(0)
    b, a = sps.butter(p.filter_order, p.filter_cutoff, btype=p.filter_type, fs=100.0)
    x = sps.lfilter(b, a, x, axis=0)
    n = p.fft_length
    freqs, psd = sps.welch(
        x, fs=100.0, window="hann", nperseg=n, noverlap=n // 2, detrend=False, axis=0
    )
    edges = spectral.band_edges(p, 100.0)
    out = []
    for ax in range(x.shape[1]):
        col = psd[:, ax]
        found, props = sps.find_peaks(col, height=p.spectral_peaks_threshold)
        order = np.argsort(-props["peak_heights"], kind="stable")[: p.spectral_peaks_count]
        pk = np.zeros((p.spectral_peaks_count, 2))
        pk[: len(order)] = np.stack([freqs[found[order]], col[found[order]]], axis=1)
        bands = [
            col[(freqs >= lo) & ((freqs <= hi) if i == len(edges) - 2 else (freqs < hi))].sum()
            * freqs[1]
            for i, (lo, hi) in enumerate(itertools.pairwise(edges))
        ]
        head = [np.sqrt((x[:, ax] ** 2).mean()), stats.skew(x[:, ax]), stats.kurtosis(x[:, ax])]
        out.append(np.concatenate([head, pk.reshape(-1), bands]))
    return np.concatenate(out)


def ref_spectrogram(w: np.ndarray, p: spectrogram.Params) -> np.ndarray:
    frame, step = round(p.frame_length * 16000), round(p.frame_stride * 16000)
    _, _, sxx = sps.spectrogram(
        w[:, 0].astype(np.float64),
        fs=16000.0,
        window="boxcar",
        nperseg=frame,
        noverlap=frame - step,
        nfft=p.fft_length,
        detrend=False,
        scaling="spectrum",
    )
    sxx = sxx.T * frame**2 / p.fft_length
    sxx[:, 1:-1] /= 2.0
    return log_energy_db(sxx, p.noise_floor_db).reshape(-1)


def ref_mfe(w: np.ndarray, p: mfe.Params) -> np.ndarray:
    feat, _ = fbank(
        w[:, 0].astype(np.float64),
        16000.0,
        p.frame_length,
        p.frame_stride,
        p.num_filters,
        p.fft_length,
        p.low_frequency,
        p.high_frequency,
        preemph=0,
    )
    return log_energy_db(feat, p.noise_floor_db).reshape(-1)


def ref_mfcc(w: np.ndarray, p: mfcc.Params) -> np.ndarray:
    c = psf_mfcc(
        w[:, 0].astype(np.float64),
        16000.0,
        p.frame_length,
        p.frame_stride,
        p.num_cepstral,
        p.num_filters,
        p.fft_length,
        p.low_frequency,
        p.high_frequency,
        p.pre_emphasis,
        p.cepstral_lifter,
        p.append_energy,
    )
    frames = mfcc.output_shape(p, input_shape=w.shape, frequency=16000.0)[0]
    return c[:frames].reshape(-1)  # psf pads a partial last frame; the block does not


def rate(fn: Callable[[np.ndarray], np.ndarray], windows: list[np.ndarray]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for w in windows:
            fn(w)
        best = min(best, time.perf_counter() - start)
    return len(windows) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=100, help="windows per block")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    accel = accel_windows(args.windows, rng)
    audio = audio_windows(max(4, args.windows // 5), rng)
    images = [rng.integers(0, 256, (96, 96, 3)).astype(np.float32) for _ in range(args.windows)]
    all_stats = flatten.Params(skewness=True, kurtosis=True)
    # frame 0.025 s with a 512-point FFT so scipy.signal.spectrogram (nfft >= frame) applies
    spec_p = spectrogram.Params(frame_length=0.025, frame_stride=0.01, fft_length=512)
    rows = [
        (
            "raw",
            raw.Params(),
            accel,
            100.0,
            "numpy",
            lambda w, p: (w.astype(np.float64) * p.scale_axes).reshape(-1),
        ),
        ("flatten", all_stats, accel, 100.0, "scipy.stats", ref_flatten),
        ("spectral-analysis", spectral.Params(), accel, 100.0, "scipy lfilter+welch", ref_spectral),
        ("spectrogram", spec_p, audio, 16000.0, "scipy spectrogram", ref_spectrogram),
        ("mfe", mfe.Params(), audio, 16000.0, "psf fbank", ref_mfe),
        ("mfcc", mfcc.Params(), audio, 16000.0, "psf mfcc", ref_mfcc),
        ("image", image.Params(), images, 0.0, "numpy", lambda w, p: w.reshape(-1) / 255.0),
    ]
    print(
        f"{'block':<18} {'window':<12} {'ours win/s':>11} {'reference':<20} {'ref win/s':>10} {'max abs err':>12}"
    )
    for name, p, windows, fs, ref_name, ref in rows:
        block = get_block(name)
        ours = rate(lambda w, b=block, p=p, fs=fs: b.features(w, p, frequency=fs), windows)
        theirs = rate(lambda w, p=p, ref=ref: ref(w, p), windows)
        err = max(
            float(np.abs(block.features(w, p, frequency=fs).astype(np.float64) - ref(w, p)).max())
            for w in windows[:20]
        )
        shape = "x".join(map(str, windows[0].shape))
        print(f"{name:<18} {shape:<12} {ours:>11.0f} {ref_name:<20} {theirs:>10.0f} {err:>12.2e}")


if __name__ == "__main__":
    main()
