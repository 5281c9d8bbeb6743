"""Devices against the real ASGI server (daphne subprocess, real Redis channel layer) with real websocket
clients: remote sampling end to end as the browser sees it, continuous streaming from the shipped
client with recordings started and stopped through the API, the live view, and a Redis restart in the
middle of five streams that loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import websockets

from tests.helpers.aio import run
from workers.devices.protocol import Identity, SensorInfo
from workers.devices.simulate import SimulationParams, simulate
from workers.devices.streamer import StreamingDevice

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

AXES = ["accX", "accY", "accZ"]


def _cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def _in_thread(fn, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))


async def _wait_for(predicate, timeout: float = 15, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await _in_thread(predicate)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _device_pk(device_id: str):
    from projects.models import Device

    row = Device.objects.filter(device_id=device_id, online=True).first()
    return row.pk if row else None


def _api_post(api_client, url: str, body: dict):
    response = api_client.post(url, body, format="json")
    return response.status_code, response.json()


def test_remote_sampling_end_to_end_the_browser_sees_every_step_and_the_signed_sample_lands(
        asgi_server, api_keys, project, users, api):
    from projects.models import Sample
    from projects.services_samples import sample_payload

    events_url = asgi_server.url.replace("http", "ws") + f"/ws/projects/{project.id}/events"
    recorded: dict = {}

    async def record(sensor: str, length_ms: int, interval_ms: float) -> np.ndarray:
        await asyncio.sleep(length_ms / 1000)
        values = np.round(np.random.default_rng(3).normal(0, 3, size=(int(length_ms / interval_ms), 3)), 2)
        recorded["values"] = values
        return values

    async def scenario():
        async with websockets.connect(events_url, additional_headers={"Cookie": _cookie(users["bob"])}) as browser:
            assert json.loads(await browser.recv())["type"] == "hello"
            identity = Identity(api_key=api_keys["ingestion"], device_id="nano-1", device_type="NANO33BLE",
                                sensors=[SensorInfo("Accelerometer", (100,), 10)])
            device = StreamingDevice(server=asgi_server.url, identity=identity, axes=AXES, interval_ms=10,
                                     sample_source=record)
            stop = asyncio.Event()
            runner = asyncio.create_task(device.run(stop))
            pk = await _wait_for(lambda: _device_pk("nano-1"), what="the device online")
            status, body = await _in_thread(_api_post, api("bob"), f"/api/v1/projects/{project.id}/devices/{pk}/"
                                            "sample", {"label": "wave", "length_ms": 1000, "interval_ms": 10,
                                                       "sensor": "Accelerometer"})
            assert status == 202, body
            steps = []
            while "finished" not in steps:
                event = json.loads(await asyncio.wait_for(browser.recv(), 15))
                if event.get("type") == "sampling" and event["device"] == "nano-1":
                    steps.append(event["step"])
                    assert event["step"] != "failed", event
            stop.set()
            await runner
            return steps

    steps = run(scenario())
    assert steps[:2] == ["accepted", "started"] and steps[-2:] == ["uploading", "finished"]
    assert "reading" in steps
    sample = Sample.objects.get(project=project, label="wave")
    assert sample.signed and sample.category == "training" and sample.device_name == "nano-1"
    assert np.allclose(sample_payload(sample).values, recorded["values"], atol=1e-5)


def test_a_sample_request_for_a_sensor_the_device_lacks_is_refused(asgi_server, api_keys, project, api):
    async def scenario():
        identity = Identity(api_key=api_keys["ingestion"], device_id="nano-2", device_type="NANO33BLE",
                            sensors=[SensorInfo("Accelerometer", (100,), 10)])
        device = StreamingDevice(server=asgi_server.url, identity=identity, axes=AXES, interval_ms=10)
        stop = asyncio.Event()
        runner = asyncio.create_task(device.run(stop))
        pk = await _wait_for(lambda: _device_pk("nano-2"), what="the device online")
        url = f"/api/v1/projects/{project.id}/devices/{pk}/sample"
        results = [await _in_thread(_api_post, api("bob"), url, {"label": "wave", "length_ms": 1000,
                                                                  "interval_ms": 10, "sensor": "Camera"}),
                   await _in_thread(_api_post, api("bob"), url, {"label": "wave", "length_ms": 60_000,
                                                                  "interval_ms": 10, "sensor": "Accelerometer"})]
        stop.set()
        await runner
        return results

    (s1, b1), (s2, b2) = run(scenario())
    assert s1 == 400 and b1["field"] == "sensor"
    assert s2 == 400 and b2["field"] == "length_ms"


def _acked_rows(device: StreamingDevice, from_seq: int, to_seq: int) -> np.ndarray:
    rows = [r for seq, frame in device.acked if from_seq <= seq <= to_seq for r in frame]
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "cbor"])
def test_streaming_with_a_recording_started_and_stopped_from_the_api_and_a_live_view(
        asgi_server, api_keys, project, users, api, binary):
    from projects.models import Sample
    from projects.services_samples import sample_payload

    params = SimulationParams(devices=1, rate_hz=100, axes=3, label="circle", frame_ms=50, binary=binary,
                              keep_acked=True, device_prefix="live")
    stop = asyncio.Event()

    async def scenario():
        devices: list = []
        sim = asyncio.create_task(simulate(asgi_server.url, api_keys["ingestion"], params, stop=stop,
                                           devices=devices))
        pk = await _wait_for(lambda: _device_pk("live-0000"), what="the device online")
        live_url = asgi_server.url.replace("http", "ws") + f"/ws/projects/{project.id}/devices/{pk}/live"
        recording = f"/api/v1/projects/{project.id}/devices/{pk}/recording"
        async with websockets.connect(live_url, additional_headers={"Cookie": _cookie(users["vic"])}) as viewer:
            status, started = await _in_thread(_api_post, api("bob"), recording,
                                               {"action": "start", "label": "circle"})
            assert status == 200, started
            live = []
            while sum(len(m["rows"]) for m in live) < 100:
                live.append(json.loads(await asyncio.wait_for(viewer.recv(), 10)))
        await asyncio.sleep(0.5)
        status, stopped = await _in_thread(_api_post, api("bob"), recording, {"action": "stop"})
        assert status == 200, stopped
        status, again = await _in_thread(_api_post, api("bob"), recording, {"action": "stop"})
        assert status == 409 and "no recording" in again["detail"]
        stop.set()
        await sim
        return devices[0], started, stopped, live

    device, started, stopped, live = run(scenario())
    assert device.unacked == 0 and device.stats.warnings == 0
    assert all(m["type"] == "live" and m["interval_ms"] == 10 and len(m["rows"][0]) == 3 for m in live)
    assert started["fromSeq"] == stopped["fromSeq"]
    sample = Sample.objects.get(pk=stopped["sampleId"])
    assert sample.label == "circle" and sample.upload_source == "stream"
    expected = _acked_rows(device, stopped["fromSeq"], stopped["toSeq"])
    assert len(expected) == stopped["values"] >= 100
    assert np.array_equal(sample_payload(sample).values, expected)
    assert sample.interval_ms == 10


def _redis_restart(downtime_s: float) -> None:
    """Stop the suite's Redis (SIGTERM: it writes its AOF), wait, start a new one on the same port
    and data directory, as an operator restarting Redis would."""
    from studio.devservices import redis_command, wait_for_port

    pid = int(os.environ["STUDIO_TEST_REDIS_PID"])
    port = int(os.environ["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    data_dir = Path(os.environ["STUDIO_VAR_DIR"]) / "redis"  # where studio/pytest_plugin.py started it
    assert (data_dir / "appendonlydir").exists() or any(data_dir.iterdir()), data_dir
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(downtime_s)
    proc = subprocess.Popen(redis_command(port, data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for_port(port)
    # The plugin stops "its" Redis at exit by pid: point it at the new one.
    os.environ["STUDIO_TEST_REDIS_PID"] = str(proc.pid)
    import studio.pytest_plugin as plugin

    if hasattr(plugin, "_redis_proc"):
        plugin._redis_proc = proc
    # This process's pooled broker connections point at the old server: later tests get fresh ones.
    from studio.celery import reset_broker_pools

    reset_broker_pools()


def test_a_redis_restart_mid_stream_loses_nothing_acknowledged(asgi_server, api_keys, project):
    from projects.models import Device, Sample
    from projects.services_devices import stream_values
    from projects.services_samples import sample_payload

    params = SimulationParams(devices=5, rate_hz=100, axes=3, label="wave", frame_ms=50, keep_acked=True,
                              record=True, device_prefix="restart")
    stop = asyncio.Event()

    async def scenario():
        devices: list = []
        sim = asyncio.create_task(simulate(asgi_server.url, api_keys["ingestion"], params, stop=stop,
                                           devices=devices))
        await _wait_for(lambda: Device.objects.filter(device_id__startswith="restart-", recording=True).count()
                        == 5, what="five recording devices")
        await asyncio.sleep(2)
        acked_before = sum(d.stats.rows_acked for d in devices)
        await _in_thread(_redis_restart, 2.0)
        await asyncio.sleep(3)
        stop.set()
        await asyncio.wait_for(sim, 60)
        return devices, acked_before

    devices, acked_before = run(scenario())
    assert acked_before > 0
    for device in devices:
        assert device.unacked == 0, device.stats
        row = Device.objects.get(device_id=device.identity.device_id)
        stored, seqs = stream_values(row.pk, 0)
        acked_seqs = [seq for seq, _ in device.acked]
        # Every acknowledged frame is stored, in order, once; nothing else is stored.
        assert seqs == acked_seqs == list(range(len(seqs)))
        assert np.array_equal(stored, _acked_rows(device, 0, seqs[-1]))
        sample = Sample.objects.get(device=row, label="wave")
        assert np.array_equal(sample_payload(sample).values, stored)
    assert sum(d.stats.connects for d in devices) >= 5
    # The sessions rode through the outage: storage and acks never needed Redis.
    assert sum(d.stats.rows_acked for d in devices) > acked_before + 5 * 100 * 3
