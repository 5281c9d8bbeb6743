"""The device websocket at /ws/device: Edge Impulse's remote management protocol (hello, remote
sampling) plus this studio's continuous no-loss streaming. The protocol, with an example of every
message and every close code, is written down in docs/device-protocol.md."""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

import cbor2
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from . import services_devices as devices
from .consumer_resilience import ResilientChannelReceive
from .stream_writer import writer as stream_writer

log = logging.getLogger(__name__)

# Close codes (docs/device-protocol.md).
CLOSE_AUTH = 4001           # missing, invalid, revoked or non-ingestion API key
CLOSE_NO_HELLO = 4002       # first message not a hello, or no hello within HELLO_TIMEOUT_S
CLOSE_BAD_HELLO = 4003      # hello with missing fields or an unknown version
CLOSE_BAD_FRAME = 4004      # malformed JSON/CBOR, not an object, unknown message
CLOSE_BAD_VALUES = 4005     # wrong axis count, NaN/infinite, strings, bad seq
CLOSE_REPLACED = 4009       # a newer connection with the same device id took over
CLOSE_TOO_LARGE = 4013      # frame over MAX_FRAME_BYTES
CLOSE_TOO_FAST = 4029       # kept sending faster than the declared rate after a warning

HELLO_TIMEOUT_S = 10.0
MAX_FRAME_BYTES = 256 * 1024
ACK_INTERVAL_S = 0.1        # acknowledgements go out at least every 200 ms while data arrives
RATE_SLACK = 1.5            # values/s allowed over the declared rate before throttling
MAX_AXES = 64
LIVE_POINTS = 200           # rows per live update: a screen needs no more


class DeviceConsumer(ResilientChannelReceive, AsyncWebsocketConsumer):
    async def connect(self):
        self.binary = False
        self.device: dict | None = None
        self.session_id = uuid.uuid4().hex
        self.pending: list[tuple[int, int, bytes]] = []  # (seq, axes, float32 bytes) not yet stored
        self.next_seq: int | None = None
        self.acked_seq: int | None = None
        self.resend_requested_for: int | None = None
        self.sampling = False
        self.watch_until = 0.0
        self.classify_until = 0.0  # a live classifier wants every stored row (device.watch with full)
        self.rate_window_start = time.monotonic()
        self.rate_values = 0
        self.rate_strikes = 0
        self.warned_fast = False
        self.closed = False
        self.flusher: asyncio.Task | None = None
        self.flushing: asyncio.Task | None = None
        self.flush_lock = asyncio.Lock()
        await self.accept()
        self.hello_timer = asyncio.create_task(self._hello_timeout())

    async def dispatch(self, message):
        # Channels runs close_old_connections in the database thread before every handler: a thread
        # hop per stream frame, about a quarter of the server's time at 100 devices. This consumer
        # touches the database only through database_sync_to_async (which does that itself) and the
        # stream writer (its own connection), so the hop is skipped.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    # --- framing -------------------------------------------------------------------------
    async def send_msg(self, message: dict) -> None:
        if self.closed:
            return
        if self.binary:
            await self.send(bytes_data=cbor2.dumps(message))
        else:
            await self.send(text_data=json.dumps(message, separators=(",", ":")))

    async def fail(self, code: int, error: str, *, hello: bool = False) -> None:
        if self.closed:
            return
        await self.send_msg({"hello": False, "err": error} if hello else {"err": error, "code": code})
        self.closed = True
        await self.close(code=code)

    async def receive(self, text_data=None, bytes_data=None):
        if self.closed:
            return
        size = len(bytes_data) if bytes_data is not None else len(text_data.encode())
        if size > MAX_FRAME_BYTES:
            await self.fail(CLOSE_TOO_LARGE, f"frame of {size} bytes is over the limit of {MAX_FRAME_BYTES}")
            return
        try:
            message = cbor2.loads(bytes_data) if bytes_data is not None else json.loads(text_data)
        except Exception as exc:
            kind = "CBOR" if bytes_data is not None else "JSON"
            await self.fail(CLOSE_BAD_FRAME, f"malformed {kind}: {exc.__class__.__name__}: {exc}"[:200],
                            hello=self.device is None)
            return
        if not isinstance(message, dict) or not message:
            await self.fail(CLOSE_BAD_FRAME, "a message must be a non-empty object", hello=self.device is None)
            return
        if self.device is None:
            await self._hello(message, binary=bytes_data is not None)
            return
        await self._dispatch(message)

    # --- hello -----------------------------------------------------------------------------
    async def _hello_timeout(self):
        await asyncio.sleep(HELLO_TIMEOUT_S)
        if self.device is None and not self.closed:
            await self.fail(CLOSE_NO_HELLO, f"no hello within {HELLO_TIMEOUT_S:.0f} s", hello=True)

    async def _hello(self, message: dict, *, binary: bool) -> None:
        self.binary = binary  # the hello's encoding sets the session's
        hello = message.get("hello")
        if not isinstance(hello, dict):
            await self.fail(CLOSE_NO_HELLO, "the first message must be a hello", hello=True)
            return
        try:
            info = devices.parse_hello(hello)
        except devices.DeviceProtocolError as exc:
            await self.fail(CLOSE_BAD_HELLO, exc.message, hello=True)
            return
        # The hello has arrived: a slow database (a thousand devices saying hello at once) must not
        # turn it into "no hello".
        self.hello_timer.cancel()
        try:
            device = await database_sync_to_async(devices.device_hello)(
                api_key=info.api_key, hello=info, session_id=self.session_id)
        except devices.DeviceAuthError as exc:
            await self.fail(CLOSE_AUTH, exc.message, hello=True)
            return
        if self.closed:
            # The device went away while its hello was stored: this session is not live, say so.
            await database_sync_to_async(devices.device_offline)(device_pk=device["pk"], session_id=self.session_id)
            return
        self.device = device
        self.group = devices.device_group(device["pk"])
        # The newest connection wins: tell an older session of this device to close, then join. Without
        # Redis (restarting) the session still streams; only commands and replacement wait for it.
        try:
            await self.channel_layer.group_send(self.group, {"type": "device.replaced", "session": self.session_id})
            await self.channel_layer.group_add(self.group, self.channel_name)
        except Exception as exc:  # noqa: BLE001
            log.warning("device %s joined without the channel layer: %s", device["device_id"], exc)
        if device["stream"]:
            self._configure_stream(device["stream"], device["stored_seq"])
        await self.send_msg({"hello": True})
        await devices.project_event(device["project_id"], {"type": "device", "device": device["device_id"],
                                                           "online": True})

    # --- messages after hello -------------------------------------------------------------------
    async def _dispatch(self, message: dict) -> None:
        if "stream" in message:
            await self._stream(message["stream"])
        elif "streamStart" in message:
            await self._stream_start(message["streamStart"])
        elif "streamMark" in message:
            await self._stream_mark(message["streamMark"])
        elif any(k in message for k in devices.SAMPLING_STEPS):
            await self._sampling_step(message)
        elif "hello" in message:
            await self.fail(CLOSE_BAD_FRAME, "hello was already received on this connection")
        elif "ping" in message:
            await self.send_msg({"pong": message["ping"]})
        else:
            await self.fail(CLOSE_BAD_FRAME, f"unknown message with keys {sorted(message)[:5]}")

    async def _sampling_step(self, message: dict) -> None:
        step, event = devices.sampling_event(message)
        self.sampling = step not in ("finished", "failed")
        await devices.project_event(self.device["project_id"], {"type": "sampling", "device":
                                                                self.device["device_id"], **event})

    # --- continuous streaming -------------------------------------------------------------------
    def _configure_stream(self, stream: dict, stored_seq: int | None) -> None:
        self.axes = len(stream["sensors"])
        self.interval_ms = stream["interval_ms"]
        self.max_rate = RATE_SLACK * 1000.0 / self.interval_ms * self.axes + 200 * self.axes
        self.next_seq = 0 if stored_seq is None else stored_seq + 1
        self.acked_seq = stored_seq
        if self.flusher is None:
            self.flusher = asyncio.create_task(self._flush_loop())

    async def _stream_start(self, body) -> None:
        try:
            stream = devices.parse_stream_start(body)
        except devices.DeviceProtocolError as exc:
            await self.fail(CLOSE_BAD_VALUES, exc.message)
            return
        stored = await database_sync_to_async(devices.device_stream_configure)(
            device_pk=self.device["pk"], stream=stream)
        self._configure_stream(stream, stored)
        await self.send_msg({"streamStart": True, "next": self.next_seq})

    async def _stream(self, body) -> None:
        if self.next_seq is None:
            await self.fail(CLOSE_BAD_FRAME, "send streamStart (interval_ms, sensors) before stream frames")
            return
        if not isinstance(body, dict):
            await self.fail(CLOSE_BAD_FRAME, "stream must be an object with seq and values")
            return
        seq = body.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            await self.fail(CLOSE_BAD_VALUES, f"seq must be a non-negative integer, got {seq!r}"[:120])
            return
        try:
            packed, rows = devices.pack_values(body.get("values"), self.axes)
        except devices.DeviceProtocolError as exc:
            await self.fail(CLOSE_BAD_VALUES, exc.message)
            return
        # Every frame counts towards the rate, duplicates and out-of-order ones too: a device that
        # ignores resend requests and keeps flooding is still closed.
        if not await self._within_rate(rows * self.axes):
            return
        if seq < self.next_seq:
            return  # a duplicate of a frame already received (a resend after reconnect): dropped
        if seq > self.next_seq:
            # A gap: ask once for the missing frames; frames after the gap are dropped until it is filled.
            if self.resend_requested_for != self.next_seq:
                self.resend_requested_for = self.next_seq
                await self.send_msg({"streamResend": {"from": self.next_seq}})
            return
        self.pending.append((seq, self.axes, packed))
        self.next_seq = seq + 1
        self.resend_requested_for = None
        # Store at once (the process-wide writer batches across devices); the tick loop only retries.
        if self.flushing is None or self.flushing.done():
            self.flushing = asyncio.create_task(self._flush())

    async def _within_rate(self, values: int) -> bool:
        now = time.monotonic()
        if now - self.rate_window_start >= 1.0:
            self.rate_strikes = self.rate_strikes + 1 if self.rate_values > self.max_rate else 0
            self.rate_window_start, self.rate_values = now, 0
            if self.rate_strikes >= 3:
                await self.fail(CLOSE_TOO_FAST, "sending faster than the declared rate for 3 s")
                return False
        self.rate_values += values
        if self.rate_values > self.max_rate:
            if not self.warned_fast:
                self.warned_fast = True
                await self.send_msg({"warning": "too fast: frames over the declared rate are dropped; "
                                                "resend them from the last acknowledged seq"})
            # Not stored, so not acknowledged: the next frame is a gap, and the device is asked to resend.
            return False
        return True

    async def _flush_loop(self):
        try:
            while not self.closed:
                await asyncio.sleep(ACK_INTERVAL_S)
                await self._flush()
        except asyncio.CancelledError:
            pass

    async def _flush(self) -> None:
        async with self.flush_lock:  # one store in flight per connection keeps frames in seq order
            while self.pending:
                if not await self._store_pending():
                    return

    async def _store_pending(self) -> bool:
        batch, self.pending = self.pending, []
        try:
            await stream_writer().store(self.device["pk"], batch)
        except Exception:
            # Not stored: put the frames back and try again next tick; nothing is acknowledged meanwhile.
            self.pending = batch + self.pending
            return False
        self.acked_seq = batch[-1][0]
        await self.send_msg({"streamAck": {"seq": self.acked_seq}})
        if self.watch_until > time.monotonic():
            try:
                await self.channel_layer.group_send(
                    devices.live_group(self.device["pk"]),
                    {"type": "device.live", "rows": devices.downsample(batch, LIVE_POINTS),
                     "interval_ms": self.interval_ms, "seq": self.acked_seq})
            except Exception:
                pass  # the live view is best effort; storage and acks are what must not fail
        if self.classify_until > time.monotonic():
            # Live classification (projects/live_classification.py) needs every stored row, not the live view's few.
            try:
                await self.channel_layer.group_send(
                    devices.classify_group(self.device["pk"]),
                    {"type": "device.rows", "data": b"".join(data for _, _, data in batch), "axes": batch[0][1],
                     "interval_ms": self.interval_ms, "from_seq": batch[0][0], "seq": self.acked_seq})
            except Exception:
                pass  # as the live view: best effort
        return True

    async def _stream_mark(self, body) -> None:
        if not isinstance(body, dict) or body.get("action") not in ("start", "stop"):
            await self.fail(CLOSE_BAD_FRAME, "streamMark needs action 'start' or 'stop'")
            return
        await self._flush()
        try:
            result = await database_sync_to_async(devices.recording_mark)(
                device_pk=self.device["pk"], action=body["action"], label=body.get("label"),
                category=body.get("category"))
        except devices.DeviceProtocolError as exc:
            await self.send_msg({"streamMark": False, "err": exc.message})
            return
        await self.send_msg({"streamMark": True, **result})

    # --- group messages -------------------------------------------------------------------------
    async def device_replaced(self, event):
        if event["session"] != self.session_id:
            await self.fail(CLOSE_REPLACED, "replaced by a newer connection with the same device id")

    async def device_command(self, event):
        command = event["command"]
        if "sample" in command:
            self.sampling = True
        await self.send_msg(command)

    async def device_watch(self, event):
        until = time.monotonic() + event.get("seconds", 10)
        if event.get("full"):
            self.classify_until = until  # a live classifier (projects/live_classification.py)
        else:
            self.watch_until = until

    async def disconnect(self, code):
        self.closed = True
        if hasattr(self, "hello_timer"):
            self.hello_timer.cancel()
        if self.device is None:
            return
        if self.flusher:
            self.flusher.cancel()
        if self.pending:
            # Frames received but not yet acknowledged are stored anyway; the device will resend them
            # (they are dropped then as duplicates), so storing them now loses nothing and doubles nothing.
            batch, self.pending = self.pending, []
            try:
                await stream_writer().store(self.device["pk"], batch)
            except Exception:
                pass
        try:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        except Exception:
            pass
        await database_sync_to_async(devices.device_offline)(device_pk=self.device["pk"],
                                                            session_id=self.session_id)
        events = [{"type": "device", "device": self.device["device_id"], "online": False}]
        if self.sampling:
            events.append({"type": "sampling", "device": self.device["device_id"], "step": "failed",
                           "error": "the device disconnected during sampling; nothing was saved"})
        for event in events:
            await devices.project_event(self.device["project_id"], event)

