"""Bring-your-own-model: inspect and profile a user's .onnx/.tflite/.keras file in a limited subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("onnx", "tflite", "keras")
_EXTENSIONS = {".onnx": "onnx", ".tflite": "tflite", ".keras": "keras"}
# Formats that are (or wrap) Python pickles: loading one runs arbitrary code.
PICKLE_EXTENSIONS = frozenset({".pkl", ".pickle", ".pt", ".pth", ".joblib"})
_REPO_ROOT = Path(__file__).resolve().parents[2]


class ModelFileError(ValueError):
    """The model file (or its test set) is refused; the message names the file and the problem."""


class ModelLimitError(ModelFileError):
    """The worker ran out of its memory or time limit while handling the model."""


@dataclass(frozen=True)
class ByomLimits:
    """Limits of the subprocess that touches a user's model.

    max_file_bytes: 1 KiB..1 GiB; larger files are refused before any parsing.
    memory_bytes: 32 MiB..64 GiB of address space (RLIMIT_AS) for the worker; TensorFlow alone
        maps ~1.4 GB when it loads (for .keras), ONNX Runtime and LiteRT ~0.4 GB.
    timeout_s: 1..3600 s of wall time per worker run (inspect, profile, quantize are separate runs).
    """

    max_file_bytes: int = 64 * 1024 * 1024
    memory_bytes: int = 4 * 1024 * 1024 * 1024
    timeout_s: float = 300.0


MAX_FEEDS = 256  # sample inputs: each is run once when profiling and once when calibrating int8


class FeedsError(ValueError):
    """Sample inputs do not fit the model; the message names the input and the problem."""


def input_dtype(name: str) -> np.dtype:
    """The numpy dtype of an input dtype as inspect reports it (ONNX 'float', or numpy names)."""
    return np.dtype({"float": "float32", "double": "float64"}.get(name, name))


def _fmt_shape(shape: Sequence[int | None]) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def check_feeds(
    arrays: Mapping[str, np.ndarray],
    inputs: Sequence[Mapping[str, Any]],
    *,
    max_feeds: int = MAX_FEEDS,
) -> int:
    """The number of feeds N in per-input-name arrays whose first axis indexes whole feeds.

    `inputs` are the model's inputs as `inspect_model` reports them (name, shape with None for a
    free dimension, dtype, quantization). Every input needs an array and no other name may appear;
    all arrays hold the same 1..max_feeds feeds; each feed has the input's rank, its fixed
    dimensions and any size >= 1 for free ones; float inputs take float or integer arrays with
    finite values, integer inputs integer arrays within their range (or floats when the input is
    quantized with a scale, as the engine quantizes them), bool inputs bool arrays.
    Raises FeedsError naming the input and the problem.
    """
    names = [str(i["name"]) for i in inputs]
    listed = ", ".join(f"'{n}'" for n in names)
    missing = [n for n in names if n not in arrays]
    if missing:
        raise FeedsError(
            f"no array for model input {', '.join(repr(n) for n in missing)} "
            f"(the model's inputs are {listed})"
        )
    extra = [k for k in arrays if k not in names]
    if extra:
        raise FeedsError(
            f"array {', '.join(repr(k) for k in extra)} is not an input of the model "
            f"(its inputs are {listed})"
        )
    for n in names:
        if np.ndim(arrays[n]) == 0:
            raise FeedsError(
                f"input '{n}': the array is a scalar; its first axis must index the feeds"
            )
    counts = {n: len(arrays[n]) for n in names}
    if len(set(counts.values())) > 1:
        raise FeedsError(
            "every input needs the same number of feeds (first axis); got "
            + ", ".join(f"'{n}' {c}" for n, c in counts.items())
        )
    n_feeds = counts[names[0]] if names else 0
    if n_feeds == 0:
        raise FeedsError("the arrays hold no feeds (first axis of length 0)")
    if n_feeds > max_feeds:
        raise FeedsError(f"{n_feeds} feeds, over the limit of {max_feeds}")
    for spec in inputs:
        name, arr = str(spec["name"]), np.asarray(arrays[str(spec["name"])])
        want = list(spec.get("shape") or [])
        got = arr.shape[1:]
        if len(got) != len(want) or any(
            g < 1 or (w is not None and w != g) for w, g in zip(want, got, strict=False)
        ):
            raise FeedsError(
                f"input '{name}': each feed must have shape {_fmt_shape(want)}, got "
                f"{_fmt_shape(got)} (the array is {_fmt_shape(arr.shape)}, feeds first)"
            )
        _check_feed_dtype(name, arr, spec)
    return n_feeds


def _check_feed_dtype(name: str, arr: np.ndarray, spec: Mapping[str, Any]) -> None:
    try:
        target = input_dtype(str(spec.get("dtype")))
    except TypeError:
        raise FeedsError(
            f"input '{name}' has dtype {spec.get('dtype')}, which sample inputs cannot feed"
        ) from None
    got, quantized = arr.dtype, bool((spec.get("quantization") or {}).get("scale"))
    is_int = np.issubdtype(got, np.integer)
    is_float = np.issubdtype(got, np.floating)
    if np.issubdtype(target, np.floating):
        if not (is_int or is_float):
            raise FeedsError(
                f"input '{name}' takes {spec['dtype']} (float or integer arrays); got {got}"
            )
        with np.errstate(over="ignore", invalid="ignore"):  # overflow shows as inf below
            cast = arr.astype(target)
    elif np.issubdtype(target, np.integer):
        if not (is_int or (is_float and quantized)):
            raise FeedsError(
                f"input '{name}' takes {spec['dtype']} (integer arrays only); got {got}"
            )
        if is_int and arr.size:
            info = np.iinfo(target)
            lo, hi = int(arr.min()), int(arr.max())
            if lo < info.min or hi > info.max:
                raise FeedsError(
                    f"input '{name}' takes {spec['dtype']}; its values {lo}..{hi} fall outside "
                    f"{info.min}..{info.max}"
                )
        cast = arr
    elif target == np.bool_:
        if got != np.bool_:
            raise FeedsError(f"input '{name}' takes bool arrays; got {got}")
        cast = arr
    else:
        raise FeedsError(
            f"input '{name}' has dtype {spec.get('dtype')}, which sample inputs cannot feed"
        )
    if np.issubdtype(cast.dtype, np.floating) or is_float:
        bad = ~np.isfinite(cast.reshape(len(cast), -1) if cast.size else cast)
        if bad.any():
            feed = int(np.argwhere(bad)[0][0])
            raise FeedsError(
                f"input '{name}' has NaN or infinite values (first in feed {feed})"
                + (f" once cast to {spec['dtype']}" if np.isfinite(arr).all() else "")
            )


def detect_kind(path: str | os.PathLike[str], kind: str | None = None) -> str:
    """The model format from `kind` or the file's extension, refusing pickles and unknown formats."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in PICKLE_EXTENSIONS:
        raise ModelFileError(
            f"'{p.name}' is a pickle-based format ({suffix}): pickles run code when loaded and are "
            "refused; export the model to .onnx, .tflite or .keras"
        )
    if kind is None:
        if suffix == ".h5":
            raise ModelFileError(
                f"'{p.name}' is a legacy Keras HDF5 file: save it as .keras (Keras 3 format) instead"
            )
        if suffix not in _EXTENSIONS:
            raise ModelFileError(
                f"'{p.name}' has an unsupported extension '{suffix}': use .onnx, .tflite or .keras"
            )
        kind = _EXTENSIONS[suffix]
    if kind not in KINDS:
        raise ModelFileError(f"kind '{kind}' is not one of {KINDS}")
    return kind


def check_model_file(path: str | os.PathLike[str], *, kind: str | None, limits: ByomLimits) -> str:
    """Cheap checks done before any worker starts: existence, size, pickle header, format."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"model file '{p}' does not exist")
    kind = detect_kind(p, kind)
    size = p.stat().st_size
    if size > limits.max_file_bytes:
        raise ModelFileError(
            f"'{p.name}' is {size} bytes, over the size limit of {limits.max_file_bytes} bytes"
        )
    if size == 0:
        raise ModelFileError(f"'{p.name}' is empty")
    with open(p, "rb") as f:
        head = f.read(2)
    if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise ModelFileError(f"'{p.name}' is a Python pickle (protocol {head[1]}): refused")
    return kind


def inspect_model(
    path: str | os.PathLike[str], *, kind: str | None = None, limits: ByomLimits = ByomLimits()
) -> dict[str, Any]:
    """Inputs, outputs, parameter count, MACs and size of a model, read in a limited subprocess."""
    kind = check_model_file(path, kind=kind, limits=limits)
    return _run_worker(
        {"command": "inspect", "path": str(Path(path).resolve()), "kind": kind}, limits, path
    )


def profile_model(
    path: str | os.PathLike[str],
    *,
    runs: int = 50,
    threads: Sequence[int] = (1, 4),
    test_npz: str | None = None,
    representative: np.ndarray | Mapping[str, np.ndarray] | None = None,
    kind: str | None = None,
    int8: bool = True,
    limits: ByomLimits = ByomLimits(),
) -> dict[str, Any]:
    """Measure a model on this CPU: latency p50/p99 per thread count, peak RSS, accuracy.

    runs: 1..10000 timed runs per thread count (after a few warm-up runs).
    test_npz: an .npz with `x` (samples, batch axis first) and `y` (class ids or one-hot) for
        top-1 accuracy; samples are fed one at a time.
    representative: feeds for timing and int8 calibration when there is no test set: an array
        of samples for a single-input model, or per input name an array whose first axis
        indexes whole feeds (for models with state inputs). Without either, random data of
        the input shapes (dynamic dimensions as 1) is used and the report says so.
    int8: for ONNX (and .keras, profiled as its ONNX conversion) also build the int8 QDQ
        model and report it beside the float one.
    """
    if not 1 <= runs <= 10000:
        raise ValueError("runs must be in 1..10000")
    if not threads or any(t < 1 for t in threads):
        raise ValueError("threads must be positive thread counts")
    kind = check_model_file(path, kind=kind, limits=limits)
    model_path = str(Path(path).resolve())
    if test_npz is not None and not Path(test_npz).is_file():
        raise ModelFileError(f"test set '{test_npz}' does not exist")

    with tempfile.TemporaryDirectory(prefix="byom-") as tmp:
        rep_path = None
        if representative is not None:
            rep_path = os.path.join(tmp, "representative.npz")
            if isinstance(representative, Mapping):
                np.savez(
                    rep_path, **{f"feed:{k}": np.asarray(v) for k, v in representative.items()}
                )
            else:
                np.savez(rep_path, x=np.asarray(representative))
        common = {
            "runs": runs,
            "threads": list(threads),
            "test_npz": str(Path(test_npz).resolve()) if test_npz else None,
            "representative": rep_path,
        }
        report: dict[str, Any] = {"kind": kind, "file": Path(path).name}
        if kind == "keras":
            onnx_path = os.path.join(tmp, "float.onnx")
            converted = _run_worker(
                {"command": "keras_to_onnx", "path": model_path, "out": onnx_path, **common},
                limits,
                path,
            )
            report["inspect"], report["conversion"] = converted["inspect"], converted["conversion"]
            model_path, kind = onnx_path, "onnx"
            report["runtime"] = "onnxruntime (the .keras model converted to ONNX)"
        else:
            report["inspect"] = _run_worker(
                {"command": "inspect", "path": model_path, "kind": kind}, limits, path
            )
            report["runtime"] = "onnxruntime" if kind == "onnx" else "ai_edge_litert"

        float_out = os.path.join(tmp, "model_outputs.npz")
        report["model"] = _run_worker(
            {
                "command": "profile",
                "path": model_path,
                "kind": kind,
                "outputs": float_out,
                **common,
            },
            limits,
            path,
        )
        if kind == "onnx" and int8:
            int8_path = os.path.join(tmp, "int8.onnx")
            int8_out = os.path.join(tmp, "int8_outputs.npz")
            try:
                quant = _run_worker(
                    {"command": "quantize", "path": model_path, "out": int8_path, **common},
                    limits,
                    path,
                )
                prof = _run_worker(
                    {
                        "command": "profile",
                        "path": int8_path,
                        "kind": "onnx",
                        "outputs": int8_out,
                        **common,
                    },
                    limits,
                    path,
                )
                report["int8"] = {
                    **prof,
                    "calibration": quant["calibration"],
                    "quantized_tensors": quant["quantized_tensors"],
                }
                if "note" in quant:
                    report["int8"]["note"] = quant["note"]
                report["int8"]["vs_float"] = _compare_outputs(float_out, int8_out)
            except ModelLimitError:
                raise
            except ModelFileError as exc:
                report["int8"] = {"error": str(exc)}
        else:
            report["int8"] = None
        return report


def _compare_outputs(a_path: str, b_path: str) -> dict[str, float | int]:
    from workers.ml.export.onnx import top1_agreement

    with np.load(a_path, allow_pickle=False) as a, np.load(b_path, allow_pickle=False) as b:
        ya, yb = a["y"].astype(np.float64), b["y"].astype(np.float64)
    return {
        "samples": len(ya),
        "max_abs_diff": float(np.max(np.abs(ya - yb))) if ya.size else 0.0,
        "top1_agreement": top1_agreement(ya, yb) if len(ya) else 1.0,
    }


def _run_worker(request: dict[str, Any], limits: ByomLimits, shown: Any) -> dict[str, Any]:
    """Run one request in `python -m workers.ml.byom_worker` and return its JSON result."""
    name = Path(shown).name
    with tempfile.TemporaryDirectory(prefix="byom-w-") as tmp:
        req_path = os.path.join(tmp, "request.json")
        res_path = os.path.join(tmp, "result.json")
        with open(req_path, "w") as f:
            json.dump({**request, "limits": asdict(limits)}, f)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "workers.ml.byom_worker", req_path, res_path],
                check=False,
                env=env,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=limits.timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            raise ModelLimitError(
                f"'{name}': {request['command']} took longer than the time limit of "
                f"{limits.timeout_s:g} s and was stopped"
            ) from exc
        stderr = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = " | ".join(stderr[-3:])
        if not os.path.exists(res_path):
            # an exhausted address space can surface as std::bad_alloc -> abort(), so the
            # runtime's last words decide before the signal does
            if _looks_like_memory("\n".join(stderr[-20:])):
                raise ModelLimitError(
                    f"'{name}': the worker ran out of its memory limit of "
                    f"{_mib(limits.memory_bytes)} during {request['command']} ({tail})"
                )
            if proc.returncode < 0:
                sig = signal.Signals(-proc.returncode).name
                if sig == "SIGKILL":
                    raise ModelLimitError(
                        f"'{name}': the worker was killed during {request['command']} "
                        f"(out of memory?) under a limit of {_mib(limits.memory_bytes)}"
                    )
                raise ModelFileError(
                    f"'{name}': the runtime crashed with {sig} during {request['command']}; "
                    f"the file is probably corrupt or uses unsupported operators ({tail})"
                )
            raise ModelFileError(
                f"'{name}': the worker failed during {request['command']} "
                f"(exit code {proc.returncode}): {tail}"
            )
        with open(res_path) as f:
            result = json.load(f)
    if result["ok"]:
        return result["result"]
    kind, message = result["error_type"], result["message"]
    if kind == "limit" or (kind != "ModelFileError" and _looks_like_memory(message)):
        raise ModelLimitError(
            f"'{name}': the worker ran out of its memory limit of {_mib(limits.memory_bytes)} "
            f"during {request['command']} ({message})"
        )
    if kind == "ModelFileError":
        raise ModelFileError(message)
    raise ModelFileError(f"'{name}': {request['command']} failed: {kind}: {message}")


def _looks_like_memory(text: str) -> bool:
    t = text.lower()
    return any(
        s in t
        for s in (
            "memoryerror",
            "bad_alloc",
            "cannot allocate memory",
            "failed to map segment",
            "out of memory",
            "std::bad_alloc",
            "failed to allocate",
            "libgcc_s.so.1 must be installed",  # unwinder could not be mapped: out of memory
        )
    )


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MiB"
