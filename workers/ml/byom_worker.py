"""The subprocess side of bring-your-own-model: loads a user's model under memory limits and measures it.

Run as `python -m workers.ml.byom_worker request.json result.json`; `workers.ml.byom` does that.
The address-space limit is set before numpy or any runtime is imported, so a model (or
runtime) that needs more memory fails here, not in the caller.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from typing import Any

KERAS_CONFIG_MAX_BYTES = 16 * 1024 * 1024
RANDOM_FEEDS = 16
WARMUP_RUNS = 3
# a failure with less address space than this left under the limit is reported as the limit's
LIMIT_HEADROOM_BYTES = 48 * 1024 * 1024


class ModelFileError(ValueError):
    """Mirrors workers.ml.byom.ModelFileError; the parent re-raises it by name."""


def main(argv: list[str]) -> int:
    req_path, res_path = argv[1], argv[2]
    with open(req_path) as f:
        req = json.load(f)
    mem = int(req["limits"]["memory_bytes"])
    _preload_unwinder()
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    try:
        result = _dispatch(req)
        out: dict[str, Any] = {"ok": True, "result": result}
    except Exception as exc:  # noqa: BLE001 - classified below, then reported as JSON
        # runtimes turn a failed allocation into anything (an empty RuntimeError, a parse
        # error): when the address space is nearly used up, the limit is the likelier cause
        if _vm_peak() > mem - LIMIT_HEADROOM_BYTES and not isinstance(exc, MemoryError):
            out = {
                "ok": False,
                "error_type": "limit",
                "message": f"address space {_vm_peak() >> 20} MiB at the failure: "
                f"{type(exc).__name__}: {exc}",
            }
        else:
            out = _error(exc)
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent as JSON
        out = _error(exc)
    with open(res_path, "w") as f:
        json.dump(out, f)
    return 0


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ModelFileError):
        out = {"ok": False, "error_type": "ModelFileError", "message": str(exc)}
    elif isinstance(exc, MemoryError):
        out = {"ok": False, "error_type": "limit", "message": f"MemoryError {exc}".strip()}
    else:
        msg = f"{exc}"
        if isinstance(exc, ImportError) and "map" in msg.lower():
            out = {"ok": False, "error_type": "limit", "message": msg}
        else:
            tb = traceback.format_exc().strip().splitlines()[-1]
            out = {"ok": False, "error_type": type(exc).__name__, "message": msg or tb}
    return out


def _vm_peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) * 1024
    return 0


def _preload_unwinder() -> None:
    """Load libgcc_s now: C++ runtimes dlopen it to unwind a std::bad_alloc, and when that
    dlopen fails under the address-space limit the process aborts instead of raising."""
    import ctypes

    try:
        ctypes.CDLL("libgcc_s.so.1")
    except OSError:
        pass  # not on this system: then nothing dlopens it either


def _dispatch(req: dict[str, Any]) -> dict[str, Any]:
    cmd = req["command"]
    if cmd == "inspect":
        return inspect(req["path"], req["kind"])
    if cmd == "profile":
        return profile(req)
    if cmd == "quantize":
        return quantize(req)
    if cmd == "keras_to_onnx":
        return keras_to_onnx_file(req)
    raise ValueError(f"unknown command {cmd}")


# ---------------------------------------------------------------- loading with checks


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_onnx_checked(path: str) -> Any:
    """Parse an ONNX file without touching external data, refusing what cannot be trusted."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import _get_all_tensors

    name = os.path.basename(path)
    data = _read(path)
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelFileError(
            f"'{name}' is not a valid ONNX protobuf (corrupt or truncated file): {exc}"
        ) from exc
    external = [
        t.name or "<unnamed>"
        for t in _get_all_tensors(model)
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) > 0
    ]
    if external:
        shown = ", ".join(external[:5]) + (" …" if len(external) > 5 else "")
        raise ModelFileError(
            f"'{name}' keeps {len(external)} tensor(s) in external data files ({shown}); "
            "external data paths are refused: save the model as one self-contained .onnx file"
        )
    if not model.graph.node:
        raise ModelFileError(f"'{name}' has an empty graph (corrupt or truncated file?)")
    return model


def onnx_session_checked(path: str, model_bytes: bytes, threads: int = 1) -> Any:
    from workers.ml.export.onnx import onnx_session

    try:
        # from bytes, never the path: ONNX Runtime then has no directory to resolve files against
        return onnx_session(model_bytes, threads=threads)
    except Exception as exc:
        _raise_if_memory(exc)
        raise ModelFileError(
            f"ONNX Runtime refused '{os.path.basename(path)}' (corrupt file or unsupported "
            f"operators): {type(exc).__name__}: {exc}"
        ) from exc


def tflite_interpreter(path: str, threads: int = 1, *, delegates: bool = True) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    name = os.path.basename(path)
    data = _read(path)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(
            f"'{name}' is not a TFLite flatbuffer (no TFL3 identifier; corrupt or truncated file)"
        )
    kwargs: dict[str, Any] = {"model_content": data, "num_threads": threads}
    if not delegates:
        # XNNPACK fuses CONV_2D & co. into DELEGATE nodes, hiding them from the MAC count
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = Interpreter(**kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        _raise_if_memory(exc)
        raise ModelFileError(
            f"LiteRT refused '{name}' (corrupt or truncated file, or unsupported ops): {exc}"
        ) from exc
    return interp


def _raise_if_memory(exc: BaseException) -> None:
    """Runtimes report an exhausted address space as their own errors (std::bad_alloc, ...)."""
    text = str(exc).lower()
    if any(
        s in text
        for s in (
            "bad_alloc",
            "cannot allocate memory",
            "out of memory",
            "failed to allocate",
            "failed to map segment",
        )
    ):
        raise MemoryError(str(exc)) from exc


def keras_config_checked(path: str) -> dict[str, Any]:
    """Read a .keras archive's config without loading it, refusing pickles and Lambda layers."""
    import zipfile

    name = os.path.basename(path)
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"'{name}' is not a .keras archive (not a zip: corrupt or truncated)")
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.namelist()
            pickles = [m for m in members if m.lower().endswith((".pkl", ".pickle"))]
            if pickles:
                raise ModelFileError(f"'{name}' contains pickled members {pickles}: refused")
            if "config.json" not in members:
                raise ModelFileError(f"'{name}' has no config.json: not a Keras 3 model archive")
            info = zf.getinfo("config.json")
            if info.file_size > KERAS_CONFIG_MAX_BYTES:
                raise ModelFileError(f"'{name}': config.json is {info.file_size} bytes, too big")
            config = json.loads(zf.read("config.json"))
    except (zipfile.BadZipFile, json.JSONDecodeError, EOFError) as exc:
        raise ModelFileError(f"'{name}' is a corrupt .keras archive: {exc}") from exc
    lambdas = _find_layers(config, "Lambda")
    if lambdas:
        raise ModelFileError(
            f"'{name}' has Lambda layer(s) {lambdas}: a Lambda layer holds arbitrary Python code "
            "and is refused; replace it with a built-in or registered custom layer"
        )
    return config


def _find_layers(node: Any, class_name: str) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("class_name") == class_name:
            cfg = node.get("config") or {}
            found.append(str(cfg.get("name", "?")) if isinstance(cfg, dict) else "?")
        for v in node.values():
            found.extend(_find_layers(v, class_name))
    elif isinstance(node, list):
        for v in node:
            found.extend(_find_layers(v, class_name))
    return found


def load_keras_checked(path: str) -> Any:
    keras_config_checked(path)
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:
        _raise_if_memory(exc)
        raise ModelFileError(
            f"Keras could not load '{os.path.basename(path)}' (safe mode): {exc}"
        ) from exc


# ---------------------------------------------------------------- inspection


def inspect(path: str, kind: str) -> dict[str, Any]:
    size = os.path.getsize(path)
    if kind == "onnx":
        info = inspect_onnx(path)
    elif kind == "tflite":
        info = inspect_tflite(path)
    elif kind == "keras":
        info = inspect_keras(path)
    else:
        raise ModelFileError(f"unknown kind {kind}")
    return {"kind": kind, "size_bytes": size, **info, "peak_rss_bytes": _peak_rss()}


def inspect_onnx(path: str, feed_shapes: dict[str, list[int]] | None = None) -> dict[str, Any]:
    model = load_onnx_checked(path)
    sess = onnx_session_checked(path, _read(path))
    inputs = [_ort_io(i) for i in sess.get_inputs()]
    outputs = [_ort_io(o) for o in sess.get_outputs()]
    macs, complete = onnx_macs(model, feed_shapes)
    macs_from = "static shape inference"
    if not complete:
        # shapes lost in If branches or behind data-dependent ops: trace one run instead
        try:
            macs, complete = onnx_runtime_macs(_read(path), random_feeds(inputs, 1)[0])
            macs_from = "ONNX Runtime trace of one run on random data (dynamic dimensions as 1)"
        except Exception as exc:  # noqa: BLE001 - the model may reject made-up inputs
            macs_from = f"static shape inference, partial (a traced run failed: {exc})"[:300]
    return {
        "inputs": inputs,
        "outputs": outputs,
        "parameters": onnx_parameter_count(model),
        "macs": macs if complete or macs else None,
        "macs_complete": complete,
        "macs_from": macs_from,
        "opset": max(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None
        ),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
    }


def _ort_io(arg: Any) -> dict[str, Any]:
    return {
        "name": arg.name,
        "shape": [d if isinstance(d, int) else None for d in arg.shape],
        "dims": [d if isinstance(d, int) else (d or "?") for d in arg.shape],
        "dtype": arg.type.removeprefix("tensor(").removesuffix(")"),
        "quantization": None,
    }


def onnx_parameter_count(model: Any) -> int:
    from onnx.external_data_helper import _get_all_tensors

    # initializers and Constant tensors of every graph and subgraph (silero keeps all in If branches)
    return int(sum(_prod(t.dims) for t in _get_all_tensors(model)))


def onnx_macs(model: Any, feed_shapes: dict[str, list[int]] | None) -> tuple[int, bool]:
    """Multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul from inferred shapes.

    Dynamic input dimensions are set from `feed_shapes` (or 1 for a leading batch axis)
    before shape inference. For an If node only the larger branch counts (one runs); a Loop
    body counts once. Returns (macs, complete) where complete is False when some shapes
    stayed unknown.
    """
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        dims = inp.type.tensor_type.shape.dim
        want = (feed_shapes or {}).get(inp.name)
        for k, d in enumerate(dims):
            if d.HasField("dim_value"):
                continue
            if want is not None and k < len(want):
                d.dim_value = int(want[k])
            elif k == 0:
                d.dim_value = 1
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - count what the un-inferred graph tells
        print(f"shape inference failed, MACs from declared shapes: {exc}", file=sys.stderr)
    return _graph_macs(m.graph, {})


def _graph_macs(graph: Any, outer: dict[str, list[int | None]]) -> tuple[int, bool]:
    shapes = dict(outer)
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [
                d.dim_value if d.HasField("dim_value") else None
                for d in vi.type.tensor_type.shape.dim
            ]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = list(a.t.dims)

    total, complete = 0, True
    for node in graph.node:
        subgraphs = [a.g for a in node.attribute if a.type == a.GRAPH]
        if subgraphs:
            results = [_graph_macs(g, shapes) for g in subgraphs]
            total += max(r[0] for r in results)
            complete = complete and all(r[1] for r in results)
            continue
        macs = _node_macs(node, shapes)
        if macs is None:
            complete = False
        else:
            total += macs
    return total, complete


def _node_macs(node: Any, shapes: dict[str, list[int | None]]) -> int | None:
    op = node.op_type

    def known(name: str) -> list[int] | None:
        s = shapes.get(name)
        if s is None or any(d is None or d <= 0 for d in s):
            return None
        return [int(d) for d in s]

    if op in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        out = known(node.output[0])
        a = known(node.input[0])
        w = known(node.input[1]) if len(node.input) > 1 else None
        if op == "Conv":
            return None if out is None or w is None else _prod(out) * _prod(w[1:])
        if op == "ConvTranspose":
            return None if a is None or w is None else _prod(a) * _prod(w[1:])
        if op == "Gemm":
            if out is None or a is None:
                return None
            trans_a = any(x.name == "transA" and x.i for x in node.attribute)
            return _prod(out) * (a[0] if trans_a else a[-1])
        if out is None or a is None:
            return None
        return _prod(out) * a[-1]
    return 0


def onnx_runtime_macs(model_bytes: bytes, feed: dict[str, Any]) -> tuple[int, bool]:
    """MACs of one real run, from the shapes ONNX Runtime's profiler records for every node.

    Static shape inference loses track of shapes inside If branches and behind data-dependent
    ops (a VAD's STFT padding); the profiler sees the shapes that were actually used, and only
    the branch that ran. Graph optimisation is off so nodes keep their ONNX op types.
    """
    import json as _json
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="ort-prof-") as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "run")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        sess = ort.InferenceSession(
            model_bytes, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        sess.run(None, feed)
        with open(sess.end_profiling()) as f:
            events = _json.load(f)
    total, complete, seen = 0, True, set()
    for e in events:
        args = e.get("args", {})
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if e["name"] in seen:
            continue
        seen.add(e["name"])
        ins = [next(iter(d.values())) for d in args.get("input_type_shape", [])]
        outs = [next(iter(d.values())) for d in args.get("output_type_shape", [])]
        m = _traced_macs(args.get("op_name", ""), ins, outs)
        if m is None:
            complete = False
        else:
            total += m
    return total, complete


def _traced_macs(op: str, ins: list[list[int]], outs: list[list[int]]) -> int | None:
    if op not in ("Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN"):
        return 0
    try:
        if op == "Conv":
            return _prod(outs[0]) * _prod(ins[1][1:])
        if op == "ConvTranspose":
            return _prod(ins[0]) * _prod(ins[1][1:])
        if op == "Gemm":
            return _prod(outs[0]) * (_prod(ins[0]) // max(outs[0][0], 1))
        if op == "MatMul":
            return _prod(outs[0]) * ins[0][-1]
        # recurrent: X [seq, batch, in], W [dirs, gates*H, in], R [dirs, gates*H, H]
        seq, batch = ins[0][0], ins[0][1]
        return seq * batch * (_prod(ins[1]) + _prod(ins[2]))
    except (IndexError, TypeError):
        return None


def inspect_tflite(path: str) -> dict[str, Any]:
    interp = tflite_interpreter(path, delegates=False)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    produced = {int(i) for op in ops for i in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    consts: set[int] = set()
    macs, unknown = 0, False
    for op in ops:
        for i in op["inputs"]:
            i = int(i)
            if i >= 0 and i not in produced and i not in graph_inputs:
                consts.add(i)
        m = _tflite_op_macs(op, tensors)
        if m is None:
            unknown = True
        else:
            macs += m
    return {
        "inputs": [_tflite_io(d) for d in interp.get_input_details()],
        "outputs": [_tflite_io(d) for d in interp.get_output_details()],
        "parameters": int(sum(_prod(tensors[i]["shape"]) for i in consts if i in tensors)),
        "macs": macs,
        "macs_complete": not unknown,
        "ops": sorted({op["op_name"] for op in ops}),
    }


def _tflite_op_macs(op: dict[str, Any], tensors: dict[int, dict[str, Any]]) -> int | None:
    name = op["op_name"]
    if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return 0
    try:
        out = [int(d) for d in tensors[int(op["outputs"][0])]["shape"]]
        w = [int(d) for d in tensors[int(op["inputs"][1])]["shape"]]
    except (KeyError, IndexError):
        return None
    if name == "CONV_2D":  # filter [out_ch, kh, kw, in_ch]
        return _prod(out) * _prod(w[1:])
    if name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, out_ch]
        return _prod(out) * w[1] * w[2]
    return _prod(out) * w[-1]  # FULLY_CONNECTED weights [units, in]


def _tflite_io(d: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    scale, zero = d.get("quantization", (0.0, 0))
    sig = d.get("shape_signature", d["shape"])
    return {
        "name": d["name"],
        "shape": [int(x) if int(x) >= 0 else None for x in sig],
        "dims": [int(x) for x in d["shape"]],
        "dtype": np.dtype(d["dtype"]).name,
        "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None,
    }


def inspect_keras(path: str) -> dict[str, Any]:
    return _keras_info(load_keras_checked(path))


def _keras_info(model: Any, onnx_bytes: bytes | None = None) -> dict[str, Any]:
    from workers.ml.export.onnx import keras_to_onnx

    info: dict[str, Any] = {
        "inputs": [_keras_io(t) for t in model.inputs],
        "outputs": [_keras_io(t) for t in model.outputs],
        "parameters": int(model.count_params()),
        "layers": [type(layer).__name__ for layer in model.layers],
    }
    try:
        import onnx

        proto = onnx.load_model_from_string(onnx_bytes or keras_to_onnx(model))
        info["macs"], info["macs_complete"] = onnx_macs(proto, None)
    except Exception as exc:  # noqa: BLE001 - MACs are a bonus when conversion fails
        info["macs"], info["macs_complete"] = None, False
        info["macs_error"] = f"ONNX conversion for MAC count failed: {exc}"
    return info


def _keras_io(t: Any) -> dict[str, Any]:
    shape = [None if d is None else int(d) for d in t.shape]
    return {
        "name": getattr(t, "name", ""),
        "shape": shape,
        "dims": [d if d is not None else "?" for d in shape],
        "dtype": str(t.dtype),
        "quantization": None,
    }


# ---------------------------------------------------------------- feeds


class _Model:
    """A loaded model with one call signature for both runtimes."""

    def __init__(self, path: str, kind: str, threads: int):
        self.kind = kind
        if kind == "onnx":
            load_onnx_checked(path)
            self.sess = onnx_session_checked(path, _read(path), threads)
            self.inputs = [_ort_io(i) for i in self.sess.get_inputs()]
            self.outputs = [_ort_io(o) for o in self.sess.get_outputs()]
        else:
            self.interp = tflite_interpreter(path, threads)
            self.in_details = self.interp.get_input_details()
            self.out_details = self.interp.get_output_details()
            self.inputs = [_tflite_io(d) for d in self.in_details]
            self.outputs = [_tflite_io(d) for d in self.out_details]

    def run(self, feed: dict[str, Any]) -> Any:
        """Output 0 as float (dequantized for int8 TFLite outputs)."""
        import numpy as np

        if self.kind == "onnx":
            return np.asarray(self.sess.run(None, feed)[0])
        for d in self.in_details:
            x = feed[d["name"]]
            if tuple(x.shape) != tuple(d["shape"]):
                self.interp.resize_tensor_input(d["index"], list(x.shape))
                self.interp.allocate_tensors()
            self.interp.set_tensor(d["index"], x)
        self.interp.invoke()
        od = self.out_details[0]
        y = self.interp.get_tensor(od["index"])
        scale, zero = od.get("quantization", (0.0, 0))
        if scale:
            return (y.astype(np.float32) - zero) * scale
        return y


def _np_dtype(name: str) -> Any:
    import numpy as np

    return {"float": np.float32, "double": np.float64}.get(name, np.dtype(name).type)


def _to_input(x: Any, spec: dict[str, Any]) -> Any:
    """Cast (and quantize, for int8/uint8 inputs with a scale) one array to the input's dtype."""
    import numpy as np

    dtype = _np_dtype(spec["dtype"])
    q = spec.get("quantization")
    if q and np.issubdtype(dtype, np.integer) and np.issubdtype(x.dtype, np.floating):
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / q["scale"] + q["zero_point"]), info.min, info.max)
    return np.asarray(x, dtype=dtype)


def _fmt(shape: Any) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def load_npz(path: str, what: str) -> dict[str, Any]:
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        raise ModelFileError(
            f"{what} '{os.path.basename(path)}' holds pickled (object) arrays: refused ({exc})"
        ) from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(
            f"{what} '{os.path.basename(path)}' is not a valid .npz: {exc}"
        ) from exc


def load_test_set(path: str, inputs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Any]:
    """Feeds (one sample each) and class ids from an .npz with x and y, checked against the input."""
    import numpy as np

    data = load_npz(path, "test set")
    name = os.path.basename(path)
    if "x" not in data or "y" not in data:
        raise ModelFileError(f"test set '{name}' needs arrays 'x' and 'y', has {sorted(data)}")
    x, y = data["x"], data["y"]
    if len(inputs) != 1:
        raise ModelFileError(
            f"test set '{name}': the model has {len(inputs)} inputs "
            f"{[i['name'] for i in inputs]}; a test set fits single-input models only"
        )
    spec = inputs[0]
    want = spec["shape"][1:]
    if x.ndim != len(spec["shape"]) or any(
        w is not None and w != g for w, g in zip(want, x.shape[1:], strict=False)
    ):
        raise ModelFileError(
            f"test set '{name}': x has samples of shape {_fmt(x.shape[1:])} (x is "
            f"{_fmt(x.shape)}), but model input '{spec['name']}' takes {_fmt(spec['shape'])}, "
            f"i.e. samples of shape {_fmt(want)}"
        )
    if len(y) != len(x):
        raise ModelFileError(f"test set '{name}': x has {len(x)} samples but y has {len(y)}")
    labels = np.argmax(y, axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)
    feeds = [{spec["name"]: _to_input(x[k : k + 1], spec)} for k in range(len(x))]
    return feeds, labels.astype(np.int64)


def representative_feeds(path: str, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    data = load_npz(path, "representative data")
    if "x" in data:
        if len(inputs) != 1:
            raise ModelFileError(
                f"the model has inputs {[i['name'] for i in inputs]}: give representative data "
                "as a mapping name -> array"
            )
        spec = inputs[0]
        x = data["x"]
        return [{spec["name"]: _to_input(x[k : k + 1], spec)} for k in range(len(x))]
    missing = [i["name"] for i in inputs if f"feed:{i['name']}" not in data]
    if missing:
        raise ModelFileError(f"representative data lacks the model inputs {missing}")
    n = min(len(data[f"feed:{i['name']}"]) for i in inputs)
    return [
        {i["name"]: _to_input(data[f"feed:{i['name']}"][k], i) for i in inputs} for k in range(n)
    ]


def random_feeds(inputs: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(0)
    feeds = []
    for _ in range(n):
        feed = {}
        for spec in inputs:
            shape = [d if d is not None else 1 for d in spec["shape"]]
            dtype = _np_dtype(spec["dtype"])
            if np.issubdtype(dtype, np.floating):
                feed[spec["name"]] = rng.standard_normal(shape).astype(dtype)
            elif dtype == np.bool_:
                feed[spec["name"]] = rng.integers(0, 2, shape).astype(bool)
            else:
                info = np.iinfo(dtype)
                lo, hi = max(info.min, -128), min(info.max, 127)
                feed[spec["name"]] = rng.integers(lo, hi + 1, shape).astype(dtype)
        feeds.append(feed)
    return feeds


def choose_feeds(
    req: dict[str, Any], inputs: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], Any, str]:
    """The feeds to time and compare on, test labels if any, and a sentence saying where they came from."""
    if req.get("test_npz"):
        feeds, labels = load_test_set(req["test_npz"], inputs)
        return feeds, labels, f"test set x ({len(feeds)} samples)"
    if req.get("representative"):
        feeds = representative_feeds(req["representative"], inputs)
        return feeds, None, f"representative data ({len(feeds)} feeds)"
    feeds = random_feeds(inputs, RANDOM_FEEDS)
    return (
        feeds,
        None,
        (
            f"random data ({len(feeds)} feeds, dynamic dimensions as 1): activation ranges are not "
            "those of real inputs"
        ),
    )


# ---------------------------------------------------------------- profiling


def profile(req: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    path, kind = req["path"], req["kind"]
    # the runtime's own footprint, so the report can tell it from the model's
    if kind == "onnx":
        import onnxruntime  # noqa: F401
    else:
        import ai_edge_litert.interpreter  # noqa: F401
    baseline = _peak_rss()
    model = _Model(path, kind, 1)
    feeds, labels, source = choose_feeds(req, model.inputs)
    if not feeds:
        raise ModelFileError("no samples to run: the test set or representative data is empty")

    outputs = []
    for k, feed in enumerate(feeds):
        try:
            outputs.append(np.asarray(model.run(feed), dtype=np.float32))
        except ModelFileError:
            raise
        except Exception as exc:
            shapes = {n: _fmt(v.shape) for n, v in feed.items()}
            raise ModelFileError(
                f"'{os.path.basename(path)}' failed on feed {k} from {source} with input "
                f"shapes {shapes}: {exc}"
            ) from exc
    y = np.concatenate(
        [o.reshape(1, -1) if o.ndim <= 1 else o.reshape(len(o), -1) for o in outputs]
    )
    if req.get("outputs"):
        np.savez(req["outputs"], y=y)

    latency = {}
    for t in req["threads"]:
        timed = model if t == 1 else _Model(path, kind, t)
        latency[str(t)] = _latency(timed, feeds[0], int(req["runs"]))
        if timed is not model:
            del timed
    # measured before the MAC trace below, which loads a second session
    peak = _peak_rss()

    result: dict[str, Any] = {
        "size_bytes": os.path.getsize(path),
        "parameters": None,
        "macs": None,
        "inputs": model.inputs,
        "outputs": model.outputs,
        "feeds": source,
        "latency_ms": latency,
        "runs": int(req["runs"]),
        "peak_rss_bytes": peak,
        "runtime_rss_bytes": baseline,
    }
    if kind == "onnx":
        result["parameters"] = onnx_parameter_count(load_onnx_checked(path))
        result["macs"], result["macs_complete"] = onnx_runtime_macs(_read(path), feeds[0])
        result["macs_from"] = "ONNX Runtime profile of one run on feed 0"
    else:
        info = inspect_tflite(path)
        result["parameters"], result["macs"] = info["parameters"], info["macs"]
        result["macs_complete"] = info["macs_complete"]
    if labels is not None:
        from workers.ml.export.onnx import predicted_class

        result["accuracy"] = float(np.mean(predicted_class(y) == labels))
        result["test_samples"] = len(labels)
    return result


def _latency(model: _Model, feed: dict[str, Any], runs: int) -> dict[str, float]:
    import numpy as np

    for _ in range(WARMUP_RUNS):
        model.run(feed)
    times = np.empty(runs)
    for k in range(runs):
        t0 = time.perf_counter_ns()
        model.run(feed)
        times[k] = (time.perf_counter_ns() - t0) / 1e6
    return {
        "p50": float(np.percentile(times, 50)),
        "p99": float(np.percentile(times, 99)),
        "mean": float(times.mean()),
    }


def quantize(req: dict[str, Any]) -> dict[str, Any]:
    from workers.ml.export.onnx import OnnxExportError, quantize_onnx_int8

    path = req["path"]
    load_onnx_checked(path)
    model = _Model(path, "onnx", 1)
    feeds, _, source = choose_feeds(req, model.inputs)
    rep = {spec["name"]: _stack([f[spec["name"]] for f in feeds]) for spec in model.inputs}
    try:
        q = quantize_onnx_int8(_read(path), rep)
    except OnnxExportError as exc:
        raise ModelFileError(f"'{os.path.basename(path)}': {exc}") from exc
    with open(req["out"], "wb") as f:
        f.write(q)
    import onnx

    # quantize_static leaves If/Loop bodies in float: say how much of the graph became int8
    ops = [n.op_type for n in _all_nodes(onnx.load_model_from_string(q).graph)]
    result = {
        "calibration": source,
        "size_bytes": len(q),
        "quantized_tensors": ops.count("QuantizeLinear"),
        "peak_rss_bytes": _peak_rss(),
    }
    if result["quantized_tensors"] == 0:
        result["note"] = (
            "nothing was quantized: quantize_static does not enter If/Loop subgraphs, and this "
            "model keeps its compute there"
            if any(
                n.op_type in ("If", "Loop", "Scan")
                for n in onnx.load_model_from_string(q).graph.node
            )
            else "nothing was quantized: no operator of this model has an int8 kernel in QDQ form"
        )
    return result


def _all_nodes(graph: Any) -> list[Any]:
    nodes = []
    for n in graph.node:
        nodes.append(n)
        for a in n.attribute:
            if a.type == a.GRAPH:
                nodes.extend(_all_nodes(a.g))
    return nodes


def _stack(arrays: list[Any]) -> Any:
    import numpy as np

    return np.stack(arrays)


def keras_to_onnx_file(req: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from workers.ml.export.onnx import keras_to_onnx, verify_onnx

    model = load_keras_checked(req["path"])
    data = keras_to_onnx(model)
    with open(req["out"], "wb") as f:
        f.write(data)
    onnx_model = _Model(req["out"], "onnx", 1)
    feeds, _, source = choose_feeds(req, onnx_model.inputs)
    x = np.concatenate([next(iter(f.values())) for f in feeds])
    check = verify_onnx(data, model, x) if len(model.inputs) == 1 else None
    # inspection rides along: loading TensorFlow twice would double the slowest step
    info = {
        "kind": "keras",
        "size_bytes": os.path.getsize(req["path"]),
        **_keras_info(model, data),
        "peak_rss_bytes": _peak_rss(),
    }
    return {
        "inspect": info,
        "conversion": {"onnx_size_bytes": len(data), "keras_vs_onnx": check, "checked_on": source},
    }


def _peak_rss() -> int:
    """High-water RSS of this process since exec.

    Not getrusage's ru_maxrss: Linux carries the parent's peak across fork and exec into it,
    so a worker started from a big process would report the parent's size.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _prod(dims: Any) -> int:
    p = 1
    for d in dims:
        p *= int(d)
    return p


if __name__ == "__main__":
    sys.exit(main(sys.argv))
