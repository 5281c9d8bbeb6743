"""Live classification on the real ASGI server (daphne subprocess, real Redis channel layer): a tiny model
trained here on simulated idle/wave motion at 50 Hz classifies two simulated devices streaming at 100 Hz
(so every window is resampled), window by window, over the websocket and on the page in Chromium; an
offline device is reported; bad requests are refused with their close codes."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import tempfile
import threading
import time

import numpy as np
import pytest
import websockets

from tests.conftest import login_page
from tests.helpers.aio import run
from workers.devices.signals import GestureParams, GestureSignal
from workers.devices.simulate import SimulationParams, simulate

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

AXES = ["accX", "accY", "accZ"]
SPEC = {"input": {"type": "time-series", "window_size_ms": 1000, "window_increase_ms": 500, "frequency_hz": 50,
                  "zero_pad": True},
        "dsp": [{"id": "spectral", "block": "spectral-analysis", "axes": AXES,
                 "params": {"filter_type": "none", "fft_length": 64}}],
        "learn": [{"id": "classifier", "block": "classifier", "inputs": ["spectral"],
                   "arch": {"kind": "dense", "layers": [12], "dropout": 0.0},
                   "settings": {"epochs": 25, "learning_rate": 0.01, "batch_size": 16, "validation_split": 0.2}},
                  {"id": "anomaly", "block": "anomaly", "inputs": ["spectral"], "clusters": 3}]}


def _cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def _train_model(project):
    """A real Keras model (and k-means anomaly block) on 20 s of each motion per seed, saved as the training
    job saves it, with its impulse row."""
    from projects.models import Impulse, TrainedModel
    from projects.storage import project_prefix, save_bytes
    from workers.ml.optimize import to_tflite_int8
    from workers.ml.pipeline import parse_impulse, sample_windows, step_features, train_impulse
    from workers.ml.samples import Sensor, TimeSeries

    engine = parse_impulse(SPEC, axes=AXES)
    feats, labels = [], []
    for label in ("idle", "wave"):
        for seed in range(3):
            values = GestureSignal(GestureParams(pattern=label), rate_hz=50, seed=100 + seed).next_rows(50 * 20)
            series = TimeSeries(values=values.astype(np.float32), interval_ms=20.0,
                                sensors=tuple(Sensor(a, "m/s2") for a in AXES))
            windows, _ = sample_windows(series, engine)
            feats.append(step_features(windows, AXES, engine.dsp[0], engine))
            labels += [label] * len(windows)
    x = np.concatenate(feats)
    trained = train_impulse({"spectral": x}, labels, engine)
    assert trained.metrics["accuracy"] > 0.9, trained.metrics
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        trained.model.save(path)
        with open(path, "rb") as fh:
            keras_path = save_bytes(f"{project_prefix(project.id)}/models/live-test.keras", fh.read())
    int8 = to_tflite_int8(trained.model, x)
    int8_path = save_bytes(f"{project_prefix(project.id)}/models/live-test-int8.tflite", int8)
    impulse = Impulse.objects.create(project=project, version=1, spec=engine.spec)
    return TrainedModel.objects.create(project=project, impulse=impulse, learn_block="classifier",
                                       labels=trained.labels, keras_path=keras_path, anomaly=trained.anomaly,
                                       metrics=trained.metrics, variants={"variants": {"int8": {
                                           "path": int8_path, "sha256": hashlib.sha256(int8).hexdigest()}}})


def _online_pk(device_id: str):
    from projects.models import Device

    row = Device.objects.filter(device_id=device_id, online=True).exclude(stream_sensors=[]).first()
    return row.pk if row else None


async def _collect(url: str, cookie: str, *, windows: int, timeout: float = 45, threshold_change: bool = False):
    """Every message until `windows` classifications arrived."""
    messages = []
    async with websockets.connect(url, additional_headers={"Cookie": cookie}, max_size=2**22) as ws:
        deadline = time.monotonic() + timeout
        changed = False
        while sum(m["type"] == "classification" for m in messages) < windows:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic())))
            if threshold_change and not changed and messages[-1]["type"] == "classification":
                await ws.send(json.dumps({"threshold": 0.999}))
                changed = True
    return messages


class _Simulation(threading.Thread):
    """Simulated devices streaming from their own thread and event loop while the test drives sockets and a
    browser from this one."""

    def __init__(self, server: str, api_key: str, labels: tuple[str, ...]):
        super().__init__(daemon=True)
        self.server, self.api_key, self.labels = server, api_key, labels
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()

    def run(self) -> None:
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.stop_event = asyncio.Event()
        self.started.set()
        await asyncio.gather(*(simulate(self.server, self.api_key, SimulationParams(rate_hz=100, label=label,
                                                                                   device_prefix=label),
                                        stop=self.stop_event) for label in self.labels), return_exceptions=True)

    def __enter__(self):
        self.start()
        self.started.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.join(40)


def _wait_online(device_id: str, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pk = _online_pk(device_id)
        if pk:
            return pk
        time.sleep(0.1)
    raise AssertionError(f"{device_id} did not come online")


async def _offline(url: str, cookie: str) -> list:
    async with websockets.connect(url, additional_headers={"Cookie": cookie}) as ws:
        got = []
        while not any(m["type"] == "status" and m["state"] == "offline" for m in got):
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 45)))
        return got


def test_two_streaming_devices_are_classified_window_by_window_with_the_right_labels(
        asgi_server, api_keys, project, users, page):
    from projects.models import Device

    model = _train_model(project)
    offline = Device.objects.create(project=project, device_id="board-off", name="board-off", online=False)
    base = asgi_server.url.replace("http", "ws") + f"/ws/projects/{project.id}/live-classification/"
    cookie = _cookie(users["vic"])  # a viewer may watch

    async def sockets(wave_pk: int, idle_pk: int):
        return await asyncio.gather(
            _collect(f"{base}{wave_pk}?model={model.id}", cookie, windows=8, threshold_change=True),
            _collect(f"{base}{idle_pk}?model={model.id}&threshold=0.7", cookie, windows=8),
            _collect(f"{base}{wave_pk}?model={model.id}&variant=int8", cookie, windows=4),
            _offline(f"{base}{offline.pk}?model={model.id}", cookie))

    with _Simulation(asgi_server.url, api_keys["ingestion"], ("wave", "idle")):
        wave_pk, idle_pk = _wait_online("wave-0000"), _wait_online("idle-0000")
        wave, idle, int8, off = run(sockets(wave_pk, idle_pk))

        # The page: the sidebar leads there, the newest model is chosen, the idle device is picked and started.
        login_page(page, asgi_server.url, "vic")
        page.goto(f"{asgi_server.url}/projects/{project.id}/")
        page.click("text=Live classification")
        with _Simulation(asgi_server.url, api_keys["ingestion"], ("shake",)):  # a device arrives meanwhile
            page.wait_for_function("() => Array.from(document.querySelectorAll('[data-testid=lc-device] option'))"
                                   ".some(o => o.textContent.startsWith('shake-0000 — online'))", timeout=30_000)
        page.select_option("[data-testid=lc-device]", str(idle_pk))
        assert page.input_value("[data-testid=lc-model]") == str(model.id)
        page.select_option("[data-testid=lc-variant]", "int8")
        page.click("[data-testid=lc-start]")
        page.wait_for_function("document.querySelectorAll('[data-testid=lc-rows] tr').length >= 3", timeout=45_000)
        top = page.text_content("[data-testid=lc-top]")
        cells = page.locator("[data-testid=lc-timeline] i").count()
        status = page.text_content("[data-testid=lc-status]")
        page.click("#lc-stop")
        page.wait_for_function("document.getElementById('lc-status').textContent.startsWith('stopped')")

    assert top == "idle" and cells >= 3 and status.startswith("classifying")
    for messages, label, threshold in ((wave, "wave", 0.6), (idle, "idle", 0.7), (int8, "wave", 0.6)):
        ready = next(m for m in messages if m["type"] == "ready")
        assert ready["model"]["id"] == model.id and ready["model"]["labels"] == ["idle", "wave"]
        assert ready["device"]["axes"] == AXES and ready["threshold"] == threshold
        assert ready["model"]["variant"] == ("int8" if messages is int8 else "keras")
        results = [m for m in messages if m["type"] == "classification"]
        right = sum(r["label"] == label for r in results)
        assert right >= 0.8 * len(results), [(r["label"], r["scores"]) for r in results]
        starts = [r["t_ms"] for r in results]
        assert starts == sorted(starts) and all(b - a >= 500 for a, b in itertools.pairwise(starts))
        assert all(set(r["scores"]) == {"idle", "wave"} and r["anomaly"] is not None for r in results)
        assert any(m["type"] == "status" and m["state"] == "streaming" for m in messages)
    # The threshold changed mid-stream: afterwards a window is uncertain exactly when its best score is below it.
    assert {"type": "threshold", "value": 0.999} in wave
    after = [m for m in wave[wave.index({"type": "threshold", "value": 0.999}):] if m["type"] == "classification"]
    assert after and all(m["uncertain"] == (m["scores"][m["label"]] < 0.999) for m in after)
    status = next(m for m in off if m["type"] == "status" and m["state"] == "offline")
    assert "board-off is offline" in status["message"]


async def _refused(url: str, cookie: str | None) -> tuple[int, list]:
    headers = {"Cookie": cookie} if cookie else {}
    messages = []
    async with websockets.connect(url, additional_headers=headers) as ws:
        try:
            while True:
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code, messages


def test_bad_requests_are_refused_with_a_close_code_and_a_reason(asgi_server, project, other_project, users):
    from projects.models import Device, Impulse, TrainedModel

    device = Device.objects.create(project=project, device_id="board-1", name="board-1")
    theirs = TrainedModel.objects.create(project=other_project, labels=["a", "b"], keras_path="x.keras",
                                         impulse=Impulse.objects.create(project=other_project, version=1, spec=SPEC))
    their_device = Device.objects.create(project=other_project, device_id="board-9")
    plain = TrainedModel.objects.create(project=project, labels=["a", "b"], keras_path="x.keras",
                                        impulse=Impulse.objects.create(project=project, version=2, spec=SPEC))
    image = TrainedModel.objects.create(project=project, labels=["cat", "dog"], keras_path="x.keras",
                                        impulse=Impulse.objects.create(project=project, version=1, spec={
                                            "input": {"type": "image", "width": 32, "height": 32}}))
    base = asgi_server.url.replace("http", "ws") + f"/ws/projects/{project.id}/live-classification/"
    bob = _cookie(users["bob"])
    cases = [
        (f"{base}{device.pk}?model=999999", bob, 4404, "no trained model 999999"),
        (f"{base}{device.pk}?model={theirs.id}", bob, 4404, f"no trained model {theirs.id}"),
        (f"{base}{their_device.pk}?model={image.id}", bob, 4404, f"no device {their_device.pk}"),
        (f"{base}{device.pk}?model={image.id}", _cookie(users["charlie"]), 4404, "no such project"),
        (f"{base}{device.pk}?model={image.id}", None, 4401, "sign in"),
        (f"{base}{device.pk}?model=abc", bob, 4400, "model must be a model id"),
        (f"{base}{device.pk}?model={image.id}&threshold=1.5", bob, 4400, "threshold must be a number in 0..1"),
        (f"{base}{device.pk}?model={image.id}", bob, 4422, "classifies images"),
        (f"{base}{device.pk}?model={plain.id}&variant=int9", bob, 4400, "variant must be one of float32, int8"),
        (f"{base}{device.pk}?model={plain.id}&variant=int8", bob, 4422, f"model {plain.id} has no int8 variant"),
    ]

    async def scenario():
        return [await _refused(url, cookie) for url, cookie, _, _ in cases]

    for (url, _, code, reason), (got_code, messages) in zip(cases, run(scenario())):
        assert got_code == code, (url, got_code, messages)
        assert messages and messages[-1]["type"] == "error" and reason in messages[-1]["message"], (url, messages)


def test_the_consumer_reports_gaps_and_axis_mismatches_and_classifies_with_an_anomaly_only_model(
        project, users):
    """In process, rows sent straight to the classify group: an anomaly-only model (no network) scores each
    window; missed frames restart the grid without t_ms going back; a stream without the impulse's axes is
    reported once."""
    from channels.layers import get_channel_layer
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from projects.live_classification import MAX_BATCH
    from projects.models import Device, Impulse, TrainedModel
    from projects.services_devices import classify_group
    from studio.routing import websocket_urlpatterns
    from workers.ml.pipeline import parse_impulse, sample_windows, step_features, train_impulse
    from workers.ml.samples import Sensor, TimeSeries

    spec = {**SPEC, "learn": [SPEC["learn"][1]]}
    engine = parse_impulse(spec, axes=AXES)
    values = GestureSignal(GestureParams(pattern="wave"), rate_hz=50, seed=5).next_rows(50 * 20)
    windows, _ = sample_windows(TimeSeries(values=values.astype(np.float32), interval_ms=20.0,
                                           sensors=tuple(Sensor(a, "m/s2") for a in AXES)), engine)
    trained = train_impulse({"spectral": step_features(windows, AXES, engine.dsp[0], engine)},
                            ["wave"] * len(windows), engine)
    model = TrainedModel.objects.create(project=project, learn_block="anomaly", anomaly=trained.anomaly,
                                        impulse=Impulse.objects.create(project=project, version=1, spec=engine.spec))
    board = Device.objects.create(project=project, device_id="board-1", online=True, stream_interval_ms=10.0,
                                  stream_sensors=[{"name": a, "units": "m/s2"} for a in AXES])
    mic = Device.objects.create(project=project, device_id="mic-1", online=True, stream_interval_ms=10.0,
                                stream_sensors=[{"name": "audio", "units": ""}])
    app = URLRouter(websocket_urlpatterns)
    stream = GestureSignal(GestureParams(pattern="wave"), rate_hz=100, seed=6)

    def rows_message(rows: np.ndarray, from_seq: int, seq: int) -> dict:
        return {"type": "device.rows", "data": rows.astype(np.float32).tobytes(), "axes": rows.shape[1],
                "interval_ms": 10.0, "from_seq": from_seq, "seq": seq}

    async def until(ws, kind: str, state: str | None = None) -> dict:
        while True:
            message = await ws.receive_json_from(timeout=30)
            if message["type"] == kind and (state is None or message.get("state") == state):
                return message

    async def scenario():
        layer = get_channel_layer()
        ws = WebsocketCommunicator(app, f"/ws/projects/{project.id}/live-classification/{board.pk}?model={model.id}")
        ws.scope["user"] = users["vic"]
        assert (await ws.connect())[0]
        ready = await until(ws, "ready")
        await until(ws, "status", "waiting")
        await layer.group_send(classify_group(board.pk), rows_message(stream.next_rows(200), 0, 1))
        first = await until(ws, "classification")
        # Frames 2..4 never reach this socket: the grid starts again after the gap, stream time goes on.
        await layer.group_send(classify_group(board.pk), rows_message(stream.next_rows(300), 5, 7))
        gap = await until(ws, "status", "gap")
        after = await until(ws, "classification")
        # 20 s of rows at once (a stalled network catching up): the oldest windows are dropped, not queued.
        await layer.group_send(classify_group(board.pk), rows_message(stream.next_rows(2000), 8, 30))
        behind = await until(ws, "status", "behind")
        caught_up = [await until(ws, "classification") for _ in range(MAX_BATCH)]
        await ws.send_json_to({"threshold": "high"})
        refused = await until(ws, "error")
        await ws.send_to(text_data="{not json")
        assert "send JSON" in (await until(ws, "error"))["message"]
        await ws.disconnect(timeout=15)

        other = WebsocketCommunicator(app, f"/ws/projects/{project.id}/live-classification/{mic.pk}")
        other.scope["user"] = users["vic"]
        assert (await other.connect())[0]
        mismatch = await until(other, "status", "mismatch")  # told from the device row at once
        await layer.group_send(classify_group(mic.pk), rows_message(np.zeros((100, 1)), 0, 0))
        again = await until(other, "status", "mismatch")  # the stream itself, told once
        await layer.group_send(classify_group(mic.pk), rows_message(np.zeros((100, 1)), 1, 1))
        assert await other.receive_nothing(timeout=1.0)
        await other.disconnect(timeout=15)
        return ready, first, gap, after, behind, caught_up, refused, mismatch, again

    ready, first, gap, after, behind, caught_up, refused, mismatch, again = run(scenario())
    assert ready["model"]["labels"] == [] and ready["model"]["anomaly_threshold"] == trained.anomaly["threshold"]
    assert first["scores"] == {} and first["label"] is None and first["anomaly"] > 0 and first["t_ms"] == 500.0
    assert "rows 2..4" in gap["message"] and after["t_ms"] >= 2000.0 + 500.0
    assert behind["skipped"] > 0 and caught_up[0]["t_ms"] > after["t_ms"] + 500 * behind["skipped"]
    assert [m["t_ms"] for m in caught_up] == [caught_up[0]["t_ms"] + 500 * i for i in range(MAX_BATCH)]
    assert "threshold must be a number in 0..1" in refused["message"]
    assert "streams audio; the impulse needs accX, accY, accZ" in mismatch["message"] == again["message"]


def test_a_full_watch_makes_the_device_consumer_send_every_stored_row_to_the_classify_group(api_keys):
    """The device consumer's side of live classification, at unit level: without a full watch no rows go to
    device-classify-<pk>; with one, each stored batch's exact rows do (a plain watch is the live view's)."""
    from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
    from channels.testing import WebsocketCommunicator

    from projects.device_consumer import DeviceConsumer
    from projects.services_devices import classify_group, device_group

    async def scenario():
        # The listener's own layer instance, as a consumer in another process has (see
        # test_device_protocol's vanishing device: a shared read cancelled mid-pop can drop a message).
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        device = WebsocketCommunicator(DeviceConsumer.as_asgi(), "/ws/device")
        assert (await device.connect())[0]
        await device.send_json_to({"hello": {"version": 3, "apiKey": api_keys["ingestion"], "deviceId": "b-1",
                                             "deviceType": "NANO33BLE"}})
        assert (await device.receive_json_from())["hello"] is True
        await device.send_json_to({"streamStart": {"interval_ms": 10, "sensors": [{"name": a} for a in AXES]}})
        assert (await device.receive_json_from())["streamStart"] is True
        from projects.models import Device

        pk = (await asyncio.to_thread(lambda: Device.objects.get(device_id="b-1"))).pk
        listener = await layer.new_channel()
        await layer.group_add(classify_group(pk), listener)
        rows = [[0.5, -1.25, 9.75], [0.25, -1.0, 9.5]]

        async def frame(seq: int) -> None:
            await device.send_json_to({"stream": {"seq": seq, "values": rows}})
            while (await device.receive_json_from()).get("streamAck", {}).get("seq") != seq:
                pass

        await layer.group_send(device_group(pk), {"type": "device.watch", "seconds": 10})  # the live view's
        await frame(0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(listener), 0.5)
        await layer.group_send(device_group(pk), {"type": "device.watch", "seconds": 10, "full": True})
        await asyncio.sleep(0.1)
        await frame(1)
        message = await asyncio.wait_for(layer.receive(listener), 5)
        await device.disconnect(timeout=15)
        return message

    message = run(scenario())
    assert message["type"] == "device.rows" and message["from_seq"] == 1 and message["seq"] == 1
    assert message["axes"] == 3 and message["interval_ms"] == 10
    assert np.frombuffer(message["data"], np.float32).reshape(-1, 3).tolist() == [[0.5, -1.25, 9.75],
                                                                                  [0.25, -1.0, 9.5]]
