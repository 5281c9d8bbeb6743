"""One device connection that never loses acknowledged data: hello, continuous streaming with acks,
resends and reconnects with exponential backoff, stream marks, and answers to remote sampling."""
from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import websockets

from .protocol import DeviceClientError, Identity, decode, encode, signed_document, upload, ws_url

# Close codes after which reconnecting cannot help (docs/device-protocol.md).
FATAL_CLOSE = {4001: "bad API key", 4003: "bad hello", 4004: "bad frame", 4005: "bad values",
               4009: "replaced by a newer connection with the same device id", 4013: "frame too large"}

# A server restarted under a whole fleet answers a thousand hellos at once: give it time rather than
# reconnect (which only adds to the queue).
HANDSHAKE_TIMEOUT_S = 30.0

# (sensor name, length in ms, interval in ms) -> rows of values recorded by the device, or (rows,
# interval in ms) when the device records at its own rate.
SampleSource = Callable[[str, int, float], Awaitable[np.ndarray | tuple[np.ndarray, float]]]


@dataclass
class StreamStats:
    frames_pushed: int = 0
    rows_pushed: int = 0
    frames_acked: int = 0
    rows_acked: int = 0
    connects: int = 0
    resend_requests: int = 0
    warnings: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds from a frame's first send to its ack
    last_error: str = ""


class StreamingDevice:
    """Push rows with push(); run() keeps them flowing to the server until stop is set and every
    pushed frame is acknowledged (or drain_timeout passes). Frames stay in memory until acknowledged,
    so a dropped connection or a restarted server loses nothing the server has acknowledged."""

    def __init__(self, *, server: str, identity: Identity, axes: list[str], interval_ms: float,
                 units: str = "m/s2", binary: bool = False, sample_source: SampleSource | None = None,
                 keep_acked: bool = False, max_backoff_s: float = 5.0, on_event: Callable[[str, dict], None]
                 | None = None):
        self.server, self.identity, self.axes, self.interval_ms = server, identity, axes, interval_ms
        self.units, self.binary, self.sample_source = units, binary, sample_source
        self.keep_acked, self.max_backoff_s = keep_acked, max_backoff_s
        self.on_event = on_event or (lambda kind, body: None)
        self.frames: OrderedDict[int, list[list[float]]] = OrderedDict()  # unacknowledged, by seq
        self.sent_at: dict[int, float] = {}
        self.acked: list[tuple[int, list[list[float]]]] = []  # (seq, rows) when keep_acked
        self.acked_seq = -1
        self.stats = StreamStats()
        self.recording_result: dict | Exception | None = None  # the last streamMark stop answer (simulate)
        self._next_seq = 0
        self._numbered = False  # True once the server told us where this device's seqs continue
        self._cursor = 0
        self._wake = asyncio.Event()
        self._ws = None
        self._mark_reply: asyncio.Future | None = None
        self._connected = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        rate_rows = 1000.0 / interval_ms
        # Stay under the server's throttle (1.5x the declared rate plus a burst) even while catching up.
        self._token_rate = 1.25 * rate_rows + 60
        self._bucket_size = 0.2 * self._token_rate
        self._tokens = self._bucket_size
        self._token_time = time.monotonic()

    # --- the producer side ------------------------------------------------------------------------
    def push(self, rows) -> int:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(self.axes)).tolist()
        seq = self._next_seq
        self.frames[seq] = rows
        self._next_seq += 1
        self.stats.frames_pushed += 1
        self.stats.rows_pushed += len(rows)
        self._wake.set()
        return seq

    @property
    def unacked(self) -> int:
        return len(self.frames)

    async def mark(self, action: str, label: str | None = None, category: str = "training",
                   timeout: float = 30) -> dict:
        """Send a streamMark (start/stop recording) and return the server's answer."""
        await asyncio.wait_for(self._connected.wait(), timeout)
        self._mark_reply = asyncio.get_running_loop().create_future()
        body = {"action": action}
        if action == "start":
            body |= {"label": label, "category": category}
        if action == "stop" and not await self.wait_acked(timeout=timeout):
            # A stop covers what was pushed before it: sending it now would leave those frames out.
            raise DeviceClientError(f"{self.unacked} frame(s) still unacknowledged after {timeout:g} s; "
                                    "the recording was not stopped")
        await self._ws.send(encode({"streamMark": body}, self.binary))
        return await asyncio.wait_for(self._mark_reply, timeout)

    async def wait_acked(self, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while self.frames and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not self.frames

    # --- the connection ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, drain_timeout: float = 30) -> None:
        backoff = 0.2
        stopping_since: float | None = None
        while True:
            if stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                if not self.frames or time.monotonic() - stopping_since > drain_timeout:
                    return
            try:
                await self._session(stop, drain_timeout)
                if stop.is_set() and not self.frames:
                    return
                backoff = 0.2
            except DeviceClientError:
                raise
            except (TimeoutError, OSError, websockets.ConnectionClosed, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
                code = getattr(getattr(exc, "rcvd", None), "code", None)
                if code in FATAL_CLOSE:
                    raise DeviceClientError(f"closed with {code} ({FATAL_CLOSE[code]}): "
                                            f"{getattr(exc.rcvd, 'reason', '')}") from exc
                self.stats.last_error = f"{exc.__class__.__name__}: {exc}"[:200]
                self.on_event("disconnected", {"error": self.stats.last_error})
            finally:
                self._connected.clear()
                self._ws = None
            # Exponential backoff with jitter, so a thousand devices do not come back in one instant.
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(self.max_backoff_s, backoff * 2)

    async def _session(self, stop: asyncio.Event, drain_timeout: float) -> None:
        async with websockets.connect(ws_url(self.server), max_size=2**22, open_timeout=HANDSHAKE_TIMEOUT_S,
                                      ping_interval=20, close_timeout=2) as ws:
            await ws.send(encode(self.identity.hello(), self.binary))
            reply = decode(await asyncio.wait_for(ws.recv(), HANDSHAKE_TIMEOUT_S))
            if reply.get("hello") is not True:
                raise DeviceClientError(f"hello refused: {reply.get('err', reply)}")
            await ws.send(encode({"streamStart": {"interval_ms": self.interval_ms,
                                                  "sensors": [{"name": a, "units": self.units}
                                                              for a in self.axes]}}, self.binary))
            while True:
                reply = decode(await asyncio.wait_for(ws.recv(), HANDSHAKE_TIMEOUT_S))
                if "streamStart" in reply:
                    break
                await self._handle(ws, reply)
            if reply["streamStart"] is not True:
                raise DeviceClientError(f"streamStart refused: {reply.get('err', reply)}")
            self._continue_from(int(reply["next"]))
            self._ws = ws
            self.stats.connects += 1
            self._connected.set()
            self.on_event("connected", {"next": reply["next"]})
            sender = asyncio.create_task(self._send_loop(ws))
            stopper = asyncio.create_task(self._close_when_done(ws, stop, drain_timeout))
            try:
                async for frame in ws:
                    await self._handle(ws, decode(frame))
                    if sender.done():
                        sender.result()
            finally:
                sender.cancel()
                stopper.cancel()

    async def _close_when_done(self, ws, stop: asyncio.Event, drain_timeout: float) -> None:
        await stop.wait()
        deadline = time.monotonic() + drain_timeout
        while self.frames and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await ws.close()

    def _continue_from(self, server_next: int) -> None:
        if not self._numbered:
            # A new client of a device the server already knows: continue its numbering.
            shift = server_next - (next(iter(self.frames)) if self.frames else self._next_seq)
            if shift:
                self.frames = OrderedDict((s + shift, r) for s, r in self.frames.items())
                self.sent_at = {}
                self._next_seq += shift
            self._numbered = True
        # Frames below the server's next were stored (acknowledged or stored at the disconnect).
        self._acknowledge(server_next - 1)
        self._cursor = max(server_next, next(iter(self.frames)) if self.frames else self._next_seq)

    async def _send_loop(self, ws) -> None:
        # A stop event makes the receive loop return once everything is acknowledged; the sender
        # wakes every 100 ms to notice ack-driven progress too.
        while True:
            self._cursor = max(self._cursor, self.acked_seq + 1)
            rows = self.frames.get(self._cursor)
            if rows is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.1)
                except TimeoutError:
                    pass
                continue
            await self._take_tokens(len(rows))
            if self.frames.get(self._cursor) is not rows:
                continue
            seq = self._cursor
            self.sent_at.setdefault(seq, time.monotonic())
            await ws.send(encode({"stream": {"seq": seq, "values": rows}}, self.binary))
            self._cursor = seq + 1

    async def _take_tokens(self, n: int) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self._bucket_size, self._tokens + (now - self._token_time) * self._token_rate)
            self._token_time = now
            if self._tokens >= min(n, self._bucket_size):
                self._tokens -= n
                return
            await asyncio.sleep((min(n, self._bucket_size) - self._tokens) / self._token_rate)

    def _acknowledge(self, seq: int) -> None:
        now = time.monotonic()
        while self.frames:
            first = next(iter(self.frames))
            if first > seq:
                break
            rows = self.frames.pop(first)
            sent = self.sent_at.pop(first, None)
            if sent is not None:
                self.stats.latencies.append(now - sent)
            self.stats.frames_acked += 1
            self.stats.rows_acked += len(rows)
            if self.keep_acked:
                self.acked.append((first, rows))
        self.acked_seq = max(self.acked_seq, seq)

    async def _handle(self, ws, message: dict) -> None:
        if "streamAck" in message:
            self._acknowledge(int(message["streamAck"]["seq"]))
        elif "streamResend" in message:
            self.stats.resend_requests += 1
            self._cursor = max(int(message["streamResend"]["from"]), self.acked_seq + 1)
            self._wake.set()
        elif "warning" in message:
            self.stats.warnings += 1
            self.on_event("warning", message)
        elif "streamMark" in message:
            if self._mark_reply is not None and not self._mark_reply.done():
                self._mark_reply.set_result(message)
        elif "sample" in message and isinstance(message["sample"], dict):
            task = asyncio.create_task(self._remote_sample(ws, message["sample"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif "err" in message:
            self.stats.last_error = str(message["err"])
            self.on_event("error", message)

    # --- remote sampling (Edge Impulse's protocol) -------------------------------------------------
    async def _remote_sample(self, ws, request: dict) -> None:
        async def say(body: dict) -> None:
            await ws.send(encode(body, self.binary))

        try:
            if self.sample_source is None:
                raise DeviceClientError("this device cannot record samples")
            await say({"sample": True})
            await say({"sampleStarted": True})
            recording = asyncio.create_task(self.sample_source(request["sensor"], int(request["length"]),
                                                               float(request["interval"])))
            started, length_s = time.monotonic(), max(0.001, request["length"] / 1000)
            while not recording.done():
                await asyncio.sleep(min(0.25, length_s / 4))
                percent = min(99, int(100 * (time.monotonic() - started) / length_s))
                await say({"sampleReading": True, "progressPercentage": percent})
            values, interval_ms = recording.result(), float(request["interval"])
            if isinstance(values, tuple):  # the source recorded at its own rate
                values, interval_ms = values
            await say({"sampleUploading": True})
            body = signed_document(values=np.asarray(values).tolist(), axes=self.axes,
                                   interval_ms=interval_ms, hmac_key=request.get("hmacKey"),
                                   device_name=self.identity.device_id, device_type=self.identity.device_type,
                                   units=self.units)
            label = request["label"]
            await asyncio.get_running_loop().run_in_executor(None, lambda: upload(
                server=self.server, path=request.get("path", "/api/training/data"),
                api_key=self.identity.api_key, label=label, body=body, file_name=f"{label}.json"))
            await say({"sampleFinished": True})
            self.on_event("sampled", {"label": label, "rows": len(values)})
        except websockets.ConnectionClosed:
            pass
        except Exception as exc:  # noqa: BLE001 (the device reports any failure, as EI devices do)
            try:
                await say({"sample": False, "error": f"{exc.__class__.__name__}: {exc}"[:200]})
            except websockets.ConnectionClosed:
                pass
