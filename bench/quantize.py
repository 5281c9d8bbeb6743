"""Float vs int8: size, accuracy, tflite-micro arena, host latency, MACs and a Cortex-M4 estimate.

Run: .venv/bin/python bench/quantize.py   (about a minute on 2 cores; synthetic data, no network)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from workers.ml import optimize, profile
from workers.ml.learn.classifier import ArchSpec
from workers.ml.learn.settings import TrainSettings
from workers.ml.learn.train import train


def spectral_features(n_per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Accelerometer-like windows (3 axes, 2 s at 62.5 Hz) -> RMS + 10 log band powers per axis = 33."""
    fs, n = 62.5, 125
    t = np.arange(n) / fs
    freqs = [0.0, 1.5, 3.0, 5.0]  # idle, wave, snake, updown
    x, y = [], []
    for label, f in enumerate(freqs):
        for _ in range(n_per_class):
            axes = []
            for axis in range(3):
                amp = rng.uniform(0.5, 1.5) * (axis + 1) / 3
                sig = amp * np.sin(2 * np.pi * (f + rng.normal(0, 0.3)) * t + rng.uniform(0, 6.3))
                sig = sig * (f > 0) + rng.normal(0, 0.4, n)
                power = np.abs(np.fft.rfft(sig * np.hanning(n))) ** 2
                bands = [b.mean() for b in np.array_split(power[1:], 10)]
                axes.append([np.sqrt(np.mean(sig**2)), *np.log10(np.array(bands) + 1e-6)])
            x.append(np.concatenate(axes))
            y.append(label)
    return np.array(x, np.float32), np.array(y)


def spectrograms(n_per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """16x16 spectrogram-like images: a tone at one of 4 frequency rows, or a rising chirp."""
    x, y = [], []
    for label in range(4):
        for _ in range(n_per_class):
            img = rng.normal(0, 0.3, (16, 16))
            if label < 3:
                row = 3 + 5 * label + rng.integers(-1, 2)
                img[row] += 1.0
            else:
                start = rng.integers(0, 4)
                for col in range(16):
                    img[min(15, start + col * 3 // 4), col] += 1.0
            x.append(img.ravel())
            y.append(label)
    return np.array(x, np.float32), np.array(y)


def bench(name: str, x: np.ndarray, y: np.ndarray, arch: ArchSpec) -> list[str]:
    labels = [f"c{i}" for i in range(4)]
    r = train(x, y, labels, arch, TrainSettings(epochs=30, seed=1))
    val = r.validation_indices
    train_idx = np.setdiff1d(np.arange(len(x)), val)
    rows = []
    for kind in ("float32", "int8"):
        t = time.perf_counter()
        if kind == "int8":
            blob = optimize.to_tflite_int8(r.model, x[train_idx])
        else:
            blob = optimize.to_tflite_float(r.model)
        convert_s = time.perf_counter() - t
        acc = profile.evaluate_tflite(blob, x[val], y[val], labels)["accuracy"]
        fp = profile.footprint(blob, latency_runs=200)
        rows.append(
            f"{name:<22} {kind:<8} {fp['size_bytes']:>8} {acc:>7.3f} {fp['arena_bytes']:>7} "
            f"{fp['host_latency']['p50_ms'] * 1000:>8.1f} {fp['host_latency']['p99_ms'] * 1000:>8.1f} "
            f"{fp['macs']:>8} {fp['m4_latency_estimate']['ms']:>8.3f} {convert_s:>6.2f}"
        )
    return rows


def main() -> None:
    rng = np.random.default_rng(0)
    xs, ys = spectral_features(150, rng)
    xs = (xs - xs.mean(0)) / xs.std(0)  # the spectral block normalises; do the same here
    xi, yi = spectrograms(150, rng)
    print(
        f"{'model':<22} {'type':<8} {'bytes':>8} {'val_acc':>7} {'arena':>7} "
        f"{'p50_us':>8} {'p99_us':>8} {'MACs':>8} {'M4_ms':>8} {'conv_s':>6}"
    )
    for row in bench("dense 33-20-10-4", xs, ys, ArchSpec(layers=(20, 10))):
        print(row)
    cnn = ArchSpec(kind="conv2d", layers=(8, 16), kernel_size=3, input_shape=(16, 16))
    for row in bench("conv2d 16x16 8-16", xi, yi, cnn):
        print(row)
    print(
        "\narena: tflite-micro RecordingMicroAllocator total; host latency: LiteRT, 1 thread, "
        "batch 1;\nM4_ms: estimate, MACs x cycles/MAC / 64 MHz (1.5 int8, 6 float); "
        "bytes = flash for the model only."
    )


if __name__ == "__main__":
    main()
