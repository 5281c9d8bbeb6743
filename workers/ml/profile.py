"""Size, RAM, MAC count and latency of a .tflite model file, in LiteRT and tflite-micro."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from workers.ml.learn.metrics import classification_metrics, regression_metrics


class TflmError(RuntimeError):
    """tflite-micro could not load or run the model (it may have crashed its process)."""


def _interpreter(model_bytes: bytes, threads: int = 1) -> Interpreter:
    it = Interpreter(model_content=bytes(model_bytes), num_threads=threads)
    it.allocate_tensors()
    return it


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """Float features to the integer input of a quantized model (round half away, clip)."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def run_tflite(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Run every row of ``x`` (float features) through the model in LiteRT; float outputs.

    For an int8 model the features are quantized with the input's scale/zero point
    and the scores dequantized, so callers handle floats only.
    """
    it = _interpreter(model_bytes)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = np.asarray(x, dtype=np.float32)
    rows = x.reshape(len(x), *inp["shape"][1:])
    results = []
    for row in rows:
        if inp["dtype"] == np.float32:
            data = row[None]
        else:
            data = quantize(row[None], *inp["quantization"], dtype=inp["dtype"])
        it.set_tensor(inp["index"], data)
        it.invoke()
        y = it.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            y = dequantize(y, *out["quantization"])
        results.append(y[0])
    return np.array(results, dtype=np.float32)


def run_tflite_raw(model_bytes: bytes, x_q: np.ndarray) -> np.ndarray:
    """Run already-quantized input rows in LiteRT and return the raw (int8) outputs."""
    it = _interpreter(model_bytes)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    results = []
    for row in np.asarray(x_q).reshape(len(x_q), *inp["shape"][1:]):
        it.set_tensor(inp["index"], row[None].astype(inp["dtype"]))
        it.invoke()
        results.append(it.get_tensor(out["index"])[0].copy())
    return np.array(results)


def input_quantization(model_bytes: bytes) -> tuple[float, int, type]:
    """(scale, zero_point, dtype) of the model's input; scale 0 for a float input."""
    inp = Interpreter(model_content=bytes(model_bytes)).get_input_details()[0]
    scale, zero_point = inp["quantization"]
    return float(scale), int(zero_point), inp["dtype"]


def evaluate_tflite(model_bytes: bytes, x: np.ndarray, y: np.ndarray, labels: list[str]) -> dict:
    """Accuracy etc. of the model file on (x, y); regression metrics when ``labels`` is empty."""
    scores = run_tflite(model_bytes, x)
    if not labels:
        return regression_metrics(y, scores)
    return classification_metrics(np.asarray(y), scores.argmax(axis=1), labels)


def latency_tflite(model_bytes: bytes, *, runs: int = 50, threads: int = 1) -> dict:
    """Host latency of one inference in LiteRT (after 5 warm-up runs), in ms."""
    it = _interpreter(model_bytes, threads)
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], np.zeros(inp["shape"], dtype=inp["dtype"]))
    for _ in range(5):
        it.invoke()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t) * 1000)
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "runs": runs,
        "threads": threads,
    }


_TFLM_SCRIPT = r"""
import sys, numpy as np
from tflite_micro import runtime
model = open(sys.argv[1], "rb").read()
it = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2]))
if len(sys.argv) > 3:
    x = np.load(sys.argv[3])
    shape = it.get_input_details(0)["shape"]
    out = []
    for row in x:
        it.set_input(row.reshape(shape).astype(x.dtype), 0)
        it.invoke()
        out.append(np.array(it.get_output(0))[0])
    np.save(sys.argv[4], np.array(out))
sys.stderr.flush()
it.print_allocations()
"""

_ARENA_RE = re.compile(r"Arena allocation total (\d+) bytes")


def _tflm(
    model_bytes: bytes, arena_size: int, x: np.ndarray | None = None
) -> tuple[str, np.ndarray | None]:
    """Run tflite-micro in a child process: a too-small arena or a degenerate model can
    segfault or abort it, which must not take the worker down."""
    with tempfile.TemporaryDirectory(prefix="tflm-") as tmp:
        model_path = Path(tmp) / "model.tflite"
        model_path.write_bytes(bytes(model_bytes))
        args = [sys.executable, "-c", _TFLM_SCRIPT, str(model_path), str(arena_size)]
        if x is not None:
            np.save(Path(tmp) / "x.npy", x)
            args += [str(Path(tmp) / "x.npy"), str(Path(tmp) / "y.npy")]
        proc = subprocess.run(
            args,
            check=False,  # a crash is reported below with its signal
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        if proc.returncode != 0:
            reason = (
                f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            )
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            raise TflmError(
                f"tflite-micro failed ({reason}) with a {arena_size}-byte arena: {' | '.join(tail)}"
            )
        y = np.load(Path(tmp) / "y.npy") if x is not None else None
        return proc.stdout + proc.stderr, y


def tflm_arena_bytes(model_bytes: bytes, *, arena_size: int = 4 * 1024 * 1024) -> int:
    """Bytes of tensor arena tflite-micro really allocates for the model (its
    RecordingMicroAllocator total: activations, tensor structs and kernel scratch)."""
    size = arena_size
    for attempt in range(3):
        try:
            log, _ = _tflm(model_bytes, size)
            break
        except TflmError as e:
            # Only a too-small arena is worth a retry; an abort (SIGABRT) comes from the
            # model itself, e.g. the degenerate quantization scales of an untrained
            # network whose batch-norm statistics were never measured.
            if "signal 6" in str(e) or attempt == 2:
                raise
            size *= 4
    found = _ARENA_RE.search(log)
    if not found:
        raise TflmError(f"tflite-micro printed no arena total: {log[-300:]!r}")
    return int(found.group(1))


def tflm_run(
    model_bytes: bytes, x_int8: np.ndarray, *, arena_size: int = 4 * 1024 * 1024
) -> np.ndarray:
    """Run quantized input rows through tflite-micro; returns its raw outputs, one row each."""
    _, y = _tflm(model_bytes, arena_size, np.asarray(x_int8))
    assert y is not None
    return y


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def count_macs(model_bytes: bytes) -> int:
    """Multiply-accumulates of one inference, from the flatbuffer's conv/FC shapes.

    CONV_2D: out_h*out_w*out_c*k_h*k_w*in_c; DEPTHWISE_CONV_2D: out_h*out_w*out_c*k_h*k_w;
    FULLY_CONNECTED: out_rows*units*inputs. Pooling, ADD and SOFTMAX cost no MACs.
    """
    fb = _schema()
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(bytes(model_bytes), 0))
    ops = fb.BuiltinOperator
    macs = 0
    for sub in model.subgraphs:
        for op in sub.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            if builtin not in (ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED):
                continue
            weights = [int(d) for d in sub.tensors[op.inputs[1]].shape]
            out = [int(d) for d in sub.tensors[op.outputs[0]].shape]
            if builtin == ops.CONV_2D:
                macs += int(np.prod(out)) * weights[1] * weights[2] * weights[3]
            elif builtin == ops.DEPTHWISE_CONV_2D:
                macs += int(np.prod(out)) * weights[1] * weights[2]
            else:
                macs += int(np.prod(out)) * weights[1]
    return macs


def cortex_m4_estimate_ms(macs: int, *, mhz: float = 64, cycles_per_mac: float = 1.5) -> float:
    """Estimated inference time on a Cortex-M4 (Arduino Nano 33 BLE: nRF52840, 64 MHz).

    An estimate, not a measurement: MACs x cycles per MAC / clock. 1.5 cycles per MAC
    assumes int8 CMSIS-NN-like kernels (the SMLAD dual 16-bit MAC gives ~0.5 cycle per
    MAC in the inner loop; loads, im2col, requantization and per-layer overhead bring it
    to 1-2). A float model runs several times slower (pass e.g. cycles_per_mac=6).
    """
    return float(macs * cycles_per_mac / (mhz * 1e3))


def footprint(model_bytes: bytes, *, latency_runs: int = 50) -> dict:
    """Everything the deployment page shows about a model file.

    flash_bytes is the .tflite file size: the model is stored in flash as a byte
    array. It excludes the code of the TFLM runtime and its kernels (tens of KB),
    which depends on the build. arena_bytes is the RAM for tensors (tflite-micro).
    """
    macs = count_macs(model_bytes)
    scale, _, _ = input_quantization(model_bytes)
    return {
        "size_bytes": len(model_bytes),
        "flash_bytes": len(model_bytes),
        "arena_bytes": tflm_arena_bytes(model_bytes),
        "macs": macs,
        "host_latency": latency_tflite(model_bytes, runs=latency_runs),
        "m4_latency_estimate": {
            "ms": cortex_m4_estimate_ms(macs, cycles_per_mac=1.5 if scale else 6.0),
            "mhz": 64,
            "cycles_per_mac": 1.5 if scale else 6.0,
        },
    }
