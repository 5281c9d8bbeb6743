"""Parsing of uploaded sensor files (EI JSON/CBOR, CSV, WAV, JPEG, PNG) into sample payloads.

Pure functions, no Django models: the API passes in the bytes, the request's content type and file
name, the project's HMAC key and the limits, and gets back a `ParsedSample` or an `IngestionError`
whose ``status`` is the HTTP status to answer with (400 bad input, 413 over a limit, 415 an
unsupported content type) and whose message names the problem.

Edge Impulse data acquisition format (JSON or CBOR)::

    {"protected": {"ver": "v1", "alg": "HS256" | "none", "iat": 1700000000},
     "signature": "<64 hex characters>",
     "payload": {"device_name": "ac:87:a3:0a:2d:1b", "device_type": "DISCO-L475VG-IOT01A",
                 "interval_ms": 10, "sensors": [{"name": "accX", "units": "m/s2"}, ...],
                 "values": [[-9.81, 0.03, 1.21], ...]}}        # or a flat list for one axis

Signature (alg ``HS256``): every Edge Impulse reference client serializes the document with
``"signature"`` set to 64 ``"0"`` characters, takes HMAC-SHA256 (hex, lowercase) of those bytes
with the project's HMAC key (its text as UTF-8 bytes), and then overwrites the 64 zeros *in the
serialized bytes* with the hex digest: the JS data forwarder does it on ``JSON.stringify`` output
(no spaces), the docs' Python example on ``json.dumps`` output (with spaces), and ingestion-sdk-c
on its streamed CBOR (a definite map whose ``values`` is an indefinite-length array), seeking back
to the signature's offset. So what we verify is exactly that: the uploaded bytes with the
signature's 64 characters replaced by 64 ``"0"`` characters, whatever the serializer's spacing,
key order or float widths were. In JSON the signature is located as the string literal
``"<hex>"``; in CBOR as the text string header ``0x78 0x40`` followed by the 64 characters. The
comparison is constant-time and case-insensitive on the hex digits.

When the project has no HMAC key a signed document is accepted as unsigned (``signed=False``)
unless signing is required. ``alg: "none"`` documents are rejected when signing is required.

Limits (`Limits`) are checked before the expensive step: the body size before parsing, the pixel
count from the image header before decoding (decompression bombs), the value count before building
arrays.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import itertools
import json
import math
import re
import struct
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

import cbor2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from workers.ml.samples import AUDIO_UNITS, Image, SampleError, Sensor, TimeSeries

Kind = Literal["time-series", "audio", "image"]
Format = Literal["json", "cbor", "csv", "wav", "jpeg", "png"]

# The raw extension stored for each format (no dot).
RAW_EXTENSIONS: dict[str, str] = {
    "json": "json",
    "cbor": "cbor",
    "csv": "csv",
    "wav": "wav",
    "jpeg": "jpg",
    "png": "png",
}

_CONTENT_TYPES: dict[str, Format] = {
    "application/json": "json",
    "text/json": "json",
    "application/cbor": "cbor",
    "text/csv": "csv",
    "application/csv": "csv",
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/x-wav": "wav",
    "audio/vnd.wave": "wav",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/png": "png",
}
# Content types that say nothing about the format: fall back to the extension, then the bytes.
_GENERIC_CONTENT_TYPES = {
    "",
    "application/octet-stream",
    "binary/octet-stream",
    "multipart/form-data",
    "text/plain",
}
_EXTENSIONS: dict[str, Format] = {
    "json": "json",
    "cbor": "cbor",
    "csv": "csv",
    "wav": "wav",
    "wave": "wav",
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "png": "png",
}

_SIGNATURE_ZEROS = "0" * 64
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# A CSV step may differ from the median interval by 10 % or 1 ms, whichever is larger: loggers
# that write whole milliseconds (e.g. 62.5 Hz as 16, 16, 15, 16 ms) are still regular.
CSV_INTERVAL_TOLERANCE = 0.10
CSV_INTERVAL_TOLERANCE_MS = 1.0
# ASCII only: Python's \s and \d also match separators and digits float() treats differently.
_CSV_NUMBER = re.compile(r"[ \t]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")

MAX_LABEL_CHARS = 128
MAX_FILE_NAME_CHARS = 255
MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024


class IngestionError(ValueError):
    """Bad uploaded input. ``status`` is the HTTP status for it: 400, 413 or 415."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Upper bounds on one upload.

    max_body_bytes: raw upload size, default 32 MiB (EI JSON of ~4 M values, 17 min of 16 kHz WAV).
    max_values: values over all axes, default 4 000 000 (16 MB as float32; 250 s of 16 kHz audio).
    max_pixels: width x height, default 16 000 000 (a 4000 x 4000 photo, 48 MB as RGB).
    max_axes: sensor axes (WAV channels) per sample, default 64 (ingestion-sdk-c allows 20).
    """

    max_body_bytes: int = 32 * 1024 * 1024
    max_values: int = 4_000_000
    max_pixels: int = 16_000_000
    max_axes: int = 64

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_values", "max_pixels", "max_axes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ParsedSample:
    """The outcome of `parse_upload`.

    device_name/device_type come from the EI document (None for CSV, WAV and images);
    raw_extension is the extension of the uploaded format (``json``, ``cbor``, ``csv``, ``wav``,
    ``jpg``, ``png``); signed is True only when an HS256 signature was verified.
    """

    payload: TimeSeries | Image
    kind: Kind
    device_name: str | None
    device_type: str | None
    sensors: tuple[Sensor, ...]
    raw_extension: str
    signed: bool


def parse_upload(
    data: bytes,
    *,
    file_name: str | None,
    content_type: str | None,
    hmac_key: str | None,
    require_signed: bool,
    limits: Limits,
) -> ParsedSample:
    """Parse one uploaded file into a sample payload, or raise `IngestionError`.

    The format comes from the content type when it names one, else from the file name's extension,
    else from the leading bytes. Within a family the leading bytes decide whatever was declared:
    a ``.png`` that is really a JPEG is decoded as the JPEG it is, and EI JSON sent as
    ``application/cbor`` (the `edgeimpulse` Python SDK does this) is parsed as JSON.
    """
    if len(data) > limits.max_body_bytes:
        raise IngestionError(
            f"body is {len(data)} bytes, over the limit of {limits.max_body_bytes}", status=413
        )
    fmt = detect_format(data, file_name=file_name, content_type=content_type)
    if fmt in ("json", "cbor"):
        return _parse_acquisition(data, fmt, hmac_key, require_signed, limits)
    if require_signed:
        raise IngestionError(
            f"this project requires signed data; a {fmt.upper()} file cannot carry a signature "
            "(upload the Edge Impulse data acquisition format with alg HS256)"
        )
    if fmt == "csv":
        payload = _parse_csv(data, limits)
        return ParsedSample(payload, "time-series", None, None, payload.sensors, "csv", False)
    if fmt == "wav":
        payload = _parse_wav(data, limits)
        return ParsedSample(payload, "audio", None, None, payload.sensors, "wav", False)
    image, actual = _parse_image(data, fmt, limits)
    return ParsedSample(image, "image", None, None, (), RAW_EXTENSIONS[actual], False)


def detect_format(data: bytes, *, file_name: str | None, content_type: str | None) -> Format:
    """Which parser handles this upload (see `parse_upload`); 415 when none does."""
    declared: Format | None = None
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in _CONTENT_TYPES:
        declared = _CONTENT_TYPES[media_type]
    elif media_type not in _GENERIC_CONTENT_TYPES:
        raise IngestionError(f"unsupported content type '{media_type}'", status=415)
    if declared is None and file_name:
        extension = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
        declared = _EXTENSIONS.get(extension)
    sniffed = _sniff(data)
    # The bytes win between formats they tell apart unambiguously: a JPEG named .png, and JSON
    # sent as application/cbor, which the `edgeimpulse` Python SDK does for DataAcquisition
    # samples (an EI CBOR document is a map, so it never starts with "{"; JSON never starts
    # with a byte in 0xa0-0xbf).
    if declared in ("jpeg", "png") and sniffed in ("jpeg", "png"):
        return sniffed
    if declared in ("json", "cbor") and sniffed in ("json", "cbor"):
        return sniffed
    if declared is not None:
        return declared
    if sniffed is not None:
        return sniffed
    shown = media_type or "none"
    raise IngestionError(
        f"unsupported upload: content type '{shown}', file name {file_name!r}; expected EI JSON, "
        "EI CBOR, CSV, WAV, JPEG or PNG",
        status=415,
    )


def _sniff(data: bytes) -> Format | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        return "json"
    # A CBOR map (major type 5) is how every EI CBOR document starts.
    if data and 0xA0 <= data[0] <= 0xBF:
        return "cbor"
    return None


# --- Edge Impulse data acquisition format ------------------------------------------------------


def _parse_acquisition(
    data: bytes, fmt: Format, hmac_key: str | None, require_signed: bool, limits: Limits
) -> ParsedSample:
    document = _load_json(data) if fmt == "json" else _load_cbor(data)
    if not isinstance(document, dict):
        raise IngestionError(f"{fmt.upper()} document must be an object with 'payload'")
    protected = document.get("protected", {})
    if not isinstance(protected, dict):
        raise IngestionError("'protected' must be an object")
    alg = protected.get("alg", "none")
    if alg not in ("HS256", "none"):
        raise IngestionError(f"unsupported protected.alg {alg!r}; expected 'HS256' or 'none'")
    if "payload" not in document:
        raise IngestionError("missing 'payload'")
    signed = False
    if alg == "none":
        if require_signed:
            raise IngestionError("this project requires signed data but protected.alg is 'none'")
    elif hmac_key:
        _verify_signature(data, fmt, document.get("signature"), hmac_key)
        signed = True
    elif require_signed:
        raise IngestionError("cannot verify the HS256 signature: the project has no HMAC key")

    payload = document["payload"]
    if not isinstance(payload, dict):
        raise IngestionError("'payload' must be an object")
    device_name = _optional_text(payload, "device_name")
    device_type = _optional_text(payload, "device_type")
    interval_ms = _interval(payload.get("interval_ms", None))
    sensors = _sensors(payload, limits)
    if "values" not in payload:
        raise IngestionError("missing 'payload.values'")
    values = _values(payload["values"], len(sensors), limits)
    series = TimeSeries(values=values, interval_ms=interval_ms, sensors=sensors)
    kind: Kind = "audio" if series.is_audio else "time-series"
    return ParsedSample(
        series, kind, device_name, device_type, sensors, RAW_EXTENSIONS[fmt], signed
    )


def _reject_constant(name: str) -> float:
    raise IngestionError(f"values must be finite numbers; found {name} in the JSON")


def _load_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestionError(
            f"malformed JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except IngestionError:
        raise
    except json.JSONDecodeError as exc:
        raise IngestionError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except (ValueError, RecursionError) as exc:
        # ValueError: integers over Python's 4300-digit limit; RecursionError: absurd nesting.
        raise IngestionError(f"malformed JSON: {type(exc).__name__}: {str(exc)[:200]}") from exc


def _load_cbor(data: bytes) -> Any:
    stream = io.BytesIO(data)
    try:
        document = cbor2.CBORDecoder(stream).decode()
    except cbor2.CBORDecodeEOF as exc:
        raise IngestionError(f"truncated CBOR: {exc}") from exc
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise IngestionError(f"malformed CBOR: {str(exc)[:200]}") from exc
    except MemoryError:
        raise IngestionError("malformed CBOR: a length in it is too large", status=413) from None
    if stream.tell() != len(data):
        raise IngestionError(
            f"malformed CBOR: {len(data) - stream.tell()} bytes after the document"
        )
    return document


def _verify_signature(data: bytes, fmt: Format, signature: Any, hmac_key: str) -> None:
    if not isinstance(signature, str) or not _HEX64.fullmatch(signature):
        raise IngestionError("'signature' must be 64 hexadecimal characters when alg is HS256")
    sig = signature.encode("ascii")
    if fmt == "json":
        needle = b'"' + sig + b'"'
        replacement = b'"' + _SIGNATURE_ZEROS.encode() + b'"'
    else:
        needle = b"\x78\x40" + sig
        replacement = b"\x78\x40" + _SIGNATURE_ZEROS.encode()
    expected = signature.lower()
    key = hmac_key.encode("utf-8")
    start = data.find(needle)
    if start < 0:
        raise IngestionError(f"'signature' could not be located in the {fmt.upper()} bytes")
    # The same 64 characters could also sit in another field; a wrong pick only fails to verify.
    tries = 0
    while start >= 0 and tries < 8:
        signed_bytes = data[:start] + replacement + data[start + len(needle) :]
        digest = hmac.new(key, signed_bytes, hashlib.sha256).hexdigest()
        if hmac.compare_digest(digest, expected):
            return
        start = data.find(needle, start + 1)
        tries += 1
    raise IngestionError("wrong HMAC signature: it does not match the project's HMAC key")


def _optional_text(payload: dict[Any, Any], field: str) -> str | None:
    value = payload.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise IngestionError(f"'payload.{field}' must be a string")
    if len(value) > 256 or _has_control(value):
        raise IngestionError(f"'payload.{field}' is too long or holds control characters")
    return value


def _interval(value: Any) -> float:
    if value is None:
        raise IngestionError("missing 'payload.interval_ms'")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IngestionError(f"'payload.interval_ms' must be a number, got {type(value).__name__}")
    try:
        interval = float(value)
    except OverflowError:
        interval = math.inf
    if not math.isfinite(interval) or interval <= 0:
        raise IngestionError(f"'payload.interval_ms' must be a finite number > 0, got {value!r}")
    return interval


def _sensors(payload: dict[Any, Any], limits: Limits) -> tuple[Sensor, ...]:
    if "sensors" not in payload:
        raise IngestionError("missing 'payload.sensors'")
    raw = payload["sensors"]
    if not isinstance(raw, list) or not raw:
        raise IngestionError("'payload.sensors' must be a non-empty list")
    if len(raw) > limits.max_axes:
        raise IngestionError(
            f"'payload.sensors' has {len(raw)} axes, over the limit of {limits.max_axes}",
            status=413,
        )
    sensors = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise IngestionError(f"'payload.sensors[{index}]' must be an object with name, units")
        name, units = item.get("name"), item.get("units")
        if not isinstance(name, str) or not name.strip() or len(name) > 128 or _has_control(name):
            raise IngestionError(f"'payload.sensors[{index}].name' must be a non-empty string")
        if not isinstance(units, str) or len(units) > 64 or _has_control(units):
            raise IngestionError(f"'payload.sensors[{index}].units' must be a string")
        sensors.append(Sensor(name, units))
    return tuple(sensors)


def _is_number(value: Any) -> bool:
    kind = type(value)
    return kind is float or kind is int


def _values(raw: Any, n_axes: int, limits: Limits) -> np.ndarray:
    if not isinstance(raw, list):
        raise IngestionError("'payload.values' must be a list")
    if not raw:
        raise IngestionError("'payload.values' is empty")
    if len(raw) * n_axes > limits.max_values:
        raise IngestionError(
            f"'payload.values' holds {len(raw) * n_axes} values, over the limit of "
            f"{limits.max_values}",
            status=413,
        )
    rows: list[Any] = raw
    if n_axes == 1 and all(_is_number(v) for v in raw):
        pass  # the flat one-axis form, as ingestion-sdk-c writes it
    else:
        for index, row in enumerate(raw):
            if n_axes == 1 and _is_number(row):
                continue
            if not isinstance(row, list):
                raise IngestionError(
                    f"'payload.values[{index}]' must be a list of {n_axes} numbers"
                )
            if len(row) != n_axes:
                raise IngestionError(
                    f"'payload.values[{index}]' has {len(row)} values but there are {n_axes} "
                    "sensors"
                )
            for v in row:
                if not _is_number(v):
                    raise IngestionError(
                        f"'payload.values[{index}]' holds a non-numeric value {_show(v)}"
                    )
        if n_axes == 1:
            rows = [row[0] if isinstance(row, list) else row for row in raw]
    try:
        values = np.array(rows, dtype=np.float64).reshape(len(raw), n_axes)
    except OverflowError:
        raise IngestionError("'payload.values' holds an integer too large for a float") from None
    with np.errstate(over="ignore"):
        values32 = values.astype(np.float32)
    bad = ~np.isfinite(values32)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise IngestionError(
            f"'payload.values[{row}]' holds a NaN or infinite value (or one beyond float32 range)"
        )
    return values32


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- CSV ---------------------------------------------------------------------------------------


def _parse_csv(data: bytes, limits: Limits) -> TimeSeries:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestionError(f"CSV is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if "\x00" in text:
        raise IngestionError("CSV holds a NUL character")
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise IngestionError(f"malformed CSV: {exc}") from exc
    if not rows:
        raise IngestionError("CSV is empty")
    header = [cell.strip() for cell in rows[0]]
    if all(_CSV_NUMBER.fullmatch(cell) for cell in header):
        raise IngestionError("CSV has no header row (the first row must name the columns)")
    lowered = [cell.lower() for cell in header]
    if "timestamp" not in lowered:
        if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
            raise IngestionError("CSV must be comma-separated (the header has ';' or tabs)")
        raise IngestionError("CSV has no 'timestamp' column (milliseconds)")
    ts_col = lowered.index("timestamp")
    axis_cols = [i for i in range(len(header)) if i != ts_col]
    if not axis_cols:
        raise IngestionError("CSV has no value columns besides 'timestamp'")
    if len(axis_cols) > limits.max_axes:
        raise IngestionError(
            f"CSV has {len(axis_cols)} value columns, over the limit of {limits.max_axes}",
            status=413,
        )
    for i in axis_cols:
        if not header[i] or _has_control(header[i]) or len(header[i]) > 128:
            raise IngestionError(f"CSV column {i + 1} has an empty or invalid name")
    if len(set(header)) != len(header):
        raise IngestionError("CSV header repeats a column name")
    body = rows[1:]
    if len(body) * len(axis_cols) > limits.max_values:
        raise IngestionError(
            f"CSV holds {len(body) * len(axis_cols)} values, over the limit of {limits.max_values}",
            status=413,
        )
    if len(body) < 2:
        raise IngestionError("CSV needs at least two data rows to know the interval")
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise IngestionError(
                f"CSV row {r + 2} has {len(row)} cells but the header has {len(header)}"
            )
    if not all(map(_CSV_NUMBER.fullmatch, itertools.chain.from_iterable(body))):
        for r, row in enumerate(body):
            for c, cell in enumerate(row):
                if not _CSV_NUMBER.fullmatch(cell):
                    raise IngestionError(
                        f"CSV row {r + 2}, column '{header[c]}' is not a number: {_show(cell)}"
                    )
    table = np.array(body, dtype=np.float64)
    timestamps = table[:, ts_col]
    with np.errstate(over="ignore"):
        values = table[:, axis_cols].astype(np.float32)
    if not np.all(np.isfinite(values)) or not np.all(np.isfinite(timestamps)):
        raise IngestionError("CSV holds an infinite value (or one beyond float32 range)")
    steps = np.diff(timestamps)
    if np.any(steps <= 0):
        row = int(np.argmax(steps <= 0)) + 3
        raise IngestionError(f"CSV timestamps must increase; row {row} does not")
    # The median step is the recorder's rhythm; one late row cannot drag it the way a mean would.
    usual = float(np.median(steps))
    tolerance = max(CSV_INTERVAL_TOLERANCE * usual, CSV_INTERVAL_TOLERANCE_MS)
    off = np.abs(steps - usual) > tolerance
    if off.any():
        row = int(np.argmax(off)) + 3
        raise IngestionError(
            f"CSV timestamps are irregular: row {row} is {steps[row - 3]:g} ms after the previous "
            f"row, the usual interval is {usual:g} ms"
        )
    interval = float((timestamps[-1] - timestamps[0]) / (len(timestamps) - 1))
    sensors = tuple(Sensor(header[i], "") for i in axis_cols)
    return TimeSeries(values=values, interval_ms=interval, sensors=sensors)


# --- WAV ---------------------------------------------------------------------------------------


def _parse_wav(data: bytes, limits: Limits) -> TimeSeries:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise IngestionError("not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int] | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        start = offset + 8
        if chunk_id == b"fmt ":
            fmt = _wav_format(data[start : start + size], size)
        elif chunk_id == b"data":
            if fmt is None:
                raise IngestionError("WAV has its data chunk before the fmt chunk")
            available = len(data) - start
            if size > available:
                raise IngestionError(
                    f"WAV is truncated: data chunk declares {size} bytes, {available} present"
                )
            return _wav_series(data[start : start + size], fmt, limits)
        offset = start + size + (size & 1)
    if fmt is None:
        raise IngestionError("WAV is truncated or has no fmt chunk")
    raise IngestionError("WAV is truncated or has no data chunk")


def _wav_format(chunk: bytes, size: int) -> tuple[int, int, int, int]:
    if size < 16 or len(chunk) < 16:
        raise IngestionError("WAV fmt chunk is truncated")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == 0xFFFE and len(chunk) >= 26:  # WAVE_FORMAT_EXTENSIBLE: subformat GUID's first word
        (tag,) = struct.unpack_from("<H", chunk, 24)
    if tag != 1 or bits != 16:
        raise IngestionError(f"WAV is not 16-bit PCM (format tag {tag}, {bits} bits per sample)")
    if channels < 1 or rate < 1 or block_align != 2 * channels:
        raise IngestionError(
            f"WAV fmt chunk is inconsistent ({channels} channels, {rate} Hz, "
            f"block align {block_align})"
        )
    return tag, channels, rate, block_align


def _wav_series(pcm: bytes, fmt: tuple[int, int, int, int], limits: Limits) -> TimeSeries:
    _, channels, rate, block_align = fmt
    if channels > limits.max_axes:
        raise IngestionError(
            f"WAV has {channels} channels, over the limit of {limits.max_axes}", status=413
        )
    if len(pcm) % block_align:
        raise IngestionError("WAV is truncated: the data chunk ends inside a frame")
    if not pcm:
        raise IngestionError("WAV has no samples")
    if len(pcm) // 2 > limits.max_values:
        raise IngestionError(
            f"WAV holds {len(pcm) // 2} samples, over the limit of {limits.max_values}",
            status=413,
        )
    values = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels).astype(np.float32)
    names = ["audio"] if channels == 1 else [f"audio_{i}" for i in range(channels)]
    sensors = tuple(Sensor(name, AUDIO_UNITS) for name in names)
    return TimeSeries(values=values, interval_ms=1000.0 / rate, sensors=sensors)


# --- Images ------------------------------------------------------------------------------------


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG IHDR or a JPEG SOF marker, without touching PIL."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if not data.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 1 if marker == 0xFF else 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + length
    return None


def _check_pixels(width: int, height: int, label: str, limits: Limits) -> None:
    if width * height > limits.max_pixels:
        raise IngestionError(
            f"{label} image is {width}x{height} = {width * height} pixels, over the limit "
            f"of {limits.max_pixels}",
            status=413,
        )


def _parse_image(data: bytes, declared: Format, limits: Limits) -> tuple[Image, Format]:
    label = "JPEG" if declared == "jpeg" else "PNG"
    size = _header_size(data)
    if size is not None:
        # Decided from the header bytes alone, before PIL allocates or decompresses anything.
        _check_pixels(*size, label, limits)
    try:
        pil = PILImage.open(io.BytesIO(data), formats=["PNG", "JPEG"])
    except PILImage.DecompressionBombError as exc:
        raise IngestionError(f"{label} image is too large: {exc}", status=413) from exc
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        raise IngestionError(f"corrupt {label} image: {exc}") from exc
    with pil:
        actual: Format = "jpeg" if pil.format == "JPEG" else "png"
        label = "JPEG" if actual == "jpeg" else "PNG"
        width, height = pil.size
        _check_pixels(width, height, label, limits)  # PIL has read the header, not the pixels
        if width < 1 or height < 1:
            raise IngestionError(f"corrupt {label} image: size {width}x{height}")
        try:
            if actual == "png":
                # verify() checks every chunk's CRC; load() alone would accept flipped bits.
                pil.verify()
                pil = PILImage.open(io.BytesIO(data), formats=["PNG"])
            pil.load()
            pixels = _to_pixels(pil)
        except PILImage.DecompressionBombError as exc:
            raise IngestionError(f"{label} image is too large: {exc}", status=413) from exc
        except (OSError, SyntaxError, ValueError, struct.error, EOFError, SampleError) as exc:
            raise IngestionError(f"corrupt {label} image: {exc}") from exc
    return Image(pixels=pixels), actual


def _to_pixels(pil: PILImage.Image) -> np.ndarray:
    try:
        pil = ImageOps.exif_transpose(pil) or pil
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        pass  # an unreadable EXIF orientation is not worth rejecting the photo for
    if pil.mode in ("1", "L", "LA"):
        return np.asarray(pil.convert("L"))[:, :, np.newaxis]
    if pil.mode.startswith("I") or pil.mode == "F":
        wide = np.asarray(pil, dtype=np.float64)
        # 16-bit grayscale PNGs: keep the top 8 bits.
        scale = 257.0 if wide.max(initial=0) > 255 else 1.0
        return np.clip(np.rint(wide / scale), 0, 255).astype(np.uint8)[:, :, np.newaxis]
    return np.asarray(pil.convert("RGB"))


# --- Names, labels, metadata, split ------------------------------------------------------------


# Bidirectional overrides make a name display as something else ("gpj.exe" shown as "exe.jpg").
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS for ch in text)


def safe_file_name(name: str) -> str:
    """The upload's file name, safe to show and store: its last path component, stripped.

    Rejects (IngestionError naming it) empty names, names over 255 characters, NUL and control
    characters, absolute paths (``/x``, ``\\x``, ``C:\\x``) and any ``..`` component. A relative
    path such as ``walk/idle.01.json`` (folder uploads) gives ``idle.01.json``.
    """
    if not isinstance(name, str):
        raise IngestionError("file name must be a string")
    shown = _show(name)
    if "\x00" in name or _has_control(name):
        raise IngestionError(f"file name {shown} holds NUL or control characters")
    if len(name) > MAX_FILE_NAME_CHARS:
        raise IngestionError(f"file name is {len(name)} characters, over {MAX_FILE_NAME_CHARS}")
    stripped = name.strip()
    if not stripped:
        raise IngestionError("file name is empty")
    if stripped.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", stripped):
        raise IngestionError(f"file name {shown} is an absolute path")
    parts = re.split(r"[\\/]", stripped)
    if any(part == ".." for part in parts):
        raise IngestionError(f"file name {shown} contains '..'")
    base = parts[-1].strip()
    if base in ("", "."):
        raise IngestionError(f"file name {shown} has no file part")
    return unicodedata.normalize("NFC", base)


def label_from_file_name(name: str) -> str:
    """Edge Impulse's rule: the label is the text before the first dot (``idle.01.json`` ->
    ``idle``)."""
    base = safe_file_name(name)
    return validate_label(base.split(".", 1)[0])


def validate_label(label: str) -> str:
    """The label with surrounding spaces removed; rejects empty, control characters, > 128."""
    if not isinstance(label, str):
        raise IngestionError("label must be a string")
    if _has_control(label):
        raise IngestionError(f"label {_show(label)} holds control characters")
    stripped = label.strip()
    if not stripped:
        raise IngestionError("label is empty")
    if len(stripped) > MAX_LABEL_CHARS:
        raise IngestionError(f"label is {len(stripped)} characters, over {MAX_LABEL_CHARS}")
    return stripped


def parse_metadata_header(value: str | None) -> dict[str, str]:
    """The ``x-metadata`` header: a JSON object of strings (empty or absent -> ``{}``).

    At most 64 entries, keys up to 128 and values up to 1024 characters, no control characters.
    """
    if value is None or not value.strip():
        return {}
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise IngestionError(f"x-metadata is not valid JSON: {str(exc)[:120]}") from exc
    if not isinstance(parsed, dict):
        raise IngestionError("x-metadata must be a JSON object of strings")
    if len(parsed) > MAX_METADATA_ENTRIES:
        raise IngestionError(f"x-metadata has {len(parsed)} entries, over {MAX_METADATA_ENTRIES}")
    for key, item in parsed.items():
        if not isinstance(item, str):
            raise IngestionError(f"x-metadata value for {_show(key)} must be a string")
        if not key or len(key) > MAX_METADATA_KEY_CHARS or _has_control(key):
            raise IngestionError(f"x-metadata key {_show(key)} is empty, too long or invalid")
        if len(item) > MAX_METADATA_VALUE_CHARS or _has_control(item):
            raise IngestionError(f"x-metadata value for {_show(key)} is too long or invalid")
    return dict(parsed)


def split_category(sha256_hex: str) -> Literal["training", "testing"]:
    """A stable 80/20 train/test split decided by the sample's content hash."""
    if not isinstance(sha256_hex, str) or not re.fullmatch(r"[0-9a-fA-F]{8,}", sha256_hex):
        raise IngestionError("split needs a hexadecimal content hash")
    return "training" if int(sha256_hex[:8], 16) % 100 < 80 else "testing"
