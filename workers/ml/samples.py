"""The canonical payload of a sample: its in-memory types and the one way they are written and read.

A sample is either a `TimeSeries` (sensor axes sampled at a fixed interval; audio is a time series
whose sensors have the units ``"wav"`` and whose values are 16-bit PCM sample values) or an `Image`
(uint8 pixels, 1 or 3 channels). Every stored sample goes through `encode` and comes back through
`decode`:

- time series: an uncompressed ``.npz`` with two arrays, ``values`` (float32 [n, axes]) and
  ``header`` (UTF-8 JSON as uint8: ``{"version": 1, "interval_ms": ..., "sensors": [{"name",
  "units"}, ...]}``). It is read with ``allow_pickle=False`` and written with fixed zip timestamps,
  so the same payload always encodes to the same bytes.
- images: PNG (lossless, so a JPEG upload is decoded once and never re-compressed).

Duplicate detection (`content_sha256`) hashes the *content*, not the uploaded bytes: for a time
series the shape, the interval (rounded to 1e-6 ms), the axis names and the float32 values; for an image the shape and
the pixels. So the same recording uploaded as EI JSON, as CBOR or as CSV (same axis names) has the
same hash, and re-signing or re-serializing a file does not make it "new". Units are left out on
purpose: CSV cannot carry them. An image uploaded as PNG and as JPEG has different pixels and
therefore different hashes.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib import format as npy_format
from PIL import Image as PILImage

AUDIO_UNITS = "wav"
_NPZ_MAGIC = b"PK\x03\x04"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_HEADER_VERSION = 1
# Any fixed date works; 1980-01-01 is the earliest a zip entry can carry.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


# What zipfile, numpy and PIL raise on damaged bytes (zipfile alone uses five of these).
_READ_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    KeyError,
    SyntaxError,
    struct.error,
    zlib.error,
    zipfile.BadZipFile,
    NotImplementedError,
    RuntimeError,
    PILImage.DecompressionBombError,
)


class SampleError(ValueError):
    """A payload that is not a valid sample, or canonical bytes that cannot be read back."""


@dataclass(frozen=True)
class Sensor:
    """One axis of a time series: its name (``accX``) and SenML-style units (``m/s2``, ``wav``)."""

    name: str
    units: str


@dataclass(frozen=True, eq=False)
class TimeSeries:
    """Values sampled every ``interval_ms``; one column per sensor axis.

    values: float32 [n >= 1, axes >= 1], all finite (converted on construction).
    interval_ms: > 0 and finite (100 Hz = 10.0; 16 kHz audio = 0.0625).
    sensors: one `Sensor` per column.
    """

    values: np.ndarray
    interval_ms: float
    sensors: tuple[Sensor, ...]

    def __post_init__(self) -> None:
        values = np.ascontiguousarray(self.values, dtype=np.float32)
        if values.ndim == 1:
            values = values.reshape(-1, 1)
        if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
            raise SampleError(f"time series values must be [n, axes], got shape {values.shape}")
        sensors = tuple(self.sensors)
        if any(not isinstance(s, Sensor) for s in sensors):
            raise SampleError("time series sensors must be Sensor(name, units) instances")
        if len(sensors) != values.shape[1]:
            raise SampleError(f"time series has {values.shape[1]} axes but {len(sensors)} sensors")
        interval = float(self.interval_ms)
        if not math.isfinite(interval) or interval <= 0:
            raise SampleError(f"interval_ms must be a finite number > 0, got {self.interval_ms!r}")
        if not np.all(np.isfinite(values)):
            raise SampleError("time series values contain NaN or infinite values")
        values.setflags(write=False)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "interval_ms", interval)
        object.__setattr__(self, "sensors", sensors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimeSeries):
            return NotImplemented
        return (
            self.interval_ms == other.interval_ms
            and self.sensors == other.sensors
            and np.array_equal(self.values, other.values)
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sensors)

    @property
    def length(self) -> int:
        return int(self.values.shape[0])

    @property
    def frequency_hz(self) -> float:
        return 1000.0 / self.interval_ms

    @property
    def duration_ms(self) -> float:
        return self.length * self.interval_ms

    @property
    def is_audio(self) -> bool:
        return all(s.units.lower() == AUDIO_UNITS for s in self.sensors)


@dataclass(frozen=True, eq=False)
class Image:
    """Pixels as uint8 [height, width, channels], channels 1 (grayscale) or 3 (RGB)."""

    pixels: np.ndarray

    def __post_init__(self) -> None:
        pixels = np.asarray(self.pixels)
        if pixels.dtype != np.uint8:
            raise SampleError(f"image pixels must be uint8, got {pixels.dtype}")
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or 0 in pixels.shape:
            raise SampleError(f"image pixels must be [H, W, 1 or 3], got shape {pixels.shape}")
        pixels = np.ascontiguousarray(pixels)
        pixels.setflags(write=False)
        object.__setattr__(self, "pixels", pixels)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Image):
            return NotImplemented
        return np.array_equal(self.pixels, other.pixels) and self.pixels.shape == other.pixels.shape

    __hash__ = None  # type: ignore[assignment]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])


Payload = TimeSeries | Image


def canonical_extension(payload: Payload) -> str:
    """The file extension (no dot) of `encode`'s output: ``"npz"`` or ``"png"``."""
    if isinstance(payload, TimeSeries):
        return "npz"
    if isinstance(payload, Image):
        return "png"
    raise SampleError(f"not a sample payload: {type(payload).__name__}")


def encode(payload: Payload) -> bytes:
    """The canonical bytes of a payload (deterministic: same payload, same bytes)."""
    if isinstance(payload, TimeSeries):
        return _encode_npz(payload)
    if isinstance(payload, Image):
        return _encode_png(payload)
    raise SampleError(f"not a sample payload: {type(payload).__name__}")


def decode(data: bytes) -> Payload:
    """Read canonical bytes written by `encode` back into a payload."""
    if data.startswith(_NPZ_MAGIC):
        return _decode_npz(data)
    if data.startswith(_PNG_MAGIC):
        return _decode_png(data)
    raise SampleError("canonical sample data is neither .npz nor PNG")


def content_sha256(payload: Payload) -> str:
    """Hex SHA-256 of the payload's content (see the module docstring for what is included)."""
    digest = hashlib.sha256()
    if isinstance(payload, TimeSeries):
        header = {
            "kind": "time-series",
            "shape": list(payload.values.shape),
            # Rounded so an interval computed from CSV timestamps (10.000000000000002) still
            # matches the 10 written in a JSON document.
            "interval_ms": round(payload.interval_ms, 6),
            "axes": list(payload.axes),
        }
        digest.update(json.dumps(header, sort_keys=True).encode())
        digest.update(payload.values.astype("<f4", copy=False).tobytes())
    elif isinstance(payload, Image):
        header = {"kind": "image", "shape": list(payload.pixels.shape)}
        digest.update(json.dumps(header, sort_keys=True).encode())
        digest.update(payload.pixels.tobytes())
    else:
        raise SampleError(f"not a sample payload: {type(payload).__name__}")
    return digest.hexdigest()


def to_wav(ts: TimeSeries) -> bytes:
    """A 16-bit PCM WAV of a time series (one channel per axis) for playback.

    Values are taken as PCM sample values (how audio is stored), rounded and clipped to int16.
    The sample rate is 1000 / interval_ms rounded to whole Hz.
    """
    rate = round(1000.0 / ts.interval_ms)
    if not 1 <= rate <= 0xFFFFFFFF // (2 * len(ts.sensors)):
        raise SampleError(f"interval_ms {ts.interval_ms} gives no usable WAV sample rate")
    pcm = np.clip(np.rint(ts.values), -32768, 32767).astype("<i2")
    data = pcm.tobytes()
    channels = pcm.shape[1]
    block_align = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block_align, block_align, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    if len(data) % 2:
        body += b"\x00"
    return b"RIFF" + struct.pack("<I", len(body)) + body


def to_ei_json(ts: TimeSeries, device_name: str | None, device_type: str) -> dict[str, Any]:
    """The sample as an unsigned Edge Impulse data acquisition document (re-importable).

    One-axis series are written as a flat ``values`` list (as EI does for audio), others as rows.
    Numbers are the shortest decimal that reads back to the same float32; integral values are ints.
    """
    flat = ts.values.ravel()
    if np.all(flat == np.rint(flat)) and np.all(np.abs(flat) < 2**24):
        numbers: list[Any] = flat.astype(np.int64).tolist()
    else:
        numbers = [_short_float(v) for v in flat]
    n_axes = ts.values.shape[1]
    values: list[Any] = (
        numbers
        if n_axes == 1
        else [numbers[i : i + n_axes] for i in range(0, len(numbers), n_axes)]
    )
    payload: dict[str, Any] = {}
    if device_name is not None:
        payload["device_name"] = device_name
    payload["device_type"] = device_type
    payload["interval_ms"] = ts.interval_ms
    payload["sensors"] = [{"name": s.name, "units": s.units} for s in ts.sensors]
    payload["values"] = values
    return {
        "protected": {"ver": "v1", "alg": "none", "iat": 0},
        "signature": "0" * 64,
        "payload": payload,
    }


def _short_float(v: np.float32) -> float:
    # str() of a float32 is its shortest round-tripping decimal; float64 would print 0.07699999958.
    return float(str(v))


def _encode_npz(ts: TimeSeries) -> bytes:
    header = {
        "version": _HEADER_VERSION,
        "interval_ms": ts.interval_ms,
        "sensors": [{"name": s.name, "units": s.units} for s in ts.sensors],
    }
    arrays = {
        "values": ts.values,
        "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
    }
    out = io.BytesIO()
    # np.savez stamps entries with the current time; writing the zip here keeps bytes stable.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            with archive.open(info, "w", force_zip64=True) as entry:
                npy_format.write_array(entry, array, allow_pickle=False)
    return out.getvalue()


def _decode_npz(data: bytes) -> TimeSeries:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            if set(archive.files) != {"values", "header"}:
                raise SampleError(f"canonical .npz has arrays {sorted(archive.files)}")
            values = archive["values"]
            header_bytes = archive["header"]
    except SampleError:
        raise
    except _READ_ERRORS as exc:
        raise SampleError(f"canonical .npz cannot be read: {exc}") from exc
    if values.dtype != np.float32 or header_bytes.dtype != np.uint8:
        raise SampleError("canonical .npz has wrong dtypes (values float32, header uint8)")
    try:
        header = json.loads(header_bytes.tobytes().decode())
        if header["version"] != _HEADER_VERSION:
            raise SampleError(f"canonical .npz header version {header['version']!r} is unknown")
        sensors = tuple(Sensor(str(s["name"]), str(s["units"])) for s in header["sensors"])
        interval_ms = float(header["interval_ms"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SampleError(f"canonical .npz header is invalid: {exc}") from exc
    return TimeSeries(values=values, interval_ms=interval_ms, sensors=sensors)


def _encode_png(image: Image) -> bytes:
    pixels = image.pixels
    # fromarray picks L for [H, W] and RGB for [H, W, 3] uint8.
    pil = PILImage.fromarray(pixels[:, :, 0] if image.channels == 1 else pixels)
    out = io.BytesIO()
    pil.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


def _decode_png(data: bytes) -> Image:
    try:
        with PILImage.open(io.BytesIO(data), formats=["PNG"]) as pil:
            if pil.mode not in ("L", "RGB"):
                raise SampleError(f"canonical PNG has mode {pil.mode}, expected L or RGB")
            pixels = np.asarray(pil)
    except SampleError:
        raise
    except _READ_ERRORS as exc:
        raise SampleError(f"canonical PNG cannot be read: {exc}") from exc
    return Image(pixels=pixels)
