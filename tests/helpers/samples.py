"""Builders of valid upload bytes (EI JSON/CBOR signed the reference way, CSV, WAV, PNG, JPEG)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import struct
from collections.abc import Sequence
from typing import Any

import cbor2
import numpy as np
from PIL import Image as PILImage

ZEROS = "0" * 64
HMAC_KEY = "fed53116f20684c067774ebf9e7bcbdc"
ACC_SENSORS: tuple[tuple[str, str], ...] = (("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2"))


def accelerometer_values(n: int = 50, seed: int = 0) -> np.ndarray:
    """[n, 3] float32 values with 2 decimals (so they survive every text format exactly)."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, 5, size=(n, 3)), 2).astype(np.float32)


def ei_document(
    values: Any,
    *,
    sensors: Sequence[tuple[str, str]] = ACC_SENSORS,
    interval_ms: float = 10,
    device_name: str | None = "ac:87:a3:0a:2d:1b",
    device_type: str = "DISCO-L475VG-IOT01A",
    alg: str = "none",
    iat: int | None = 1700000000,
) -> dict[str, Any]:
    """An EI data acquisition document with the signature set to 64 zeros (not yet signed)."""
    if isinstance(values, np.ndarray):
        values = [[float(str(v)) for v in row] for row in values]
    protected: dict[str, Any] = {"ver": "v1", "alg": alg}
    if iat is not None:
        protected["iat"] = iat
    payload: dict[str, Any] = {}
    if device_name is not None:
        payload["device_name"] = device_name
    payload["device_type"] = device_type
    payload["interval_ms"] = interval_ms
    payload["sensors"] = [{"name": n, "units": u} for n, u in sensors]
    payload["values"] = values
    return {"protected": protected, "signature": ZEROS, "payload": payload}


def sign_serialized(encoded: bytes, hmac_key: str, placeholder: bytes) -> bytes:
    """What every reference client does: HMAC-SHA256 (hex) of the bytes holding 64 zeros as the
    signature, then the first occurrence of those zeros overwritten by the digest."""
    digest = hmac.new(hmac_key.encode(), encoded, hashlib.sha256).hexdigest().encode()
    index = encoded.find(placeholder)
    assert index >= 0, "the 64-zero signature is not in the encoded document"
    offset = index + placeholder.index(ZEROS.encode())
    return encoded[:offset] + digest + encoded[offset + 64 :]


def ei_json_bytes(
    document: dict[str, Any], hmac_key: str | None = None, *, style: str = "js"
) -> bytes:
    """The document as JSON, signed when a key is given.

    style "js": JSON.stringify (no spaces), as the edge-impulse-cli data forwarder sends it;
    style "python": json.dumps defaults (", " and ": "), as EI's Python example sends it.
    """
    if hmac_key is not None:
        document = {**document, "protected": {**document["protected"], "alg": "HS256"}}
    separators = (",", ":") if style == "js" else (", ", ": ")
    encoded = json.dumps(document, separators=separators).encode()
    if hmac_key is None:
        return encoded
    return sign_serialized(encoded, hmac_key, b'"' + ZEROS.encode() + b'"')


def ei_cbor_bytes(document: dict[str, Any], hmac_key: str | None = None) -> bytes:
    """The document as CBOR laid out like ingestion-sdk-c writes it, signed when a key is given.

    Definite maps, ``values`` last as an indefinite-length array (0x9f ... 0xff) of rows (a bare
    number per row for one axis), numbers in their shortest lossless float width (QCBOR's
    preferred serialization); the HMAC covers those bytes with 64 zeros as the signature.
    """
    if hmac_key is not None:
        document = {**document, "protected": {**document["protected"], "alg": "HS256"}}
    payload = dict(document["payload"])
    rows = payload.pop("values")
    payload["values"] = []
    head = cbor2.dumps({**document, "payload": payload})
    assert head.endswith(b"\x80"), "values must be the last field"
    n_axes = len(payload["sensors"])
    body = bytearray(head[:-1] + b"\x9f")
    for row in rows:
        item = row[0] if (n_axes == 1 and isinstance(row, list)) else row
        body += cbor2.dumps(_floats(item), canonical=True)
    body += b"\xff"
    encoded = bytes(body)
    if hmac_key is None:
        return encoded
    return sign_serialized(encoded, hmac_key, b"\x78\x40" + ZEROS.encode())


def _floats(item: Any) -> Any:
    if isinstance(item, list):
        return [float(v) for v in item]
    return float(item)


def csv_bytes(
    values: np.ndarray,
    *,
    interval_ms: float = 10,
    names: Sequence[str] = ("accX", "accY", "accZ"),
    t0: float = 0,
) -> bytes:
    """A CSV with a ``timestamp`` column in ms and one column per axis."""
    lines = [",".join(["timestamp", *names])]
    for i, row in enumerate(np.asarray(values).reshape(len(values), -1)):
        stamp = t0 + i * interval_ms
        lines.append(",".join([f"{stamp:g}", *(str(v) for v in row)]))
    return ("\n".join(lines) + "\n").encode()


def wav_bytes(pcm: np.ndarray, rate: int = 16000, *, bits: int = 16, tag: int = 1) -> bytes:
    """A RIFF WAV holding ``pcm`` (int16 [n] or [n, channels])."""
    pcm = np.asarray(pcm)
    frames = pcm.reshape(len(pcm), -1)
    channels = frames.shape[1]
    data = frames.astype("<i2").tobytes() if bits == 16 else frames.astype("<u1").tobytes()
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tone(n: int = 1600, rate: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(n) / rate
    mono = (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return mono if channels == 1 else np.stack([mono // (c + 1) for c in range(channels)], axis=1)


def image_pixels(height: int = 24, width: int = 32, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="JPEG", quality=quality)
    return out.getvalue()
