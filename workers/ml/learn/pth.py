"""Reading PyTorch ``.pth`` state dicts into numpy arrays without importing torch."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

# Header of torch's legacy (pre-1.6) serialization: a pickled int, then a pickled
# protocol version, then a pickled dict describing the writer's machine.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage class name -> numpy dtype (little endian, as torch writes it).
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class PthError(ValueError):
    """A ``.pth`` file that cannot be read safely: malformed, truncated, or asking for code."""


@dataclass(eq=False)
class _Storage:
    """A storage named in the pickle; its bytes arrive later in the file."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(eq=False)
class _StorageView:
    """A view into another storage (legacy ``view_metadata``)."""

    base: _Storage
    offset: int
    numel: int


@dataclass(eq=False)
class _TensorRef:
    """A tensor whose storage may not be read yet: resolved after the whole file is read."""

    storage: _Storage | _StorageView
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    extra: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co: only its dtype matters here."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


def _rebuild_tensor(
    storage: Any, storage_offset: int, size: Any, stride: Any, *rest: Any
) -> _TensorRef:
    if not isinstance(storage, (_Storage, _StorageView)):
        raise PthError(f"tensor built from {type(storage).__name__}, not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride), list(rest))


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    }
    for name in _STORAGE_DTYPES:
        allowed[("torch", name)] = _StorageType(name)
    return allowed


_ALLOWED = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    """Only the handful of globals a state dict needs; anything else is refused, never imported."""

    def __init__(self, file: BinaryIO, source: str) -> None:
        super().__init__(file)
        self.source = source
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise PthError(f"{self.source}: refused global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise PthError(f"{self.source}: unknown persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise PthError(
                f"{self.source}: persistent id names {storage_type!r:.80}, not a storage"
            )
        storage = self.storages.get(key)
        if storage is None:
            storage = _Storage(key, storage_type.dtype, numel)
            self.storages[key] = storage
        view = pid[5] if len(pid) > 5 else None
        if view is not None:
            # Legacy files may hold views of a larger storage: (view key, offset, size).
            _view_key, view_offset, view_numel = view
            return _StorageView(storage, int(view_offset), int(view_numel))
        return storage


def _load_pickle(unpickler: _RestrictedUnpickler) -> Any:
    try:
        return unpickler.load()
    except PthError:
        raise
    except EOFError:
        raise PthError(f"{unpickler.source}: truncated (file ends inside a pickle)") from None
    except (
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as e:
        if "truncated" in str(e):
            raise PthError(f"{unpickler.source}: truncated (file ends inside a pickle)") from None
        raise PthError(f"{unpickler.source}: not a readable pickle ({e})") from None


def _resolve(obj: Any, source: str) -> Any:
    """Replace every tensor reference by a numpy array copied out of its storage."""
    if isinstance(obj, _TensorRef):
        st = obj.storage
        base, offset = (st.base, st.offset) if isinstance(st, _StorageView) else (st, 0)
        if base.data is None:
            raise PthError(f"{source}: storage {base.key} has no data")
        itemsize = base.dtype.itemsize
        flat = base.data[offset:]
        needed = 1 + sum((n - 1) * s for n, s in zip(obj.shape, obj.stride) if n > 0)
        if any(n == 0 for n in obj.shape):
            return np.zeros(obj.shape, base.dtype)
        if obj.offset + needed > flat.size:
            raise PthError(
                f"{source}: tensor of shape {obj.shape} reaches past its storage {base.key}"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[obj.offset :],
            shape=obj.shape,
            strides=tuple(s * itemsize for s in obj.stride),
            writeable=False,
        )
        return np.array(view, dtype=base.dtype.newbyteorder("="))
    if isinstance(obj, collections.OrderedDict):
        out = collections.OrderedDict((k, _resolve(v, source)) for k, v in obj.items())
        return out
    if isinstance(obj, dict):
        return {k: _resolve(v, source) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, source) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, source) for v in obj)
    return obj


def _read_legacy(f: BinaryIO, source: str) -> Any:
    head = _RestrictedUnpickler(f, source)
    magic = _load_pickle(head)
    if magic != LEGACY_MAGIC:
        raise PthError(f"{source}: not a PyTorch file (bad magic number)")
    protocol = _load_pickle(_RestrictedUnpickler(f, source))
    if protocol != LEGACY_PROTOCOL:
        raise PthError(f"{source}: unsupported legacy protocol {protocol!r}")
    sys_info = _load_pickle(_RestrictedUnpickler(f, source))
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise PthError(f"{source}: written on a big-endian machine, not supported")

    body = _RestrictedUnpickler(f, source)
    obj = _load_pickle(body)
    keys = _load_pickle(_RestrictedUnpickler(f, source))
    if not isinstance(keys, list):
        raise PthError(f"{source}: storage key list missing")
    for key in keys:
        storage = body.storages.get(str(key))
        if storage is None:
            raise PthError(f"{source}: data for storage {key} that no tensor uses")
        # Each storage: its element count as little-endian int64, then the raw elements.
        header = f.read(8)
        if len(header) < 8:
            raise PthError(f"{source}: truncated (file ends before storage {key})")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise PthError(
                f"{source}: storage {key} holds {numel} elements, pickle said {storage.numel}"
            )
        nbytes = numel * storage.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) < nbytes:
            raise PthError(
                f"{source}: truncated (storage {key} needs {nbytes} bytes, file has {len(raw)})"
            )
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return _resolve(obj, source)


def _read_zip(zf: zipfile.ZipFile, source: str) -> Any:
    names = zf.namelist()
    pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
    if pkl is None:
        raise PthError(f"{source}: zip without data.pkl, not a PyTorch file")
    prefix = pkl[: -len("data.pkl")]
    body = _RestrictedUnpickler(io.BytesIO(zf.read(pkl)), source)
    obj = _load_pickle(body)
    for key, storage in body.storages.items():
        try:
            raw = zf.read(f"{prefix}data/{key}")
        except KeyError:
            raise PthError(f"{source}: storage {key} missing from the archive") from None
        nbytes = storage.numel * storage.dtype.itemsize
        if len(raw) < nbytes:
            raise PthError(f"{source}: truncated storage {key}")
        storage.data = np.frombuffer(raw[:nbytes], dtype=storage.dtype)
    return _resolve(obj, source)


def load_pth(path: str | os.PathLike[str]) -> Any:
    """Read a ``.pth`` file (legacy or zip serialization) into dicts of numpy arrays.

    Only ``collections.OrderedDict``, torch's tensor-rebuild functions and storage
    classes are accepted from the pickle; any other global raises ``PthError``
    before anything is imported or called.
    """
    source = os.fspath(path)
    try:
        if zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as zf:
                return _read_zip(zf, source)
        with open(source, "rb") as f:
            return _read_legacy(f, source)
    except (zipfile.BadZipFile, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise PthError(f"{source}: unreadable ({e})") from None


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """``load_pth`` for a state dict: a flat mapping of parameter names to arrays."""
    obj = load_pth(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise PthError(f"{os.fspath(path)}: holds a {type(obj).__name__}, not a state dict")
    out: dict[str, np.ndarray] = {}
    for k, v in obj.items():
        if isinstance(v, np.ndarray):
            out[str(k)] = v
    if not out:
        raise PthError(f"{os.fspath(path)}: state dict without tensors")
    return out
