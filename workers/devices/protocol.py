"""Frames of the device protocol (docs/device-protocol.md): encoding, the hello, and the signed
Edge Impulse data acquisition document that remote sampling uploads."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cbor2

ZEROS = "0" * 64


class DeviceClientError(Exception):
    """A problem the client cannot recover from by reconnecting (e.g. the server refused the hello)."""


def encode(message: dict, binary: bool) -> str | bytes:
    return cbor2.dumps(message) if binary else json.dumps(message, separators=(",", ":"))


def decode(frame: str | bytes) -> dict:
    message = cbor2.loads(frame) if isinstance(frame, bytes) else json.loads(frame)
    if not isinstance(message, dict):
        raise DeviceClientError(f"the server sent a non-object frame: {message!r}"[:200])
    return message


def ws_url(base: str) -> str:
    """http(s)://host[:port] (or ws(s)://…) -> ws(s)://host[:port]/ws/device."""
    parts = urlsplit(base if "://" in base else f"http://{base}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith("/ws/device"):
        path += "/ws/device"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def http_url(base: str) -> str:
    """The HTTP origin of a server URL given as http(s):// or ws(s)://."""
    parts = urlsplit(base if "://" in base else f"http://{base}")
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


@dataclass(frozen=True)
class SensorInfo:
    """A sensor as the hello declares it (what remote sampling can ask for)."""

    name: str
    frequencies: tuple[float, ...]
    max_sample_length_s: float = 60


@dataclass
class Identity:
    api_key: str
    device_id: str
    device_type: str
    sensors: list[SensorInfo] = field(default_factory=list)
    connection: str = "ip"
    version: int = 3

    def hello(self) -> dict:
        return {"hello": {"version": self.version, "apiKey": self.api_key, "deviceId": self.device_id,
                          "deviceType": self.device_type, "connection": self.connection,
                          "sensors": [{"name": s.name, "maxSampleLengthS": s.max_sample_length_s,
                                       "frequencies": list(s.frequencies)} for s in self.sensors]}}


def signed_document(*, values: list[list[float]], axes: list[str], interval_ms: float, hmac_key: str | None,
                    device_name: str, device_type: str, units: str = "m/s2") -> bytes:
    """The data acquisition format as the reference clients sign it: HMAC-SHA256 (hex) over the JSON
    holding 64 zeros as the signature, then the zeros replaced by the digest."""
    document: dict[str, Any] = {
        "protected": {"ver": "v1", "alg": "HS256" if hmac_key else "none", "iat": int(time.time())},
        "signature": ZEROS,
        "payload": {"device_name": device_name, "device_type": device_type, "interval_ms": interval_ms,
                    "sensors": [{"name": a, "units": units} for a in axes], "values": values},
    }
    encoded = json.dumps(document, separators=(",", ":")).encode()
    if not hmac_key:
        return encoded
    digest = hmac.new(hmac_key.encode(), encoded, hashlib.sha256).hexdigest()
    return encoded.replace(ZEROS.encode(), digest.encode(), 1)


def upload(*, server: str, path: str, api_key: str, label: str, body: bytes, file_name: str,
           timeout: float = 30) -> str:
    """POST a sample to the ingestion API (blocking); returns the stored file name."""
    request = urllib.request.Request(
        http_url(server) + path, data=body, method="POST",
        headers={"x-api-key": api_key, "x-label": label, "x-file-name": file_name,
                 "content-type": "application/json", "x-upload-source": "studio-device"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        raise DeviceClientError(f"upload refused ({exc.code}): {exc.read().decode(errors='replace')[:300]}") from exc
