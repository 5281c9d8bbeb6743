"""Bring-your-own-model on this CPU: float vs int8 ONNX side by side (size, latency, RSS, accuracy).

Run: .venv/bin/python bench/byom.py [MODEL] [--npz test.npz] [--representative feeds.npz]
     .venv/bin/python bench/byom.py --keras-demo   (trains a small conv net, profiles its ONNX)
Default MODEL: tests/data/models/silero_vad.onnx, fed 512-sample chunks at 16 kHz with a zero state.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np

from workers.ml.byom import inspect_model, profile_model

DEFAULT_MODEL = ROOT / "tests" / "data" / "models" / "silero_vad.onnx"


def vad_feeds(n: int = 32) -> dict[str, np.ndarray]:
    """Feeds for a Silero-style VAD: 512 samples of 16 kHz audio (noise and a tone), zero state."""
    rng = np.random.default_rng(0)
    t = np.arange(512) / 16000
    audio = rng.normal(0, 0.05, (n, 1, 512)).astype(np.float32)
    audio[::2, 0] += (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return {
        "input": audio,
        "state": np.zeros((n, 2, 1, 128), np.float32),
        "sr": np.full((n,), 16000, np.int64),
    }


def keras_demo(tmp: Path) -> tuple[Path, Path]:
    """A conv net trained for a few epochs on 32x32 synthetic images (10 classes), as .onnx + test set."""
    import keras

    from workers.ml.export.onnx import keras_to_onnx

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n)
        x = rng.normal(0, 0.5, (n, 32, 32, 1)).astype(np.float32)
        for k, c in enumerate(y):
            r, col = divmod(int(c), 5)  # each class brightens its own 6x6 patch
            x[k, 4 + 12 * r : 10 + 12 * r, 1 + 6 * col : 7 + 6 * col, 0] += 1.0
        return x, y

    x, y = images(2000)
    xt, yt = images(300)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    onnx_path = tmp / "demo_convnet.onnx"
    onnx_path.write_bytes(keras_to_onnx(model))
    npz = tmp / "demo_test.npz"
    np.savez(npz, x=xt, y=yt)
    return onnx_path, npz


def _kib(n: float | None) -> str:
    return "-" if n is None else f"{n / 1024:,.1f} KiB"


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 1024 / 1024:,.1f} MiB"


def print_table(report: dict, threads: list[int]) -> None:
    cols = {"as given": report["model"]}
    if isinstance(report.get("int8"), dict) and "error" not in report["int8"]:
        cols["int8 (QDQ)"] = report["int8"]
    rows: list[tuple[str, list[str]]] = [
        ("size", [_kib(c["size_bytes"]) for c in cols.values()]),
        ("parameters", [f"{c.get('parameters') or 0:,}" for c in cols.values()]),
        ("MACs / inference", [f"{c.get('macs') or 0:,}" for c in cols.values()]),
    ]
    for t in threads:
        for q in ("p50", "p99"):
            rows.append(
                (
                    f"latency {q}, {t} thread{'s' if t > 1 else ''}",
                    [f"{c['latency_ms'][str(t)][q]:.3f} ms" for c in cols.values()],
                )
            )
    rows.append(("peak RSS (worker)", [_mib(c["peak_rss_bytes"]) for c in cols.values()]))
    rows.append(("  of which runtime", [_mib(c["runtime_rss_bytes"]) for c in cols.values()]))
    if "accuracy" in report["model"]:
        rows.append(("top-1 accuracy", [f"{c['accuracy']:.3f}" for c in cols.values()]))
    if "int8 (QDQ)" in cols:
        vs = report["int8"]["vs_float"]
        rows.append(("top-1 agreement", ["-", f"{vs['top1_agreement']:.3f} ({vs['samples']})"]))
        rows.append(("max |diff| vs float", ["-", f"{vs['max_abs_diff']:.4g}"]))
        rows.append(("int8 tensors (QDQ)", ["-", str(report["int8"]["quantized_tensors"])]))
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'':{width}}" + "".join(f"{k:>22}" for k in cols))
    for name, vals in rows:
        print(f"{name:{width}}" + "".join(f"{v:>22}" for v in vals))
    if "int8 (QDQ)" in cols:
        print(f"calibration: {report['int8']['calibration']}")
        if "note" in report["int8"]:
            print(f"note: {report['int8']['note']}")
    elif isinstance(report.get("int8"), dict):
        print(f"int8: {report['int8']['error']}")
    print(f"feeds: {report['model']['feeds']}; runtime: {report['runtime']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--npz", help="labelled test set with x and y")
    ap.add_argument("--representative", help=".npz with x, or feed:<input name> arrays")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", default="1,4")
    ap.add_argument("--keras-demo", action="store_true")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-byom-") as tmp:
        npz = args.npz
        if args.keras_demo:
            path, npz = keras_demo(Path(tmp))
        else:
            path = Path(args.model) if args.model else DEFAULT_MODEL
        rep = None
        if args.representative:
            with np.load(args.representative, allow_pickle=False) as z:
                rep = z["x"] if "x" in z.files else {k.removeprefix("feed:"): z[k] for k in z.files}
        elif npz is None:
            names = [i["name"] for i in inspect_model(path)["inputs"]]
            if names == ["input", "state", "sr"]:
                rep = vad_feeds()
        report = profile_model(
            path,
            runs=args.runs,
            threads=threads,
            test_npz=str(npz) if npz else None,
            representative=rep,
        )
        print(
            f"{path.name}: {len(report['inspect']['inputs'])} input(s) "
            + ", ".join(
                f"{i['name']} {i['dims']} {i['dtype']}" for i in report["inspect"]["inputs"]
            )
        )
        print_table(report, threads)


if __name__ == "__main__":
    main()
