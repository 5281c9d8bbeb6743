"""Live classification: a trained model classifies every window of a device's stream as its rows arrive.

A browser opens ``/ws/projects/<id>/live-classification/<device_pk>?model=<model_id>&threshold=0.6``
(session cookie; any member may watch). ``model`` defaults to the project's newest model, ``threshold``
(0..1, the score under which a window is "uncertain") to 0.6, and ``variant`` (float32, int8, pruned,
pruned-int8: a file of the model's optimization table, run in LiteRT) to the Keras model as trained. While the socket is open it reminds the
device's session every few seconds (``device.watch`` with ``full``), so the device consumer sends the
exact stored rows of each acknowledged batch to the group ``device-classify-<pk>``; this consumer cuts
them into the impulse's windows (resampled when the stream's rate is not the impulse's frequency,
workers/ml/stream_windows.py) and runs the impulse's processing blocks, classifier and anomaly block in
a worker thread, so TensorFlow never blocks the event loop.

Server → browser (JSON text frames)::

    {"type": "status", "state": "loading", "message": "loading model 7"}
    {"type": "ready", "model": {"id": 7, "labels": ["idle", "wave"], "impulse_version": 2,
     "window_size_ms": 1000, "window_increase_ms": 500, "frequency_hz": 50.0, "axes": ["accX", "accY", "accZ"],
     "variant": "int8", "anomaly_threshold": 0.31}, "device": {"pk": 3, "name": "sim-0000", "device_id": "sim-0000",
     "online": true, "interval_ms": 10.0, "axes": ["accX", "accY", "accZ"]}, "threshold": 0.6}
    {"type": "status", "state": "offline", "message": "device sim-0000 is offline; …"}
    {"type": "status", "state": "waiting", "message": "device sim-0000 is online but not streaming; …"}
    {"type": "status", "state": "streaming", "message": "…"}
    {"type": "status", "state": "mismatch", "message": "the device streams accX, accY; the impulse needs accZ"}
    {"type": "status", "state": "gap", "message": "…"}       rows were missed: the window grid starts again
    {"type": "status", "state": "behind", "skipped": 4, "message": "…"}  old windows dropped to keep up
    {"type": "classification", "t_ms": 1500.0, "seq": 1207, "scores": {"idle": 0.03, "wave": 0.97},
     "label": "wave", "uncertain": false, "anomaly": 0.12, "latency_ms": 14.2}
    {"type": "threshold", "value": 0.8}

``t_ms`` is the window's start in stream time since the socket opened (gaps excluded); ``label`` is the
best label even when ``uncertain`` (best score < threshold); ``anomaly`` is null without an anomaly block;
a regression model sends ``"value"`` instead of scores. Browser → server: ``{"threshold": 0.8}``.
Close codes: 4401 not signed in, 4404 no such project / device / model in this project (or not a member),
4400 a bad ``model``, ``threshold`` or ``variant`` query value, 4422 a model that cannot classify a stream
(an image impulse, its impulse deleted, no such variant yet); an ``{"type": "error", "message": …}`` frame comes before the close.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import parse_qs

import numpy as np
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .consumer_resilience import ResilientChannelReceive

log = logging.getLogger(__name__)

CLOSE_BAD_QUERY = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_UNUSABLE_MODEL = 4422

DEFAULT_THRESHOLD = 0.6
VARIANTS = ("float32", "int8", "pruned", "pruned-int8")  # the optimization table's files (services_deploy)
WATCH_EVERY_S = 4.0
QUIET_AFTER_S = 6.0  # an online device that sent no rows for this long is told to be "waiting"
MAX_BATCH = 16  # windows classified in one call
MAX_PENDING = 32  # windows waiting beyond this (the classifier fell behind) drop the oldest

# TensorFlow calls run here, off the event loop and off the thread database_sync_to_async uses, so a
# model that loads for seconds delays no device's acknowledgements.
_EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="live-classify")


class LiveRefused(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class LiveSetup:
    project_id: int
    model_id: int
    model_labels: list[str]
    learn_block: str
    keras_path: str
    variant: str  # "" for the Keras model as trained
    variant_path: str
    variant_sha256: str
    anomaly: dict | None
    impulse_spec: dict
    impulse_version: int
    device: dict


def parse_query(query_string: bytes) -> tuple[int | None, float, str]:
    """The socket's ?model=&threshold=&variant=; raises LiveRefused(4400) naming the bad value."""
    query = parse_qs(query_string.decode("latin-1"))
    model_id = None
    raw = query.get("model", [""])[-1]
    if raw:
        if not raw.isdigit() or len(raw) > 18:
            raise LiveRefused(CLOSE_BAD_QUERY, f"model must be a model id, got {raw[:40]!r}")
        model_id = int(raw)
    threshold = DEFAULT_THRESHOLD
    raw = query.get("threshold", [""])[-1]
    if raw:
        threshold = _threshold(raw)
    variant = query.get("variant", [""])[-1]
    if variant and variant not in VARIANTS:
        raise LiveRefused(CLOSE_BAD_QUERY, f"variant must be one of {', '.join(VARIANTS)}, got {variant[:40]!r}")
    return model_id, threshold, variant


def _threshold(raw) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(raw, bool) or not 0.0 <= value <= 1.0:
        raise LiveRefused(CLOSE_BAD_QUERY, f"threshold must be a number in 0..1, got {str(raw)[:40]!r}")
    return value


def device_stream_info(device) -> dict:
    return {"pk": device.pk, "name": device.name or device.device_id, "device_id": device.device_id,
            "online": device.online, "interval_ms": device.stream_interval_ms,
            "axes": [s["name"] for s in device.stream_sensors or []]}


def live_setup(*, user, project_id: int, device_pk: int, model_id: int | None, variant: str = "") -> LiveSetup:
    """Check membership, the device and the model; raises LiveRefused with the close code."""
    from .models import Device, Membership, TrainedModel

    if not Membership.objects.filter(project_id=project_id, user=user).exists():
        raise LiveRefused(CLOSE_NOT_FOUND, "no such project")
    device = Device.objects.filter(pk=device_pk, project_id=project_id).first()
    if device is None:
        raise LiveRefused(CLOSE_NOT_FOUND, f"no device {device_pk} in this project")
    models = TrainedModel.objects.filter(project_id=project_id).select_related("impulse")
    model = models.filter(pk=model_id).first() if model_id is not None else models.first()
    if model is None:
        raise LiveRefused(CLOSE_NOT_FOUND, f"no trained model {model_id} in this project" if model_id is not None
                          else "this project has no trained model yet; train one first")
    if model.impulse is None:
        raise LiveRefused(CLOSE_UNUSABLE_MODEL, f"model {model.id}'s impulse was deleted")
    if model.impulse.spec.get("input", {}).get("type") == "image":
        raise LiveRefused(CLOSE_UNUSABLE_MODEL, f"model {model.id} classifies images, not a sensor stream")
    if not model.keras_path and not model.anomaly:
        raise LiveRefused(CLOSE_UNUSABLE_MODEL, f"model {model.id} has no trained network or anomaly block")
    row: dict = {}
    if variant:
        row = ((model.variants or {}).get("variants") or {}).get(variant) or {}
        if not row.get("path") or not model.keras_path:
            raise LiveRefused(CLOSE_UNUSABLE_MODEL, f"model {model.id} has no {variant} variant yet; optimize it "
                                                    "on its model page first")
    return LiveSetup(project_id=project_id, model_id=model.id, model_labels=list(model.labels),
                     learn_block=model.learn_block, keras_path=model.keras_path, variant=variant,
                     variant_path=row.get("path", ""), variant_sha256=row.get("sha256", ""), anomaly=model.anomaly,
                     impulse_spec=model.impulse.spec, impulse_version=model.impulse.version,
                     device=device_stream_info(device))


def device_info(device_pk: int) -> dict | None:
    from .models import Device

    device = Device.objects.filter(pk=device_pk).first()
    return device_stream_info(device) if device else None


class LiveModel:
    """The loaded model and its impulse; classify() is blocking (TensorFlow): call it in a thread."""

    def __init__(self, setup: LiveSetup):
        from workers.ml.learn import anomaly as kmeans
        from workers.ml.pipeline import parse_impulse

        from .services_training import load_keras
        from .storage import read_bytes

        self.setup = setup
        self.engine = parse_impulse(setup.impulse_spec)
        self.tflite: bytes | None = None
        self.keras = None
        if setup.variant:
            self.tflite = read_bytes(setup.variant_path)
            if setup.variant_sha256 and hashlib.sha256(self.tflite).hexdigest() != setup.variant_sha256:
                raise ValueError(f"the {setup.variant} file of model {setup.model_id} does not match its checksum")
        elif setup.keras_path:
            self.keras = load_keras(setup.keras_path)
        self.kmeans = kmeans.from_dict(setup.anomaly) if setup.anomaly and self.engine.anomaly else None
        self.labels = setup.model_labels
        self.regression = setup.learn_block == "regression"
        self.axes = list(dict.fromkeys(a for step in self.engine.dsp for a in step.axes))
        if self.keras is not None or self.tflite is not None:
            # The first call builds the graph; doing it now keeps the first window's latency honest.
            self.classify(np.zeros((1, *self._window_shape()), np.float32), self.axes)

    def _window_shape(self) -> tuple[int, int]:
        from workers.ml.windows import window_length

        return window_length(self.engine.input), len(self.axes)

    def describe(self) -> dict:
        inp = self.engine.input
        return {"id": self.setup.model_id, "labels": self.labels, "impulse_version": self.setup.impulse_version,
                "window_size_ms": inp.window_size_ms, "window_increase_ms": inp.window_increase_ms,
                "frequency_hz": inp.frequency_hz, "axes": self.axes, "regression": self.regression,
                "variant": self.setup.variant or "keras",
                "anomaly_threshold": self.setup.anomaly.get("threshold") if self.setup.anomaly else None}

    def missing_axes(self, stream_axes: list[str]) -> list[str]:
        return [a for a in self.axes if a not in stream_axes]

    def classify(self, windows: np.ndarray, stream_axes: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """What pipeline.classify computes, with predict_on_batch: model.predict sets up a data pipeline
        on every call (about 100 ms on a busy 2-core machine, against under 1 ms for a few windows)."""
        from workers.ml.learn import anomaly as kmeans
        from workers.ml.pipeline import learn_input, step_features

        features = {s.id: step_features(windows, stream_axes, s, self.engine, name="the live window")
                    for s in self.engine.dsp}
        scores = anomaly = None
        if self.tflite is not None and self.engine.classifier is not None:
            from workers.ml.profile import run_tflite

            scores = run_tflite(self.tflite, learn_input(features, self.engine.classifier))
        elif self.keras is not None and self.engine.classifier is not None:
            scores = np.asarray(self.keras.predict_on_batch(learn_input(features, self.engine.classifier)))
        if self.kmeans is not None:
            anomaly = kmeans.score(self.kmeans, learn_input(features, self.engine.anomaly))
        return scores, anomaly

    def results(self, scores: np.ndarray | None, anomaly: np.ndarray | None, threshold: float) -> list[dict]:
        n = len(scores) if scores is not None else len(anomaly)
        out = []
        for i in range(n):
            entry: dict = {"scores": {}, "label": None, "uncertain": True,
                           "anomaly": round(float(anomaly[i]), 4) if anomaly is not None else None}
            if scores is not None and self.regression:
                entry |= {"value": round(float(scores[i][0]), 5), "uncertain": False}
            elif scores is not None:
                best = int(np.argmax(scores[i]))
                entry |= {"scores": {label: round(float(p), 4) for label, p in zip(self.labels, scores[i])},
                          "label": self.labels[best], "uncertain": bool(scores[i][best] < threshold)}
            out.append(entry)
        return out


_CACHE: OrderedDict[tuple, LiveModel] = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 4  # models kept loaded per server process: a few watchers of one model load it once


def live_model(setup: LiveSetup) -> LiveModel:
    """The loaded model for this setup, from the process's small cache when another socket loaded it."""
    key = (setup.model_id, setup.variant, setup.keras_path, setup.variant_sha256, setup.impulse_version,
           json.dumps(setup.anomaly, sort_keys=True) if setup.anomaly else "")
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    model = LiveModel(setup)
    with _CACHE_LOCK:
        _CACHE[key] = model
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return model


class LiveClassifyConsumer(ResilientChannelReceive, AsyncJsonWebsocketConsumer):
    async def connect(self):
        from . import services_devices

        self.joined: list[str] = []
        self.tasks: list[asyncio.Task] = []
        user = self.scope.get("user")
        kwargs = self.scope["url_route"]["kwargs"]
        self.project_id, self.device_pk = int(kwargs["project_id"]), int(kwargs["device_pk"])
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED, "sign in first")
            return
        try:
            model_id, self.threshold, variant = parse_query(self.scope.get("query_string", b""))
            self.setup = await database_sync_to_async(live_setup)(
                user=user, project_id=self.project_id, device_pk=self.device_pk, model_id=model_id, variant=variant)
        except LiveRefused as exc:
            await self._refuse(exc.code, exc.message)
            return
        self.device = self.setup.device
        self.model: LiveModel | None = None
        self.model_ready = asyncio.Event()
        self.windower = None
        self.stream_key: tuple | None = None  # (interval_ms, axes) the windower was built for
        self.last_seq: int | None = None
        self.t_offset_ms = 0.0
        self.pending: list[tuple[float, int, np.ndarray, float]] = []  # (t_ms, seq, window, arrived)
        self.wake = asyncio.Event()
        self.last_rows_at = time.monotonic()
        self.state = ""
        for group in (services_devices.classify_group(self.device_pk), f"project-{self.project_id}"):
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        await self.accept()
        await self._status("loading", f"loading model {self.setup.model_id}")
        self.tasks = [asyncio.create_task(self._load_and_classify()), asyncio.create_task(self._watch())]

    async def _refuse(self, code: int, message: str) -> None:
        # Accept first: a close before accept is an HTTP 403 at the handshake, and the code is lost.
        await self.accept()
        await self.send_json({"type": "error", "message": message})
        await self.close(code=code)

    async def _status(self, state: str, message: str, **extra) -> None:
        self.state = state
        await self.send_json({"type": "status", "state": state, "message": message, **extra})

    async def disconnect(self, code):
        for task in getattr(self, "tasks", []):
            task.cancel()
        for group in getattr(self, "joined", []):
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception as exc:  # noqa: BLE001 - Redis away: its group expires the member anyway
                log.debug("live classification: leaving %s failed: %s", group, exc)

    # --- the model and the classification loop --------------------------------------------------
    async def _load_and_classify(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.model = await loop.run_in_executor(_EXECUTOR, live_model, self.setup)
        except Exception as exc:
            log.exception("live classification: model %s failed to load", self.setup.model_id)
            await self.send_json({"type": "error", "message": f"model {self.setup.model_id} could not be loaded: "
                                                             f"{exc.__class__.__name__}: {exc}"[:300]})
            await self.close(code=CLOSE_UNUSABLE_MODEL)
            return
        self.model_ready.set()
        await self.send_json({"type": "ready", "model": self.model.describe(), "device": self.device,
                              "threshold": self.threshold})
        await self._announce_device()
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                if len(self.pending) > MAX_PENDING:
                    skipped = len(self.pending) - MAX_BATCH
                    self.pending = self.pending[skipped:]
                    await self._status("behind", f"the classifier fell behind; skipped {skipped} old windows",
                                       skipped=skipped)
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                axes = list(self.device["axes"])
                windows = np.stack([w for _, _, w, _ in batch])
                try:
                    scores, anomaly = await loop.run_in_executor(_EXECUTOR, self.model.classify, windows, axes)
                except Exception as exc:  # noqa: BLE001 - told to the browser; the next windows go on
                    await self.send_json({"type": "error", "message": f"classification failed: "
                                                                     f"{exc.__class__.__name__}: {exc}"[:300]})
                    continue
                now = time.monotonic()
                for (t_ms, seq, _, arrived), entry in zip(batch, self.model.results(scores, anomaly, self.threshold)):
                    await self.send_json({"type": "classification", "t_ms": round(t_ms, 1), "seq": seq, **entry,
                                          "latency_ms": round((now - arrived) * 1000, 1)})

    async def _announce_device(self) -> None:
        name = self.device["name"]
        if not self.device["online"]:
            await self._status("offline", f"device {name} is offline; start it (or open the this-browser device "
                                          "page) and classification begins as its stream arrives")
            return
        missing = self.model.missing_axes(self.device["axes"]) if self.device["axes"] else []
        if not self.device["axes"]:
            await self._status("waiting", f"device {name} is online but has never streamed (streamStart); a board "
                                          "that only answers remote sampling cannot be classified live")
        elif missing:
            await self._status("mismatch", f"the device streams {', '.join(self.device['axes'])}; the impulse "
                                           f"needs {', '.join(missing)}")
        elif self.state != "streaming":
            await self._status("waiting", f"device {name} is online; waiting for its stream")

    async def _watch(self) -> None:
        from . import services_devices

        while True:
            try:
                await self.channel_layer.group_send(services_devices.device_group(self.device_pk),
                                                    {"type": "device.watch", "seconds": WATCH_EVERY_S * 2.5,
                                                     "full": True})
            except Exception as exc:  # noqa: BLE001 - Redis away: the next reminder tries again
                log.debug("live classification: watch reminder failed: %s", exc)
            if (self.model_ready.is_set() and self.device["online"] and self.state == "streaming"
                    and time.monotonic() - self.last_rows_at > QUIET_AFTER_S):
                await self._status("waiting", f"device {self.device['name']} is online but not streaming; "
                                              "classification resumes when rows arrive")
            await asyncio.sleep(WATCH_EVERY_S)

    # --- group messages ---------------------------------------------------------------------------
    async def device_rows(self, message):
        from workers.ml.windows import InputBlockError

        arrived = time.monotonic()
        self.last_rows_at = arrived
        axes, interval = int(message["axes"]), float(message["interval_ms"])
        rows = np.frombuffer(message["data"], dtype=np.float32)
        if axes < 1 or rows.size % axes:
            return
        rows = rows.reshape(-1, axes)
        if not self.model_ready.is_set():
            # Nothing can be classified yet; waiting here would hold up every message behind this one.
            return
        if (interval, axes) != self.stream_key:
            # A new or changed stream: read its axis names again, and start a new window grid.
            info = await database_sync_to_async(device_info)(self.device_pk)
            if info is None:
                return
            self.device = info | {"online": True}
            self.stream_key = (interval, axes)
            missing = self.model.missing_axes(info["axes"])
            if missing or len(info["axes"]) != axes:
                self._end_grid()
                await self._status("mismatch", f"the device streams {', '.join(info['axes']) or 'no named axes'}; "
                                               f"the impulse needs {', '.join(missing) or 'other axes'}")
                return
            self._new_grid(interval, axes)
        elif self.windower is None:
            return  # a stream the impulse cannot use; the browser was told once
        elif self.last_seq is not None and message["from_seq"] != self.last_seq + 1:
            self._new_grid(interval, axes)
            await self._status("gap", f"rows {self.last_seq + 1}..{message['from_seq'] - 1} were not received "
                                      "here; windows start again after the gap")
        self.last_seq = message["seq"]
        if self.state != "streaming":
            await self._status("streaming", f"classifying {self.device['name']}'s stream")
        try:
            windows = self.windower.push(rows)
        except InputBlockError as exc:
            await self.send_json({"type": "error", "message": str(exc)})
            self._new_grid(interval, axes)
            return
        self.rows_in_grid += len(rows)
        for w in windows:
            self.pending.append((self.t_offset_ms + w.start_ms, message["seq"], w.values, arrived))
        if windows:
            self.wake.set()

    def _end_grid(self) -> None:
        # Stream time keeps running across grids, so t_ms never goes back.
        if self.windower is not None:
            self.t_offset_ms += self.rows_in_grid * self.windower.interval_ms
        self.windower = None

    def _new_grid(self, interval_ms: float, axes: int) -> None:
        from workers.ml.stream_windows import StreamWindower

        self._end_grid()
        self.windower = StreamWindower(self.model.engine.input, interval_ms=interval_ms, axes=axes)
        self.stream_key = (interval_ms, axes)
        self.rows_in_grid = 0
        self.device["interval_ms"] = interval_ms

    async def project_event(self, message):
        event = message.get("event", {})
        if event.get("type") != "device" or event.get("device") != self.device["device_id"]:
            return
        self.device["online"] = bool(event.get("online"))
        if not self.model_ready.is_set():
            return
        if not self.device["online"]:
            self.stream_key = None  # a reconnected device may stream at another rate
            self.state = ""
        await self._announce_device()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = json.loads(text_data or bytes_data or b"")
        except ValueError:
            await self.send_json({"type": "error", "message": "send JSON: {\"threshold\": 0..1}"})
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and "threshold" in content:
            try:
                self.threshold = _threshold(content["threshold"])
            except LiveRefused as exc:
                await self.send_json({"type": "error", "message": exc.message})
                return
            await self.send_json({"type": "threshold", "value": self.threshold})
        else:
            await self.send_json({"type": "error", "message": "send {\"threshold\": 0..1}"})
