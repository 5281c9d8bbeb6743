"""Prints the accuracy the studio's impulse pipeline reaches on each data set of a datasets folder.

Usage:
    .venv/bin/python bench/datasets.py DIR [--only NAME ...] [--epochs-scale 1.0]

DIR is a folder like /work/shared/datasets on the development machine: one sub-folder per data set with
``training/`` and ``testing/`` (or flat) files named ``<label>.<n>.<ext>`` in the upload formats (EI JSON,
WAV, PNG). Each file goes through the upload parser, then the same engine path a job takes
(workers/ml/pipeline.py: windows → features → train_impulse → classify) with the impulse below. Accuracy
is per window on the testing files (argmax, no "uncertain"), and per sample by majority of its windows.
A data set with one label trains k-means only and reports how many held-out windows score as normal.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np

from projects.ingestion import Limits, parse_upload
from workers.ml import pipeline


def _nn(inputs, kind="dense", layers=(20, 10), epochs=30, lr=0.005, batch=32, dropout=0.1):
    return {
        "id": "nn",
        "block": "classifier",
        "inputs": inputs,
        "arch": {"kind": kind, "layers": list(layers), "dropout": dropout},
        "settings": {
            "epochs": epochs,
            "learning_rate": lr,
            "batch_size": batch,
            "validation_split": 0.2,
        },
    }


IMPULSES = {
    "basicmotions": {
        "input": {
            "type": "time-series",
            "window_size_ms": 5000,
            "window_increase_ms": 1000,
            "frequency_hz": 10,
        },
        "dsp": [
            {
                "id": "spectral",
                "block": "spectral-analysis",
                "axes": ["accX", "accY", "accZ", "gyrX", "gyrY", "gyrZ"],
                "params": {"filter_type": "none", "fft_length": 64, "spectral_power_edges": []},
            }
        ],
        "learn": [
            _nn(["spectral"], epochs=40),
            {"id": "anomaly", "block": "anomaly", "inputs": ["spectral"], "clusters": 8},
        ],
    },
    "wiimote-gestures": {
        "input": {
            "type": "time-series",
            "window_size_ms": 3600,
            "window_increase_ms": 3600,
            "frequency_hz": 50,
            "zero_pad": True,
        },
        "dsp": [
            {"id": "raw", "block": "raw", "axes": ["accZ"]},
            {
                "id": "spectral",
                "block": "spectral-analysis",
                "axes": ["accZ"],
                "params": {"filter_type": "none", "fft_length": 64, "spectral_power_edges": []},
            },
        ],
        "learn": [_nn(["raw", "spectral"], layers=(40, 20), epochs=80, dropout=0.2)],
    },
    "daphnet-walk": {
        "input": {
            "type": "time-series",
            "window_size_ms": 2000,
            "window_increase_ms": 500,
            "frequency_hz": 64,
        },
        "dsp": [
            {
                "id": "spectral",
                "block": "spectral-analysis",
                "axes": None,
                "params": {"filter_type": "none", "fft_length": 128, "spectral_power_edges": []},
            }
        ],
        "learn": [{"id": "anomaly", "block": "anomaly", "inputs": ["spectral"], "clusters": 8}],
    },
    "fashion-mnist": {
        "input": {
            "type": "image",
            "width": 28,
            "height": 28,
            "resize_mode": "squash",
            "color": "grayscale",
        },
        "dsp": [{"id": "image", "block": "image", "params": {"color": "grayscale"}}],
        "learn": [
            _nn(["image"], kind="conv2d", layers=(16, 32), epochs=25, lr=0.002, dropout=0.25)
        ],
    },
    "keywords-espeak": {
        "input": {
            "type": "time-series",
            "window_size_ms": 1000,
            "window_increase_ms": 1000,
            "frequency_hz": 16000,
        },
        "dsp": [{"id": "mfcc", "block": "mfcc", "axes": None}],
        "learn": [_nn(["mfcc"], kind="conv1d", layers=(16, 32), epochs=40, lr=0.003, dropout=0.25)],
    },
}


def load(folder: Path) -> list[tuple[str, str, object]]:
    """(category, label, payload) of every file; files outside training/testing go 80/20 by name order."""
    out = []
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".wav", ".png")
    )
    for i, f in enumerate(files):
        category = (
            f.parent.name
            if f.parent.name in ("training", "testing")
            else ("testing" if i % 5 == 4 else "training")
        )
        parsed = parse_upload(
            f.read_bytes(),
            file_name=f.name,
            content_type=None,
            hmac_key=None,
            require_signed=False,
            limits=Limits(),
        )
        out.append((category, f.name.split(".")[0], parsed.payload))
    return out


def run(name: str, folder: Path, epochs_scale: float) -> str:
    data = load(folder)
    spec = IMPULSES[name]
    first = data[0][2]
    axes = list(getattr(first, "axes", ()))
    for d in spec["dsp"]:
        if "axes" in d and d["axes"] is None:
            d["axes"] = axes
    for b in spec["learn"]:
        if "settings" in b:
            b["settings"]["epochs"] = max(1, round(b["settings"]["epochs"] * epochs_scale))
    imp = pipeline.parse_impulse(spec)
    start = time.perf_counter()
    rows = {"training": [], "testing": []}
    for category, label, payload in data:
        feats, starts = pipeline.sample_features(payload, imp)
        if len(starts):
            rows[category].append((label, feats, len(starts)))
    dsp_s = time.perf_counter() - start

    def stack(items):
        return (
            {s.id: np.concatenate([f[s.id] for _, f, _ in items]) for s in imp.dsp},
            [lab for lab, _, n in items for _ in range(n)],
        )

    x_train, y_train = stack(rows["training"])
    start = time.perf_counter()
    result = pipeline.train_impulse(x_train, y_train, imp)
    train_s = time.perf_counter() - start
    n_train, n_test = len(rows["training"]), len(rows["testing"])
    head = (
        f"{name}: {n_train} training / {n_test} testing samples, {len(y_train)} training windows, "
        f"features {dsp_s:.1f} s, training {train_s:.1f} s"
    )
    if result.model is None:
        x_test, _ = stack(rows["testing"])
        _, scores = pipeline.classify(x_test, imp, None, result.anomaly)
        normal = float((scores <= result.anomaly["threshold"]).mean())
        return f"{head}\n  one label: k-means only; {normal:.1%} of {len(scores)} held-out windows score as normal"
    correct = windows = sample_hits = 0
    for label, feats, n in rows["testing"]:
        scores, _ = pipeline.classify(feats, imp, result.model, result.anomaly)
        guesses = [result.labels[i] for i in scores.argmax(1)]
        correct += sum(g == label for g in guesses)
        windows += n
        sample_hits += Counter(guesses).most_common(1)[0][0] == label
    return (
        f"{head}\n  validation accuracy {result.metrics['accuracy']:.3f}; test accuracy per window "
        f"{correct / windows:.3f} ({windows} windows), per sample {sample_hits / n_test:.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    args = ap.parse_args()
    for name in IMPULSES:
        if args.only and name not in args.only:
            continue
        if not (args.folder / name).is_dir():
            print(f"{name}: not in {args.folder}")
            continue
        print(run(name, args.folder / name, args.epochs_scale), flush=True)


if __name__ == "__main__":
    main()
