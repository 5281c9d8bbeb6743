"""ONNX export of Keras models, int8 static quantization, and checking the result in ONNX Runtime."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
Feeds = Mapping[str, np.ndarray]


class OnnxExportError(ValueError):
    """The model could not be converted, quantized or run as ONNX."""


@dataclass(frozen=True)
class OnnxExportParams:
    """How a Keras model becomes ONNX.

    opset: ONNX operator set, 13..20; 17 is what tf2onnx 1.17 and ONNX Runtime >= 1.14 both handle well.
    """

    opset: int = 17


@dataclass(frozen=True)
class OnnxQuantParams:
    """How a float ONNX model becomes int8 (static, QDQ).

    per_channel: one scale per output channel of Conv/Gemm weights; keeps accuracy on layers whose
        channels have very different ranges, costs nothing at run time in ONNX Runtime.
    max_calibration_samples: 1..10000 samples of the representative set are run through the model
        to choose activation ranges; more is slower and rarely changes the ranges.
    pre_process: run `quant_pre_process` (shape inference + graph optimisation) first; it is
        skipped silently when it fails on a graph it does not understand.
    calibrate_method: "minmax", "entropy" or "percentile".
    """

    per_channel: bool = True
    max_calibration_samples: int = 200
    pre_process: bool = True
    calibrate_method: str = "minmax"


def keras_to_onnx(model: Any, *, params: OnnxExportParams = OnnxExportParams()) -> bytes:
    """Convert a Keras 3 model to ONNX bytes.

    `tf2onnx.convert.from_keras` fails on Keras 3 models, so the model is traced as a
    `tf.function` with a fixed input signature (dynamic batch) and converted from that.
    """
    import tensorflow as tf
    import tf2onnx

    inputs = model.inputs
    if not inputs:
        raise OnnxExportError(
            "the Keras model has no inputs: build it (call it once) before export"
        )
    spec = tuple(
        tf.TensorSpec((None, *tuple(t.shape[1:])), t.dtype, name=_input_name(t, i))
        for i, t in enumerate(inputs)
    )

    if len(spec) == 1:
        fn = tf.function(lambda x: model(x), input_signature=spec)
    else:
        fn = tf.function(lambda *xs: model(list(xs)), input_signature=spec)
    try:
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=params.opset)
    except Exception as exc:  # tf2onnx raises bare exceptions of many kinds
        raise OnnxExportError(f"tf2onnx could not convert the model: {exc}") from exc
    return proto.SerializeToString()


def _input_name(tensor: Any, index: int) -> str:
    name = getattr(tensor, "name", "") or f"input_{index}"
    # tf.TensorSpec names must be valid op names
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name.split(":")[0]) or "x"


class _FeedReader:
    """A CalibrationDataReader over a list of feeds (ONNX Runtime only duck-types it)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._feeds = feeds
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


def calibration_feeds(
    model_bytes: bytes, representative: np.ndarray | Feeds, *, limit: int
) -> list[dict[str, np.ndarray]]:
    """Split representative data into per-sample feeds for the model.

    An array is for a single-input model and is fed one sample at a time (`x[i:i+1]`).
    A mapping gives, per input name, an array whose first axis indexes feeds and whose
    other axes are the whole input (batch included), for multi-input models like a VAD
    whose state input has no leading batch axis.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    model_inputs = sess.get_inputs()
    if isinstance(representative, Mapping):
        missing = [i.name for i in model_inputs if i.name not in representative]
        if missing:
            raise OnnxExportError(f"representative data lacks the model inputs {missing}")
        n = min(len(representative[i.name]) for i in model_inputs)
        return [
            {
                i.name: np.asarray(representative[i.name][k], dtype=_np_dtype(i.type))
                for i in model_inputs
            }
            for k in range(min(n, limit))
        ]
    if len(model_inputs) != 1:
        names = [i.name for i in model_inputs]
        raise OnnxExportError(
            f"the model has inputs {names}: give representative data as a mapping name -> array"
        )
    inp = model_inputs[0]
    x = np.asarray(representative, dtype=_np_dtype(inp.type))
    return [{inp.name: x[k : k + 1]} for k in range(min(len(x), limit))]


def quantize_onnx_int8(
    model_bytes: bytes,
    representative: np.ndarray | Feeds,
    *,
    params: OnnxQuantParams = OnnxQuantParams(),
) -> bytes:
    """Quantize a float ONNX model to int8 (QDQ, static activation ranges from `representative`)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    feeds = calibration_feeds(model_bytes, representative, limit=params.max_calibration_samples)
    if not feeds:
        raise OnnxExportError("representative data is empty: at least one sample is needed")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if params.calibrate_method not in methods:
        raise OnnxExportError(f"calibrate_method must be one of {sorted(methods)}")

    with tempfile.TemporaryDirectory(prefix="onnx-q-") as tmp:
        src = os.path.join(tmp, "float.onnx")
        pre = os.path.join(tmp, "pre.onnx")
        dst = os.path.join(tmp, "int8.onnx")
        with open(src, "wb") as f:
            f.write(model_bytes)
        if params.pre_process:
            try:
                from onnxruntime.quantization.shape_inference import quant_pre_process

                quant_pre_process(src, pre, skip_symbolic_shape=False)
                src = pre
            except Exception as exc:  # noqa: BLE001 - an optimisation, not a requirement
                log.info("quant_pre_process skipped: %s", exc)
        try:
            quantize_static(
                src,
                dst,
                _FeedReader(feeds),
                quant_format=QuantFormat.QDQ,
                per_channel=params.per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[params.calibrate_method],
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        except Exception as exc:
            raise OnnxExportError(f"int8 quantization failed: {type(exc).__name__}: {exc}") from exc
        with open(dst, "rb") as f:
            return f.read()


def onnx_session(model_bytes: bytes, *, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with a fixed number of intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def run_onnx(model_bytes: bytes, x: np.ndarray | Feeds, *, threads: int = 1) -> np.ndarray:
    """Run the model on `x` (one array for a single-input model, or feeds) and return output 0."""
    sess = onnx_session(model_bytes, threads=threads)
    if isinstance(x, Mapping):
        feeds = {k: np.asarray(v) for k, v in x.items()}
    else:
        inputs = sess.get_inputs()
        if len(inputs) != 1:
            raise OnnxExportError(
                f"the model has {len(inputs)} inputs: pass a mapping name -> array"
            )
        feeds = {inputs[0].name: np.asarray(x, dtype=_np_dtype(inputs[0].type))}
    return np.asarray(sess.run(None, feeds)[0])


def verify_onnx(model_bytes: bytes, keras_model: Any, x: np.ndarray) -> dict[str, float | int]:
    """Compare the ONNX model in ONNX Runtime with the Keras model on the same inputs."""
    ref = np.asarray(keras_model(x, training=False))
    got = run_onnx(model_bytes, x)
    if ref.shape != got.shape:
        raise OnnxExportError(f"output shapes differ: Keras {ref.shape}, ONNX {got.shape}")
    return {
        "samples": len(x),
        "max_abs_diff": float(np.max(np.abs(ref.astype(np.float64) - got))),
        "top1_agreement": top1_agreement(ref, got),
    }


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of samples whose predicted class is the same in both outputs."""
    return float(np.mean(predicted_class(a) == predicted_class(b)))


def predicted_class(y: np.ndarray) -> np.ndarray:
    """Top-1 class per sample; a single output unit is read as a sigmoid (> 0.5)."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if y.shape[1] == 1:
        return (y[:, 0] > 0.5).astype(np.int64)
    return np.argmax(y, axis=1)


_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def _np_dtype(ort_type: str) -> Any:
    if ort_type not in _ORT_DTYPES:
        raise OnnxExportError(f"input type {ort_type} is not supported")
    return _ORT_DTYPES[ort_type]
