"""The serial data forwarder: reads lines of comma-, tab- or space-separated values from a board,
detects the frequency and axis count over the first second, then connects as a device that streams
continuously and answers remote sampling by recording from the serial port."""
from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .protocol import Identity, SensorInfo
from .streamer import StreamingDevice

_SPLIT = re.compile(r"[,\t ]+")
COMMON_FREQUENCIES = (1, 5, 10, 12.5, 16, 20, 25, 31.25, 50, 60, 62.5, 100, 125, 200, 250, 400, 500, 800, 1000,
                      1600, 2000, 4000, 8000, 16000)


class ForwarderError(Exception):
    """The serial data cannot be forwarded (no data, inconsistent columns, bad axis names)."""


def parse_line(line: str) -> list[float] | None:
    """Values of one line, or None for a line that is not all numbers (a board's boot banner)."""
    text = line.strip().strip(",")
    if not text:
        return None
    try:
        values = [float(v) for v in _SPLIT.split(text)]
    except ValueError:
        return None
    return values if all(np.isfinite(values)) else None


@dataclass(frozen=True)
class Detected:
    axes: int
    frequency_hz: float

    @property
    def interval_ms(self) -> float:
        return 1000.0 / self.frequency_hz


def detect(rows: list[tuple[float, list[float]]]) -> Detected:
    """Axis count (the most common column count) and frequency (rows per second between the first
    and last row, snapped to a common sensor rate when within 3 %) from (time, values) pairs."""
    if len(rows) < 2:
        raise ForwarderError(f"only {len(rows)} line(s) of numbers arrived; is the board printing values "
                             "(one reading per line, separated by commas, tabs or spaces) at this baud rate?")
    counts = Counter(len(v) for _, v in rows)
    axes, seen = counts.most_common(1)[0]
    if seen < 0.8 * len(rows):
        raise ForwarderError(f"lines have differing numbers of values: {dict(counts)}")
    span = rows[-1][0] - rows[0][0]
    if span <= 0:
        raise ForwarderError("every line arrived at once; cannot tell the frequency")
    frequency = (len(rows) - 1) / span
    nearest = min(COMMON_FREQUENCIES, key=lambda f: abs(f - frequency))
    if abs(nearest - frequency) <= 0.03 * nearest:
        frequency = float(nearest)
    else:
        frequency = round(frequency, 1)
    return Detected(axes=axes, frequency_hz=frequency)


def axis_names_from(text: str, axes: int) -> list[str]:
    names = [n.strip() for n in re.split(r"[,\s]+", text.strip()) if n.strip()]
    if len(names) != axes:
        raise ForwarderError(f"{len(names)} axis name(s) given for {axes} axes: {names}")
    if len(set(names)) != len(names):
        raise ForwarderError(f"axis names must differ: {names}")
    return names


class SerialReader:
    """Reads lines from a serial port in a thread and hands each row of values to the callback."""

    def __init__(self, port: str, baud: int = 115200):
        import serial  # pyserial; imported here so the simulator does not need it

        self.serial = serial.serial_for_url(port, baudrate=baud, timeout=0.2)
        self._stop = threading.Event()
        self._callbacks: list[Callable[[float, list[float]], None]] = []
        self._thread = threading.Thread(target=self._run, name="serial-reader", daemon=True)

    def subscribe(self, callback: Callable[[float, list[float]], None]) -> None:
        self._callbacks.append(callback)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.serial.close()

    def _run(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = self.serial.read(self.serial.in_waiting or 1)
            except Exception:
                if self._stop.is_set():
                    return
                raise
            if not chunk:
                continue
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            now = time.monotonic()
            for line in lines:
                values = parse_line(line.decode(errors="replace"))
                if values is not None:
                    for callback in list(self._callbacks):
                        callback(now, values)


@dataclass(frozen=True)
class ForwardParams:
    """detect_s: how long to listen before deciding frequency and axes (0.5-5 s); frame_ms: data per
    stream frame (50-500 ms)."""

    port: str = "/dev/ttyACM0"
    baud: int = 115200
    detect_s: float = 1.0
    frame_ms: float = 100.0
    device_id: str | None = None
    device_type: str = "SERIAL_FORWARDER"


class Forwarder:
    """Detect, then forward: every row read from the serial port goes into the continuous stream, and
    a remote sampling request records the next rows for the requested length."""

    def __init__(self, reader: SerialReader, params: ForwardParams):
        self.reader, self.params = reader, params
        self.detected: Detected | None = None
        self.device: StreamingDevice | None = None
        self._detect_rows: list[tuple[float, list[float]]] = []
        self._frame: list[list[float]] = []
        self._frame_started = 0.0
        self._recorders: list[tuple[int, list, asyncio.Future]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    async def detect(self) -> Detected:
        self._detect_rows = []
        self.reader.subscribe(self._collect)
        await asyncio.sleep(self.params.detect_s)
        with self._lock:
            rows = list(self._detect_rows)
        self.reader._callbacks.remove(self._collect)
        self.detected = detect(rows)
        return self.detected

    def _collect(self, t: float, values: list[float]) -> None:
        with self._lock:
            self._detect_rows.append((t, values))

    def connect(self, *, server: str, api_key: str, axis_names: list[str]) -> StreamingDevice:
        assert self.detected is not None, "detect() first"
        if len(axis_names) != self.detected.axes:
            raise ForwarderError(f"{len(axis_names)} axis names for {self.detected.axes} axes")
        device_id = self.params.device_id or f"{socket.gethostname()}-{self.params.port.rsplit('/', 1)[-1]}"
        sensor = SensorInfo(f"Sensor with {self.detected.axes} axes ({', '.join(axis_names)})",
                            (self.detected.frequency_hz,), 3600)
        identity = Identity(api_key=api_key, device_id=device_id, device_type=self.params.device_type,
                            sensors=[sensor], connection="serial")
        self.device = StreamingDevice(server=server, identity=identity, axes=axis_names,
                                      interval_ms=self.detected.interval_ms, sample_source=self._record)
        self._loop = asyncio.get_running_loop()
        self.reader.subscribe(self._row)
        return self.device

    def _row(self, t: float, values: list[float]) -> None:
        if self.detected is None or len(values) != self.detected.axes or self._loop is None:
            return  # a line with a different column count is noise on the serial line
        self._loop.call_soon_threadsafe(self._on_row, t, values)

    def _on_row(self, t: float, values: list[float]) -> None:
        if not self._frame:
            self._frame_started = t
        self._frame.append(values)
        if (t - self._frame_started) * 1000 >= self.params.frame_ms - self.detected.interval_ms / 2:
            self.device.push(self._frame)
            self._frame = []
        for entry in list(self._recorders):
            wanted, rows, future = entry
            rows.append(values)
            if len(rows) >= wanted and not future.done():
                future.set_result(np.asarray(rows[:wanted]))
                self._recorders.remove(entry)

    async def _record(self, sensor: str, length_ms: int, interval_ms: float):
        # The board sends at its own rate; the sample is recorded at that rate, whatever was asked.
        wanted = max(1, round(length_ms / self.detected.interval_ms))
        future = asyncio.get_running_loop().create_future()
        self._recorders.append((wanted, [], future))
        rows = await asyncio.wait_for(future, length_ms / 1000 * 2 + 5)
        return rows, self.detected.interval_ms
