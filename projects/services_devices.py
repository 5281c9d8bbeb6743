"""Devices: the hello handshake, continuous stream storage, recordings that become samples, remote
sampling requests, rename and forget. Called by the device consumer, the API and the pages."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from workers.ml.samples import Sensor, TimeSeries

from .models import Category, Device, Project, StreamChunk
from .services import Actor, ApiKeyError, ServiceError, activity_log, api_key_authenticate, project_hmac_key

log = logging.getLogger(__name__)

PROTOCOL_VERSIONS = (3, 4)
MAX_AXES = 64
MAX_ROWS_PER_FRAME = 10_000
SAMPLING_STEPS = ("sample", "sampleStarted", "sampleProcessing", "sampleReading", "sampleUploading",
                  "sampleFinished")


class DeviceProtocolError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class DeviceAuthError(DeviceProtocolError):
    pass


@dataclass(frozen=True)
class HelloInfo:
    version: int
    api_key: str
    device_id: str
    device_type: str
    connection: str
    sensors: list


def _text(hello: dict, key: str, *, required: bool = True, limit: int = 128) -> str:
    value = hello.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise DeviceProtocolError(f"hello.{key} must be a non-empty string")
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise DeviceProtocolError(f"hello.{key} must be at most {limit} printable characters")
    return value.strip()


def parse_hello(hello: dict) -> HelloInfo:
    version = hello.get("version")
    if version not in PROTOCOL_VERSIONS or isinstance(version, bool):
        raise DeviceProtocolError(f"unknown protocol version {version!r}; this server speaks "
                                  f"{' and '.join(map(str, PROTOCOL_VERSIONS))}")
    sensors = hello.get("sensors", [])
    if not isinstance(sensors, list):
        raise DeviceProtocolError("hello.sensors must be a list")
    clean = []
    for i, sensor in enumerate(sensors[:32]):
        if not isinstance(sensor, dict) or not isinstance(sensor.get("name"), str):
            raise DeviceProtocolError(f"hello.sensors[{i}] needs a name")
        frequencies = sensor.get("frequencies", [])
        if not isinstance(frequencies, list) or not all(
                isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in frequencies):
            raise DeviceProtocolError(f"hello.sensors[{i}].frequencies must be a list of positive numbers")
        max_len = sensor.get("maxSampleLengthS", 0)
        if not isinstance(max_len, (int, float)) or isinstance(max_len, bool) or max_len < 0:
            raise DeviceProtocolError(f"hello.sensors[{i}].maxSampleLengthS must be a non-negative number")
        clean.append({"name": sensor["name"][:64], "maxSampleLengthS": max_len, "frequencies": frequencies})
    return HelloInfo(version=version, api_key=_text(hello, "apiKey", required=False, limit=200),
                     device_id=_text(hello, "deviceId"), device_type=_text(hello, "deviceType"),
                     connection=_text(hello, "connection", required=False, limit=32), sensors=clean)


def _stored_seq(device_pk: int) -> int | None:
    return StreamChunk.objects.filter(device_id=device_pk).aggregate(m=Max("seq"))["m"]


def _device_info(device: Device) -> dict:
    stream = None
    if device.stream_interval_ms and device.stream_sensors:
        stream = {"interval_ms": device.stream_interval_ms, "sensors": device.stream_sensors}
    return {"pk": device.pk, "project_id": device.project_id, "device_id": device.device_id, "stream": stream,
            "stored_seq": _stored_seq(device.pk)}


def device_hello(*, api_key: str, hello: HelloInfo, session_id: str) -> dict:
    try:
        key = api_key_authenticate(api_key)
    except ApiKeyError as exc:
        raise DeviceAuthError(exc.message) from exc
    now = timezone.now()
    with transaction.atomic():
        device, created = Device.objects.select_for_update().get_or_create(
            project_id=key.project_id, device_id=hello.device_id,
            defaults={"name": hello.device_id, "device_type": hello.device_type})
        device.device_type = hello.device_type
        device.sensors = hello.sensors
        device.connection = hello.connection
        device.last_seen = now
        device.online = True
        device.session_id = session_id
        device.save()
        if created:
            activity_log(project=key.project, actor=Actor(api_key=key), verb="device.added",
                         device=hello.device_id, type=hello.device_type)
    return _device_info(device)


def device_offline(*, device_pk: int, session_id: str) -> None:
    # Only the session that is still the device's current one marks it offline (the newest wins).
    Device.objects.filter(pk=device_pk, session_id=session_id).update(online=False, last_seen=timezone.now())


def parse_stream_start(body) -> dict:
    if not isinstance(body, dict):
        raise DeviceProtocolError("streamStart must be an object with interval_ms and sensors")
    interval = body.get("interval_ms")
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not (0 < interval <= 3_600_000):
        raise DeviceProtocolError(f"streamStart.interval_ms must be a positive number, got {interval!r}"[:120])
    sensors = body.get("sensors")
    if not isinstance(sensors, list) or not (1 <= len(sensors) <= MAX_AXES):
        raise DeviceProtocolError(f"streamStart.sensors must list 1 to {MAX_AXES} axes")
    clean = []
    for i, s in enumerate(sensors):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"].strip():
            raise DeviceProtocolError(f"streamStart.sensors[{i}] needs a name")
        clean.append({"name": s["name"][:64], "units": str(s.get("units", ""))[:32]})
    return {"interval_ms": float(interval), "sensors": clean}


def device_stream_configure(*, device_pk: int, stream: dict) -> int | None:
    with transaction.atomic():
        device = Device.objects.select_for_update().get(pk=device_pk)
        changed = (device.stream_sensors != stream["sensors"] or device.stream_interval_ms != stream["interval_ms"])
        if changed and device.recording:
            raise DeviceProtocolError("cannot change the stream's axes or interval during a recording")
        device.stream_interval_ms = stream["interval_ms"]
        device.stream_sensors = stream["sensors"]
        device.save(update_fields=["stream_interval_ms", "stream_sensors"])
    return _stored_seq(device_pk)


_NUMBER_TYPES = {int, float}  # exact types: bool (an int subclass) and numeric strings are refused


def pack_values(values, axes: int) -> tuple[bytes, int]:
    """Validate a frame's rows and pack them as float32 bytes."""
    if not isinstance(values, list) or not values:
        raise DeviceProtocolError("stream.values must be a non-empty list of rows")
    if len(values) > MAX_ROWS_PER_FRAME:
        raise DeviceProtocolError(f"stream.values has {len(values)} rows; at most {MAX_ROWS_PER_FRAME}")
    # The common case checked in bulk (this runs for every frame of every device); the loop below
    # only runs to name the first bad row.
    if not all(type(row) is list and len(row) == axes for row in values) or \
            not {type(v) for row in values for v in row} <= _NUMBER_TYPES:
        for i, row in enumerate(values):
            if not isinstance(row, list) or len(row) != axes:
                got = len(row) if isinstance(row, list) else type(row).__name__
                raise DeviceProtocolError(f"stream.values[{i}] has {got} values; the stream has {axes} axes")
            for v in row:
                if type(v) not in _NUMBER_TYPES:
                    raise DeviceProtocolError(f"stream.values[{i}] holds a non-number: {v!r}"[:120])
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        raise DeviceProtocolError(f"stream.values[{bad}] holds NaN or an infinite value")
    return array.astype(np.float32).tobytes(), len(values)


def stream_store(*, device_pk: int, chunks: list[tuple[int, int, bytes]]) -> None:
    with transaction.atomic():
        StreamChunk.objects.bulk_create(
            [StreamChunk(device_id=device_pk, seq=seq, axes=axes, values=data) for seq, axes, data in chunks],
            ignore_conflicts=True)
        Device.objects.filter(pk=device_pk).update(last_seen=timezone.now())


def stream_store_many(*, items: list[tuple[int, list[tuple[int, int, bytes]]]]) -> None:
    """Frames of many devices in one transaction (the stream writer's group commit)."""
    with transaction.atomic():
        StreamChunk.objects.bulk_create(
            [StreamChunk(device_id=pk, seq=seq, axes=axes, values=data)
             for pk, chunks in items for seq, axes, data in chunks],
            ignore_conflicts=True, batch_size=500)
        Device.objects.filter(pk__in={pk for pk, _ in items}).update(last_seen=timezone.now())


def stream_values(device_pk: int, from_seq: int, to_seq: int | None = None) -> tuple[np.ndarray, list[int]]:
    """The stored values of seq >= from_seq (<= to_seq), in order, and the seqs they came from."""
    qs = StreamChunk.objects.filter(device_id=device_pk, seq__gte=from_seq).order_by("seq")
    if to_seq is not None:
        qs = qs.filter(seq__lte=to_seq)
    rows, seqs = [], []
    for chunk in qs.iterator():
        rows.append(np.frombuffer(bytes(chunk.values), dtype=np.float32).reshape(-1, chunk.axes))
        seqs.append(chunk.seq)
    if not rows:
        return np.zeros((0, 0), dtype=np.float32), []
    return np.concatenate(rows), seqs


def downsample(batch: list[tuple[int, int, bytes]], points: int) -> list[list[float]]:
    rows = np.concatenate([np.frombuffer(data, dtype=np.float32).reshape(-1, axes) for _, axes, data in batch])
    step = max(1, int(np.ceil(len(rows) / points)))
    return np.round(rows[::step].astype(np.float64), 5).tolist()


def device_group(device_pk: int) -> str:
    return f"device-{device_pk}"


def live_group(device_pk: int) -> str:
    return f"device-live-{device_pk}"


def classify_group(device_pk: int) -> str:
    """Where every stored row goes while a live classifier watches (projects/live_classification.py)."""
    return f"device-classify-{device_pk}"


async def project_event(project_id: int, event: dict) -> None:
    layer = get_channel_layer()
    try:
        await layer.group_send(f"project-{project_id}", {"type": "project.event", "event": event})
    except Exception as exc:  # browsers miss one event; the device session goes on
        log.warning("project %s: could not tell the browsers %s (%s)", project_id, event.get("type"), exc)


def sampling_event(message: dict) -> tuple[str, dict]:
    if "sample" in message:
        if message["sample"] is False or "error" in message:
            return "failed", {"step": "failed", "error": str(message.get("error", "the device refused"))[:300]}
        return "accepted", {"step": "accepted"}
    if "sampleReading" in message:
        return "reading", {"step": "reading", "progress": message.get("progressPercentage")}
    for key, step in (("sampleStarted", "started"), ("sampleProcessing", "processing"),
                      ("sampleUploading", "uploading"), ("sampleFinished", "finished")):
        if key in message:
            return step, {"step": step}
    return "unknown", {"step": "unknown"}


def _send_to_device(device: Device, command: dict) -> None:
    async_to_sync(get_channel_layer().group_send)(device_group(device.pk),
                                                  {"type": "device.command", "command": command})


def _category(category: str | None) -> str:
    category = category or Category.TRAINING
    if category not in Category.values:
        raise ServiceError(f"unknown category '{category}'; choose one of {', '.join(Category.values)}",
                           field="category")
    return category


def _label(label) -> str:
    from .ingestion import IngestionError, validate_label

    try:
        return validate_label(label or "")
    except IngestionError as exc:
        raise ServiceError(exc.message if hasattr(exc, "message") else str(exc), field="label") from exc


def sample_request(*, device: Device, actor: Actor, label: str, length_ms: int, interval_ms: float,
                   sensor: str, category: str = "training") -> dict:
    """Ask a connected device to record a sample and upload it through the ingestion API."""
    if not device.online:
        raise ServiceError(f"device '{device.device_id}' is offline", status=409)
    label, category = _label(label), _category(category)
    names = [s["name"] for s in device.sensors]
    if names and sensor not in names:
        raise ServiceError(f"device has no sensor '{sensor}'; it has {', '.join(names)}", field="sensor")
    if not isinstance(length_ms, int) or length_ms <= 0:
        raise ServiceError("length must be a positive number of milliseconds", field="length_ms")
    limit = next((s.get("maxSampleLengthS") for s in device.sensors if s["name"] == sensor), None)
    if limit and length_ms > limit * 1000:
        raise ServiceError(f"length {length_ms} ms is over the sensor's maximum of {limit} s", field="length_ms")
    if not isinstance(interval_ms, (int, float)) or interval_ms <= 0:
        raise ServiceError("interval must be a positive number of milliseconds", field="interval_ms")
    command = {"sample": {"label": label, "length": length_ms, "path": f"/api/{category}/data",
                          "hmacKey": project_hmac_key(device.project), "interval": interval_ms, "sensor": sensor}}
    _send_to_device(device, command)
    activity_log(project=device.project, actor=actor, verb="device.sample_requested", device=device.device_id,
                 label=label, length_ms=length_ms)
    return {"device": device.device_id, "label": label, "length_ms": length_ms, "sensor": sensor}


def recording_mark(*, device_pk: int, action: str, label=None, category=None, actor: Actor | None = None) -> dict:
    if action == "start":
        return _recording_start(device_pk=device_pk, label=label, category=category, actor=actor)
    return _recording_stop(device_pk=device_pk, actor=actor)


def _recording_start(*, device_pk, label, category, actor) -> dict:
    try:
        label, category = _label(label), _category(category)
    except ServiceError as exc:
        raise DeviceProtocolError(exc.message) from exc
    with transaction.atomic():
        device = Device.objects.select_for_update().get(pk=device_pk)
        if not device.stream_sensors:
            raise DeviceProtocolError("the device has not started a stream (streamStart)")
        if device.recording:
            raise DeviceProtocolError("a recording is already running; stop it first")
        stored = _stored_seq(device_pk)
        device.recording = True
        device.recording_label = label
        device.recording_category = category
        device.recording_from_seq = 0 if stored is None else stored + 1
        device.save(update_fields=["recording", "recording_label", "recording_category", "recording_from_seq"])
    return {"recording": True, "fromSeq": device.recording_from_seq}


def _recording_stop(*, device_pk, actor) -> dict:
    from .ingestion import ParsedSample
    from .services_samples import sample_create

    with transaction.atomic():
        device = Device.objects.select_for_update().select_related("project").get(pk=device_pk)
        if not device.recording:
            raise DeviceProtocolError("no recording is running")
        values, seqs = stream_values(device_pk, device.recording_from_seq)
        device.recording = False
        device.save(update_fields=["recording"])
        if not len(values):
            return {"recording": False, "sampleId": None, "values": 0, "note": "nothing was recorded"}
        sensors = tuple(Sensor(s["name"], s.get("units", "")) for s in device.stream_sensors)
        payload = TimeSeries(values=values, interval_ms=device.stream_interval_ms, sensors=sensors)
        parsed = ParsedSample(payload=payload, kind="time-series", device_name=device.device_id,
                              device_type=device.device_type, sensors=sensors, raw_extension="json", signed=False)
        raw = json.dumps({"protected": {"ver": "v1", "alg": "none", "iat": int(timezone.now().timestamp())},
                          "signature": "0" * 64,
                          "payload": {"device_name": device.device_id, "device_type": device.device_type,
                                      "interval_ms": device.stream_interval_ms,
                                      "sensors": [{"name": s.name, "units": s.units} for s in sensors],
                                      "values": values.tolist()}}).encode()
        sample = sample_create(project=device.project, category=device.recording_category,
                               label=device.recording_label, file_name=None, parsed=parsed, raw_bytes=raw,
                               device=device, upload_source="stream", actor=actor or Actor(),
                               metadata={"from_seq": str(seqs[0]), "to_seq": str(seqs[-1])})
    return {"recording": False, "sampleId": sample.id, "values": int(len(values)),
            "fromSeq": seqs[0], "toSeq": seqs[-1]}


def device_rename(*, device: Device, actor: Actor, name: str) -> Device:
    name = (name or "").strip()
    if not name or len(name) > 128 or any(ord(c) < 32 for c in name):
        raise ServiceError("device name must be 1 to 128 printable characters", field="name")
    old, device.name = device.name, name
    device.save(update_fields=["name"])
    activity_log(project=device.project, actor=actor, verb="device.renamed", device=device.device_id,
                 old=old, new=name)
    return device


def device_forget(*, device: Device, actor: Actor) -> None:
    """Remove a device and its stream buffer; its samples stay (they keep the device's name)."""
    project, device_id = device.project, device.device_id
    with transaction.atomic():
        device.delete()
        activity_log(project=project, actor=actor, verb="device.forgotten", device=device_id)


def devices_for(project: Project):
    return Device.objects.filter(project=project).order_by("device_id")
