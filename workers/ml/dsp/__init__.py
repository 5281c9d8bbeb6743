"""The processing-block registry: names, parameter parsing and descriptions for forms and the API."""

from __future__ import annotations

import dataclasses
import types
import typing
from types import ModuleType
from typing import Any

from workers.ml.dsp import flatten, image, mfcc, mfe, raw, spectral, spectrogram
from workers.ml.dsp.common import DspParamError, check_ranges, field_types

__all__ = [
    "BLOCKS",
    "DspParamError",
    "describe",
    "get_block",
    "params_from_dict",
    "params_to_dict",
]

BLOCKS: dict[str, ModuleType] = {
    "raw": raw,
    "flatten": flatten,
    "spectral-analysis": spectral,
    "spectrogram": spectrogram,
    "mfe": mfe,
    "mfcc": mfcc,
    "image": image,
}


def get_block(name: str) -> ModuleType:
    try:
        return BLOCKS[name]
    except KeyError:
        raise DspParamError(f"unknown processing block {name!r}; known: {sorted(BLOCKS)}") from None


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return f"{_type_name(inner[0])} | null"
    if origin is tuple:
        return f"list[{_type_name(args[0])}]"
    return {int: "int", float: "float", bool: "bool", str: "str"}[tp]


def _coerce(name: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(name, value, next(a for a in args if a is not type(None)))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise DspParamError(f"{name} must be a list of numbers, got {value!r}")
        return tuple(_coerce(name, v, args[0]) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise DspParamError(f"{name} must be true or false, got {value!r}")
        return value
    if tp is int:
        # JSON may carry 256.0 for 256; anything fractional is a mistake
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise DspParamError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DspParamError(f"{name} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise DspParamError(f"{name} must be a string, got {value!r}")
        return value
    raise DspParamError(f"{name} has an unsupported type {tp}")


def params_from_dict(name: str, d: dict) -> Any:
    """A block's Params from a JSON-like dict; missing keys take defaults. Unknown keys, wrong types
    and out-of-range values raise DspParamError naming the parameter."""
    block = get_block(name)
    if not isinstance(d, dict):
        raise DspParamError(f"parameters of {name} must be an object, got {type(d).__name__}")
    hints = field_types(block.Params)
    unknown = sorted(set(d) - set(hints))
    if unknown:
        raise DspParamError(f"unknown parameter(s) of {name}: {', '.join(map(str, unknown))}")
    params = block.Params(**{k: _coerce(k, v, hints[k]) for k, v in d.items()})
    check_ranges(params)
    return params


def params_to_dict(params: Any) -> dict:
    """JSON-ready dict of a Params instance (tuples become lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()
    }


def describe(name: str) -> dict:
    """Title, doc, version and each parameter (type, default, min/max/choices, help) of a block."""
    block = get_block(name)
    hints = field_types(block.Params)
    parameters = []
    for f in dataclasses.fields(block.Params):
        meta = f.metadata
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        entry: dict[str, Any] = {
            "name": f.name,
            "type": _type_name(hints[f.name]),
            "default": default,
            "help": meta.get("help", ""),
        }
        for key in ("min", "max"):
            if meta.get(key) is not None:
                entry[key] = meta[key]
        if meta.get("exclusive_min"):
            entry["exclusive_min"] = True
        if meta.get("choices") is not None:
            entry["choices"] = list(meta["choices"])
        parameters.append(entry)
    return {
        "name": name,
        "title": block.TITLE,
        "doc": (block.__doc__ or "").strip(),
        "version": block.IMPLEMENTATION_VERSION,
        "parameters": parameters,
    }
