"""Reads a .tflite flatbuffer into a plain graph of tensors, constant buffers and operators."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The schema module that ships with ai-edge-litert; it is the one the interpreter itself reads.
from ai_edge_litert import schema_py_generated as schema


class TFLiteReadError(ValueError):
    """The bytes are not a readable .tflite model (or hold more than one subgraph)."""


# TensorType enum values of the schema -> numpy dtype names.
_DTYPES: dict[int, str] = {
    schema.TensorType.FLOAT32: "float32",
    schema.TensorType.FLOAT16: "float16",
    schema.TensorType.INT32: "int32",
    schema.TensorType.UINT8: "uint8",
    schema.TensorType.INT64: "int64",
    schema.TensorType.BOOL: "bool",
    schema.TensorType.INT16: "int16",
    schema.TensorType.INT8: "int8",
    schema.TensorType.FLOAT64: "float64",
    schema.TensorType.UINT32: "uint32",
    schema.TensorType.UINT16: "uint16",
}

_OP_NAMES: dict[int, str] = {
    v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")
}
_ACTIVATIONS: dict[int, str] = {
    v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")
}
_PADDINGS: dict[int, str] = {v: k for k, v in vars(schema.Padding).items() if not k.startswith("_")}


@dataclass(frozen=True)
class Quantization:
    """Affine quantization: real = scale * (q - zero_point), per tensor or per channel (`axis`)."""

    scale: np.ndarray  # float32, length 1 (per tensor) or the size of dimension `axis`
    zero_point: np.ndarray  # int64, same length as scale
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: Quantization | None
    data: np.ndarray | None = field(default=None, repr=False)  # constant buffer, shaped

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Operator:
    index: int
    op: str  # builtin operator name, e.g. "CONV_2D", or the custom code of a custom op
    inputs: tuple[int, ...]  # tensor indices; -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any]  # builtin options in snake_case; activation/padding as names


@dataclass(frozen=True)
class Graph:
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    description: str = ""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _options(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    out: dict[str, Any] = {}
    for key, value in vars(raw).items():
        name = _snake(key)
        if name == "fused_activation_function":
            value = _ACTIVATIONS.get(value, str(value))
        elif name == "padding":
            value = _PADDINGS.get(value, str(value))
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        out[name] = value
    return out


def _buffer_bytes(model: Any, model_bytes: bytes, index: int) -> bytes | None:
    if index <= 0 or index >= len(model.buffers):
        return None
    buf = model.buffers[index]
    # Models above 2 GB keep buffers after the flatbuffer, addressed by offset/size.
    if getattr(buf, "offset", 0) and buf.offset > 1:
        return model_bytes[buf.offset : buf.offset + buf.size]
    if buf.data is None or len(buf.data) == 0:
        return None
    return np.asarray(buf.data, dtype=np.uint8).tobytes()


def read_tflite(model_bytes: bytes) -> Graph:
    """Parse `model_bytes` (a .tflite file) into a Graph; raises TFLiteReadError on bad input."""
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise TFLiteReadError("not a .tflite model: the file identifier 'TFL3' is missing")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    except Exception as exc:  # the flatbuffer library raises bare struct/index errors
        raise TFLiteReadError(f"the .tflite flatbuffer cannot be parsed: {exc}") from exc
    if not model.subgraphs:
        raise TFLiteReadError("the .tflite model has no subgraph")
    if len(model.subgraphs) > 1:
        raise TFLiteReadError(
            f"the .tflite model has {len(model.subgraphs)} subgraphs; only single-graph models "
            "(no control flow) are supported"
        )
    sub = model.subgraphs[0]

    tensors = []
    for i, t in enumerate(sub.tensors or []):
        dtype = _DTYPES.get(t.type)
        if dtype is None:
            raise TFLiteReadError(f"tensor {i} has an unsupported type id {t.type}")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        quant = None
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) > 0:
            zp = q.zeroPoint if q.zeroPoint is not None else np.zeros(len(q.scale))
            quant = Quantization(
                scale=np.asarray(q.scale, dtype=np.float32),
                zero_point=np.asarray(zp, dtype=np.int64),
                axis=int(q.quantizedDimension),
            )
        data = None
        raw = _buffer_bytes(model, model_bytes, t.buffer)
        if raw is not None:
            arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
            data = arr.astype(dtype).reshape(shape) if shape else arr.astype(dtype)
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors.append(Tensor(i, name, shape, dtype, quant, data))

    operators = []
    for i, op in enumerate(sub.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.customCode
            name = custom.decode() if isinstance(custom, bytes) else str(custom)
        else:
            name = _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
        operators.append(
            Operator(
                index=i,
                op=name,
                inputs=tuple(int(x) for x in (op.inputs if op.inputs is not None else [])),
                outputs=tuple(int(x) for x in (op.outputs if op.outputs is not None else [])),
                options=_options(op.builtinOptions),
            )
        )
    desc = model.description
    return Graph(
        tensors=tuple(tensors),
        operators=tuple(operators),
        inputs=tuple(int(x) for x in sub.inputs),
        outputs=tuple(int(x) for x in sub.outputs),
        description=desc.decode() if isinstance(desc, bytes) else str(desc or ""),
    )
