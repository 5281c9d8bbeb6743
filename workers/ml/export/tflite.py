"""The .tflite export of a trained model, checked by running it in LiteRT and tflite-micro."""

from __future__ import annotations

import keras
import numpy as np

from workers.ml import optimize, profile
from workers.ml.learn.settings import LearnParamError


def export_tflite(
    model: keras.Model, *, quantize: bool, representative: np.ndarray | None
) -> bytes:
    """A float32 (quantize=False) or full-int8 (quantize=True) .tflite file of the model.

    ``representative`` (feature rows, usually the training set) is needed for int8.
    """
    if not quantize:
        return optimize.to_tflite_float(model)
    if representative is None:
        raise LearnParamError("int8 export needs representative features")
    return optimize.to_tflite_int8(model, representative)


def verify_tflite(
    model_bytes: bytes, keras_model: keras.Model, x: np.ndarray, *, tflm_tolerance_lsb: int = 2
) -> dict:
    """Run the file on ``x`` and compare it with the Keras model (and, for int8, tflite-micro).

    Float file: max |LiteRT - Keras| and top-1 agreement. Int8 file: top-1 agreement
    and max LSB difference of LiteRT vs Keras (Keras scores quantized to the output
    grid), and max LSB difference of tflite-micro vs LiteRT.
    ``ok`` summarises: float within 1e-4, int8 with tflite-micro within
    ``tflm_tolerance_lsb``. Measured: FULLY_CONNECTED/CONV_2D outputs differ by at
    most 1 LSB (the two runtimes round the requantization differently); SOFTMAX can
    turn a 1-LSB logit difference into 2 LSB of its output, hence the default of 2.
    """
    x = np.asarray(x, dtype=np.float32)
    expected = np.asarray(keras_model.predict(x, verbose=0, batch_size=256), dtype=np.float32)
    expected = expected.reshape(len(x), -1)
    scale, zero_point, dtype = profile.input_quantization(model_bytes)
    got = profile.run_tflite(model_bytes, x).reshape(len(x), -1)
    report: dict = {
        "samples": len(x),
        "quantized": bool(scale),
        "top1_agreement": float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1))),
        "max_abs_diff": float(np.max(np.abs(got - expected))),
    }
    if not scale:
        report["ok"] = report["max_abs_diff"] <= 1e-4
        return report
    from ai_edge_litert.interpreter import Interpreter

    out = Interpreter(model_content=bytes(model_bytes)).get_output_details()[0]
    out_scale, out_zero = out["quantization"]
    x_q = profile.quantize(x, scale, zero_point, dtype)
    litert = profile.run_tflite_raw(model_bytes, x_q).reshape(len(x), -1).astype(np.int32)
    keras_q = profile.quantize(expected, out_scale, out_zero, out["dtype"]).astype(np.int32)
    tflm = profile.tflm_run(model_bytes, x_q).reshape(len(x), -1).astype(np.int32)
    report["max_lsb_diff_vs_keras"] = int(np.max(np.abs(litert - keras_q)))
    report["tflm_max_lsb_diff"] = int(np.max(np.abs(tflm - litert)))
    report["tflm_top1_agreement"] = float(np.mean(tflm.argmax(axis=1) == litert.argmax(axis=1)))
    report["ok"] = report["tflm_max_lsb_diff"] <= tflm_tolerance_lsb
    return report
