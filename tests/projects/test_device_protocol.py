"""The device websocket at unit level (Channels' WebsocketCommunicator, the test Redis as channel layer,
the test database): hello in JSON and CBOR, every bad input with its close code, duplicates, gaps,
throttling, recordings, and two connections with the same device id."""

from __future__ import annotations

import asyncio
import json
import math

import cbor2
import numpy as np
import pytest
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from channels.testing import WebsocketCommunicator

from projects import device_consumer
from projects.device_consumer import DeviceConsumer
from tests.helpers.aio import run

pytestmark = pytest.mark.django_db(transaction=True)

ACC = [{"name": "accX", "units": "m/s2"}, {"name": "accY", "units": "m/s2"}, {"name": "accZ", "units": "m/s2"}]


def hello(key: str, device_id: str = "ac:87:a3:0a:2d:1b", **over) -> dict:
    body = {"version": 3, "apiKey": key, "deviceId": device_id, "deviceType": "NANO33BLE", "connection": "ip",
            "sensors": [{"name": "Accelerometer", "maxSampleLengthS": 60, "frequencies": [62.5, 100]}]}
    body.update(over)
    return {"hello": {k: v for k, v in body.items() if v is not None}}


# WebsocketCommunicator.disconnect() cancels the consumer when its disconnect handler has not finished
# within the timeout (1 s by default): on a loaded CI machine that cancelled the handler before it told
# the browser, so the tests give it the time a real server gives it.
DISCONNECT_TIMEOUT = 15


class Device:
    """A test device over a WebsocketCommunicator, speaking JSON or CBOR."""

    def __init__(self, binary: bool = False):
        self.binary = binary
        self.comm = WebsocketCommunicator(DeviceConsumer.as_asgi(), "/ws/device")

    async def __aenter__(self):
        connected, _ = await self.comm.connect()
        assert connected
        return self

    async def __aexit__(self, *exc):
        await self.comm.disconnect(timeout=DISCONNECT_TIMEOUT)

    async def send(self, message) -> None:
        if self.binary:
            await self.comm.send_to(bytes_data=cbor2.dumps(message))
        else:
            await self.comm.send_to(text_data=json.dumps(message))

    async def recv(self, timeout: float = 5) -> dict:
        out = await self.comm.receive_output(timeout)
        assert out["type"] == "websocket.send", f"expected a message, got {out}"
        if out.get("bytes") is not None:
            return cbor2.loads(out["bytes"])
        return json.loads(out["text"])

    async def closed_with(self, timeout: float = 5) -> tuple[int, list[dict]]:
        """Read until the server closes; returns the close code and the messages before it."""
        messages = []
        while True:
            out = await self.comm.receive_output(timeout)
            if out["type"] == "websocket.close":
                return out.get("code"), messages
            messages.append(cbor2.loads(out["bytes"]) if out.get("bytes") is not None else json.loads(out["text"]))

    async def handshake(self, key: str, device_id: str = "ac:87:a3:0a:2d:1b") -> None:
        await self.send(hello(key, device_id))
        assert await self.recv() == {"hello": True}

    async def stream_start(self, interval_ms: float = 10, sensors=ACC) -> int:
        await self.send({"streamStart": {"interval_ms": interval_ms, "sensors": sensors}})
        reply = await self.recv()
        assert reply["streamStart"] is True, reply
        return reply["next"]

    async def until(self, key: str, timeout: float = 5) -> dict:
        while True:
            message = await self.recv(timeout)
            if key in message:
                return message


def rows(n: int, start: float = 0.0) -> list[list[float]]:
    return [[start + i, -9.81, 0.5] for i in range(n)]


# --- hello ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("binary", [False, True], ids=["json", "cbor"])
def test_a_hello_registers_the_device_and_the_session_answers_in_the_hellos_encoding(api_keys, project, binary):
    from projects.models import Device as DeviceRow

    async def scenario():
        async with Device(binary=binary) as dev:
            await dev.send(hello(api_keys["ingestion"], "board-1"))
            out = await dev.comm.receive_output(5)
            assert (out.get("bytes") is not None) is binary
            reply = cbor2.loads(out["bytes"]) if binary else json.loads(out["text"])
            assert reply == {"hello": True}
            await dev.send({"ping": 7})
            assert await dev.recv() == {"pong": 7}
            row = await asyncio.to_thread(DeviceRow.objects.get, device_id="board-1")
            assert row.project_id == project.id and row.online and row.device_type == "NANO33BLE"
            assert row.sensors[0]["frequencies"] == [62.5, 100]
        row = await asyncio.to_thread(DeviceRow.objects.get, device_id="board-1")
        assert not row.online

    run(scenario())


def test_version_4_is_accepted(api_keys):
    async def scenario():
        async with Device() as dev:
            await dev.send(hello(api_keys["ingestion"], version=4))
            assert await dev.recv() == {"hello": True}

    run(scenario())


@pytest.mark.parametrize("which, needle", [("missing", "missing API key"), ("garbage", "invalid API key"),
                                           ("revoked", "revoked")])
def test_a_missing_invalid_or_revoked_key_is_refused_with_4001(api_keys, which, needle):
    key = {"missing": None, "garbage": "ts_0000000000_nope", "revoked": api_keys["revoked"]}[which]

    async def scenario():
        async with Device() as dev:
            await dev.send(hello(key))
            code, messages = await dev.closed_with()
            assert code == 4001
            assert messages == [{"hello": False, "err": messages[0]["err"]}] and needle in messages[0]["err"]

    run(scenario())


def test_another_projects_key_registers_the_device_in_that_project_only(api_keys, project, other_project):
    from projects.models import Device as DeviceRow

    async def scenario():
        async with Device() as dev:
            await dev.handshake(api_keys["other"], "charlies-board")

    run(scenario())
    assert DeviceRow.objects.get(device_id="charlies-board").project_id == other_project.id
    assert not DeviceRow.objects.filter(project=project).exists()


def test_a_frame_before_hello_is_refused_with_4002(api_keys):
    async def scenario():
        async with Device() as dev:
            await dev.send({"stream": {"seq": 0, "values": [[1, 2, 3]]}})
            code, messages = await dev.closed_with()
            assert code == 4002 and messages == [{"hello": False, "err": "the first message must be a hello"}]

    run(scenario())


def test_no_hello_within_the_timeout_closes_with_4002(api_keys, monkeypatch):
    monkeypatch.setattr(device_consumer, "HELLO_TIMEOUT_S", 0.3)

    async def scenario():
        async with Device() as dev:
            code, messages = await dev.closed_with()
            assert code == 4002 and "no hello" in messages[0]["err"]

    run(scenario())


@pytest.mark.parametrize("over, needle", [
    ({"version": 2}, "unknown protocol version 2"),
    ({"version": None}, "unknown protocol version None"),
    ({"deviceId": None}, "hello.deviceId"),
    ({"deviceType": ""}, "hello.deviceType"),
    ({"sensors": "accelerometer"}, "hello.sensors must be a list"),
    ({"sensors": [{"name": "Mic", "frequencies": ["fast"]}]}, "frequencies"),
])
def test_a_hello_with_missing_fields_or_an_unknown_version_is_refused_with_4003(api_keys, over, needle):
    async def scenario():
        async with Device() as dev:
            await dev.send(hello(api_keys["ingestion"], **over))
            code, messages = await dev.closed_with()
            assert code == 4003
            assert messages[0]["hello"] is False and needle in messages[0]["err"]

    run(scenario())


def test_malformed_json_is_refused_with_4004(api_keys):
    async def scenario():
        async with Device() as dev:
            await dev.comm.send_to(text_data='{"hello": {"version": 3,')
            code, messages = await dev.closed_with()
            assert code == 4004 and "malformed JSON" in messages[0]["err"]
        async with Device() as dev:
            await dev.handshake(api_keys["ingestion"])
            await dev.comm.send_to(text_data="[1, 2")
            code, messages = await dev.closed_with()
            assert code == 4004 and messages[0]["code"] == 4004

    run(scenario())


def test_truncated_cbor_is_refused_with_4004(api_keys):
    async def scenario():
        async with Device(binary=True) as dev:
            await dev.handshake(api_keys["ingestion"])
            await dev.stream_start()
            frame = cbor2.dumps({"stream": {"seq": 0, "values": rows(5)}})
            await dev.comm.send_to(bytes_data=frame[:-7])
            code, messages = await dev.closed_with()
            assert code == 4004 and "malformed CBOR" in messages[-1]["err"]

    run(scenario())


def test_non_objects_unknown_messages_a_second_hello_and_frames_before_stream_start_are_4004(api_keys):
    cases = [[1, 2, 3], {"dance": True}, hello("x"), {"stream": {"seq": 0, "values": [[1, 2, 3]]}}]

    async def scenario():
        for case in cases:
            async with Device() as dev:
                await dev.handshake(api_keys["ingestion"])
                await dev.send(case)
                code, _ = await dev.closed_with()
                assert code == 4004, case

    run(scenario())


def test_a_frame_over_the_size_limit_is_refused_with_4013(api_keys):
    async def scenario():
        async with Device() as dev:
            await dev.handshake(api_keys["ingestion"])
            await dev.comm.send_to(text_data=json.dumps({"ping": "x" * (device_consumer.MAX_FRAME_BYTES + 1)}))
            code, messages = await dev.closed_with()
            assert code == 4013 and "over the limit" in messages[0]["err"]

    run(scenario())


@pytest.mark.parametrize("frame, needle", [
    ({"seq": 0, "values": [[1.0, 2.0]]}, "has 2 values; the stream has 3 axes"),
    ({"seq": 0, "values": [[1.0, 2.0, float("nan")]]}, "NaN"),
    ({"seq": 0, "values": [[1.0, 2.0, float("inf")]]}, "NaN or an infinite"),
    ({"seq": 0, "values": [[1.0, "2.0", 3.0]]}, "non-number"),
    ({"seq": 0, "values": [[1.0, True, 3.0]]}, "non-number"),
    ({"seq": 0, "values": []}, "non-empty list"),
    ({"seq": -1, "values": [[1.0, 2.0, 3.0]]}, "non-negative integer"),
    ({"seq": 1.5, "values": [[1.0, 2.0, 3.0]]}, "non-negative integer"),
    ({"seq": "0", "values": [[1.0, 2.0, 3.0]]}, "non-negative integer"),
])
def test_bad_values_are_refused_with_4005_and_not_stored(api_keys, frame, needle):
    from projects.models import StreamChunk

    async def scenario():
        async with Device() as dev:
            await dev.handshake(api_keys["ingestion"])
            await dev.stream_start()
            await dev.send({"stream": frame})
            code, messages = await dev.closed_with()
            assert code == 4005 and needle in messages[-1]["err"], messages

    run(scenario())
    assert not StreamChunk.objects.exists()


def test_a_bad_stream_start_is_refused_with_4005(api_keys):
    async def scenario():
        for body in [{"interval_ms": 0, "sensors": ACC}, {"interval_ms": 10, "sensors": []},
                     {"interval_ms": 10, "sensors": [{"units": "g"}]}, "fast"]:
            async with Device() as dev:
                await dev.handshake(api_keys["ingestion"])
                await dev.send({"streamStart": body})
                code, _ = await dev.closed_with()
                assert code == 4005, body

    run(scenario())


# --- streaming ----------------------------------------------------------------------------------------------

def _stored(device_id: str) -> tuple[np.ndarray, list[int]]:
    from projects.models import Device as DeviceRow
    from projects.services_devices import stream_values

    return stream_values(DeviceRow.objects.get(device_id=device_id).pk, 0)


def test_frames_are_acknowledged_within_200_ms_duplicates_dropped_and_a_gap_asked_for_once(api_keys):
    async def scenario():
        async with Device() as dev:
            await dev.handshake(api_keys["ingestion"], "streamer")
            assert await dev.stream_start() == 0
            loop = asyncio.get_running_loop()
            sent = loop.time()
            for seq in range(3):
                await dev.send({"stream": {"seq": seq, "values": rows(2, 10 * seq)}})
            ack = await dev.until("streamAck")
            assert loop.time() - sent <= 0.25  # one ack tick (100 ms) plus the commit, with CI slack
            while ack["streamAck"]["seq"] < 2:
                ack = await dev.until("streamAck")
            # A resend of frames already stored (as after a reconnect) is dropped silently.
            await dev.send({"stream": {"seq": 1, "values": rows(2, 999)}})
            # A jump: frames 4 and 5 arrive before 3; the server asks once for 3 and drops them.
            await dev.send({"stream": {"seq": 4, "values": rows(2, 40)}})
            await dev.send({"stream": {"seq": 5, "values": rows(2, 50)}})
            assert await dev.recv() == {"streamResend": {"from": 3}}
            for seq in (3, 4, 5):
                await dev.send({"stream": {"seq": seq, "values": rows(2, 10 * seq)}})
            ack = await dev.until("streamAck")
            while ack["streamAck"]["seq"] < 5:
                ack = await dev.until("streamAck")
            # Going backwards further is a duplicate too, never an error.
            await dev.send({"stream": {"seq": 0, "values": rows(2, 777)}})
            await dev.send({"ping": 1})
            assert await dev.recv() == {"pong": 1}

    run(scenario())
    values, seqs = _stored("streamer")
    assert seqs == [0, 1, 2, 3, 4, 5]
    assert values[:, 0].tolist() == [float(10 * s + i) for s in range(6) for i in range(2)]


def test_while_frames_arrive_acknowledgements_come_at_least_every_200_ms(api_keys):
    async def scenario():
        async with Device() as dev:
            await dev.handshake(api_keys["ingestion"], "ticker")
            await dev.stream_start()
            loop = asyncio.get_running_loop()
            acks, seq, start = [], 0, loop.time()
            while loop.time() - start < 1.5:
                await dev.send({"stream": {"seq": seq, "values": rows(2)}})
                seq += 1
                await asyncio.sleep(0.02)
                while not await dev.comm.receive_nothing(0.001, 0.001):
                    if "streamAck" in await dev.recv():
                        acks.append(loop.time())
            return np.diff(acks), seq

    gaps, _sent = run(scenario())
    assert len(gaps) >= 5
    assert np.median(gaps) <= 0.15 and np.percentile(gaps, 90) <= 0.2, gaps


def test_after_a_reconnect_stream_start_says_where_to_continue(api_keys):
    async def scenario():
        async with Device() as dev:
            await dev.handshake(api_keys["ingestion"], "again")
            await dev.stream_start()
            for seq in range(4):
                await dev.send({"stream": {"seq": seq, "values": rows(1, seq)}})
            await dev.send({"ping": 1})
            await dev.until("pong")
        # Frames received but not yet acknowledged at the disconnect are stored too.
        async with Device() as dev:
            await dev.handshake(api_keys["ingestion"], "again")
            assert await dev.stream_start() == 4

    run(scenario())
    assert _stored("again")[1] == [0, 1, 2, 3]


def test_a_recording_marked_by_the_device_becomes_a_sample_with_exactly_the_stored_rows(api_keys, project):
    from projects.models import Sample

    async def scenario():
        async with Device(binary=True) as dev:
            await dev.handshake(api_keys["ingestion"], "marker")
            await dev.stream_start()
            await dev.send({"stream": {"seq": 0, "values": rows(3, 0)}})  # before the mark: not in the sample
            await dev.until("streamAck")
            await dev.send({"streamMark": {"action": "start", "label": "wave", "category": "testing"}})
            started = await dev.until("streamMark")
            assert started == {"streamMark": True, "recording": True, "fromSeq": 1}
            for seq in range(1, 6):
                await dev.send({"stream": {"seq": seq, "values": rows(2, 100 * seq)}})
            await dev.send({"streamMark": {"action": "stop"}})
            stopped = await dev.until("streamMark")
            await dev.send({"streamMark": {"action": "stop"}})
            again = await dev.until("streamMark")
            await dev.send({"streamMark": {"action": "start", "label": ""}})
            bad = await dev.until("streamMark")
            return stopped, again, bad

    stopped, again, bad = run(scenario())
    assert stopped["recording"] is False and stopped["values"] == 10
    assert (stopped["fromSeq"], stopped["toSeq"]) == (1, 5)
    assert again == {"streamMark": False, "err": "no recording is running"}
    assert bad["streamMark"] is False
    sample = Sample.objects.get(pk=stopped["sampleId"])
    assert (sample.label, sample.category, sample.project_id) == ("wave", "testing", project.id)
    from projects.services_samples import sample_payload

    stored = sample_payload(sample).values
    assert stored[:, 0].tolist() == [float(100 * s + i) for s in range(1, 6) for i in range(2)]
    assert sample.metadata == {"from_seq": "1", "to_seq": "5"}


def test_a_device_flooding_faster_than_its_rate_is_warned_then_closed_with_4029(api_keys):
    from projects.models import StreamChunk

    async def scenario():
        async with Device() as dev:
            await dev.handshake(api_keys["ingestion"], "flood")
            await dev.stream_start(interval_ms=10)  # 100 rows/s declared
            warned, seq = [], 0
            loop = asyncio.get_running_loop()
            start = loop.time()
            while loop.time() - start < 12:
                # 1000 rows/s: ten times the declared rate.
                await dev.send({"stream": {"seq": seq, "values": rows(50)}})
                seq += 1
                await asyncio.sleep(0.05)
                # (receive_output's timeout would cancel the app: look first, then read.)
                while not await dev.comm.receive_nothing(0.001, 0.001):
                    out = await dev.comm.receive_output(1)
                    if out["type"] == "websocket.close":
                        return out["code"], warned, loop.time() - start
                    message = json.loads(out["text"])
                    if "warning" in message:
                        warned.append(message)
            return None, warned, loop.time() - start

    code, warned, elapsed = run(scenario())
    assert code == 4029
    assert len(warned) == 1 and "too fast" in warned[0]["warning"]
    # Three one-second windows over the rate close it: about 3 s, later only when the machine is loaded.
    assert 2.5 < elapsed < 8
    # What was stored is contiguous from 0: dropped frames left no holes.
    seqs = list(StreamChunk.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(len(seqs)))


def test_a_second_connection_with_the_same_device_id_wins_and_the_older_is_closed_with_4009(api_keys):
    from projects.models import Device as DeviceRow

    async def scenario():
        async with Device() as old, Device() as new:
            await old.handshake(api_keys["ingestion"], "twin")
            await new.handshake(api_keys["ingestion"], "twin")
            code, messages = await old.closed_with()
            assert code == 4009 and "newer connection" in messages[-1]["err"]
            await new.send({"ping": 2})
            assert await new.recv() == {"pong": 2}
            # The older session's disconnect does not mark the device offline: the newer one is live.
            row = await asyncio.to_thread(DeviceRow.objects.get, device_id="twin")
            assert row.online

    run(scenario())


def test_the_browser_is_told_when_the_device_vanishes_mid_sample(api_keys, project):
    from projects.models import Sample

    async def scenario():
        # The browser's side gets its own layer instance, as a browser's consumer in another server
        # process has: channels_redis shares one read of a process's channels among its consumers, and
        # a consumer cancelled while it holds that read (the device's, as it closes) can drop a message
        # it popped for a neighbour (an upstream race this test is not about).
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        channel = await layer.new_channel()
        await layer.group_add(f"project-{project.id}", channel)
        dev = Device()
        await dev.__aenter__()
        await dev.handshake(api_keys["ingestion"], "vanisher")
        await layer.group_send("device-" + str(await _device_pk("vanisher")),
                               {"type": "device.command", "command": {"sample": {"label": "wave", "length": 2000,
                                                                                 "path": "/api/training/data",
                                                                                 "hmacKey": "k", "interval": 10,
                                                                                 "sensor": "Accelerometer"}}})
        command = await dev.recv()
        assert command["sample"]["label"] == "wave"
        await dev.send({"sample": True})
        await dev.send({"sampleStarted": True})
        await dev.send({"sampleReading": True, "progressPercentage": 30})
        await dev.comm.disconnect(timeout=DISCONNECT_TIMEOUT)  # gone before sampleFinished
        events = []
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), 15)
            except asyncio.TimeoutError:
                raise AssertionError(f"no 'failed' event within 15 s; the browser got {events}") from None
            events.append(message["event"])
            if message["event"].get("step") == "failed":
                break
        await layer.group_discard(f"project-{project.id}", channel)
        return events

    events = run(scenario())
    steps = [e["step"] for e in events if e.get("type") == "sampling"]
    assert steps == ["accepted", "started", "reading", "failed"]
    assert "nothing was saved" in events[-1]["error"]
    assert {"type": "device", "device": "vanisher", "online": False} in events
    assert not Sample.objects.exists()


async def _device_pk(device_id: str) -> int:
    from projects.models import Device as DeviceRow

    return (await asyncio.to_thread(DeviceRow.objects.get, device_id=device_id)).pk


def test_a_sample_request_to_an_offline_device_is_409(api, project, users):
    from projects.models import Device as DeviceRow

    device = DeviceRow.objects.create(project=project, device_id="sleepy", name="sleepy", online=False,
                                      sensors=[{"name": "Accelerometer", "maxSampleLengthS": 60,
                                                "frequencies": [100]}])
    response = api("bob").post(f"/api/v1/projects/{project.id}/devices/{device.pk}/sample",
                               {"label": "wave", "length_ms": 1000, "interval_ms": 10, "sensor": "Accelerometer"},
                               format="json")
    assert response.status_code == 409 and "offline" in response.json()["detail"]


def test_values_are_finite_float32_in_storage(api_keys):
    async def scenario():
        async with Device() as dev:
            await dev.handshake(api_keys["ingestion"], "precise")
            await dev.stream_start(sensors=ACC[:1])
            await dev.send({"stream": {"seq": 0, "values": [[0.1], [1e30], [-2.5]]}})
            await dev.until("streamAck")

    run(scenario())
    values, _ = _stored("precise")
    assert values.dtype == np.float32 and values.shape == (3, 1)
    assert values[:, 0].tolist() == [np.float32(0.1), np.float32(1e30), -2.5]
    assert all(math.isfinite(v) for v in values[:, 0])
