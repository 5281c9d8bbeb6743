"""Simulated accelerometer devices: N devices streaming gesture-like signals, for demos, tests and
the benchmark. Each device streams continuously and answers remote sampling requests."""
from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass

import numpy as np

from .protocol import Identity, SensorInfo
from .signals import GestureParams, GestureSignal, pattern_for_label
from .streamer import StreamingDevice

AXIS_NAMES = ("accX", "accY", "accZ", "gyrX", "gyrY", "gyrZ", "magX", "magY", "magZ")


@dataclass(frozen=True)
class SimulationParams:
    """devices 1-2000; rate_hz 1-1000 (100 is a typical accelerometer); axes 1-9; frame_ms is how much
    data one stream frame carries (50-500 ms: fewer, larger frames cost the server less)."""

    devices: int = 1
    rate_hz: float = 100.0
    axes: int = 3
    label: str = "wave"
    seconds: float | None = None
    record: bool = False
    frame_ms: float = 100.0
    binary: bool = False
    device_prefix: str = "sim"
    keep_acked: bool = False
    category: str = "training"
    ramp_s: float = 0.0  # connect the devices spread over this long (a fleet does not start in one ms)
    mark_timeout_s: float = 120.0  # a stop turns the stream into a sample; many at once queue up


def axis_names(axes: int) -> list[str]:
    return list(AXIS_NAMES[:axes]) if axes <= len(AXIS_NAMES) else [f"axis{i}" for i in range(axes)]


def make_device(server: str, api_key: str, params: SimulationParams, index: int) -> tuple[StreamingDevice,
                                                                                         GestureSignal]:
    signal = GestureSignal(GestureParams(pattern=pattern_for_label(params.label)), rate_hz=params.rate_hz,
                           axes=params.axes, seed=index)

    async def record(sensor: str, length_ms: int, interval_ms: float) -> np.ndarray:
        # A fresh signal at the requested interval, delivered after the requested length, like a board.
        rows = max(1, round(length_ms / interval_ms))
        await asyncio.sleep(length_ms / 1000)
        sampler = GestureSignal(signal.params, rate_hz=1000 / interval_ms, axes=params.axes, seed=index + 10_000)
        return sampler.next_rows(rows)

    identity = Identity(api_key=api_key, device_id=f"{params.device_prefix}-{index:04d}",
                        device_type="STUDIO_SIMULATOR",
                        sensors=[SensorInfo("Accelerometer", (params.rate_hz,), 60)])
    device = StreamingDevice(server=server, identity=identity, axes=axis_names(params.axes),
                             interval_ms=1000 / params.rate_hz, binary=params.binary, sample_source=record,
                             keep_acked=params.keep_acked)
    return device, signal


async def _start_later(device: StreamingDevice, done: asyncio.Event, delay: float) -> None:
    await asyncio.sleep(delay)
    await device.run(done)


async def _produce(device: StreamingDevice, signal: GestureSignal, params: SimulationParams,
                   stop: asyncio.Event, start: float) -> None:
    rows_per_frame = max(1, round(params.rate_hz * params.frame_ms / 1000))
    period = rows_per_frame / params.rate_hz
    k = 0
    while not stop.is_set():
        # Absolute schedule: a slow loop iteration is caught up, so the produced rate is exact.
        delay = start + (k + 1) * period - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except TimeoutError:
                pass
        device.push(signal.next_rows(rows_per_frame))
        k += 1


async def simulate(server: str, api_key: str, params: SimulationParams, *, stop: asyncio.Event | None = None,
                   progress: bool = False, devices: list | None = None) -> list[StreamingDevice]:
    """Run the simulation until `seconds` pass (or `stop` is set), then wait for every frame to be
    acknowledged. Returns the devices (their stats hold acks, latencies, reconnects)."""
    stop = stop or asyncio.Event()
    done = asyncio.Event()  # set after the recording marks: closes the connections once drained
    pairs = [make_device(server, api_key, params, i) for i in range(params.devices)]
    if devices is not None:
        devices.extend(d for d, _ in pairs)
    start = time.monotonic()
    runners = [asyncio.create_task(_start_later(d, done, i * params.ramp_s / max(1, params.devices)))
               for i, (d, _) in enumerate(pairs)]
    if params.record:
        await asyncio.gather(*(d.mark("start", params.label, params.category, timeout=params.mark_timeout_s)
                               for d, _ in pairs))
    # Devices are not synchronised: spread their frames over the frame period instead of a burst.
    producers = [asyncio.create_task(_produce(d, s, params, stop, start + i / len(pairs) * params.frame_ms / 1000))
                 for i, (d, s) in enumerate(pairs)]
    reporter = asyncio.create_task(_report(pairs, start)) if progress else None
    try:
        if params.seconds is not None:
            try:
                await asyncio.wait_for(stop.wait(), params.seconds)
            except TimeoutError:
                pass
        else:
            await stop.wait()
    finally:
        stop.set()
        await asyncio.gather(*producers, return_exceptions=True)
        if params.record:
            replies = await asyncio.gather(*(d.mark("stop", timeout=params.mark_timeout_s) for d, _ in pairs),
                                           return_exceptions=True)
            for (d, _), reply in zip(pairs, replies):
                d.recording_result = reply
                if progress:
                    print(f"{d.identity.device_id}: {reply}", file=sys.stderr)
        done.set()
        results = await asyncio.gather(*runners, return_exceptions=True)
        if reporter:
            reporter.cancel()
    for result in results:
        if isinstance(result, Exception):
            raise result
    return [d for d, _ in pairs]


async def _report(pairs, start: float) -> None:
    while True:
        await asyncio.sleep(2)
        devs = [d for d, _ in pairs]
        acked = sum(d.stats.rows_acked for d in devs)
        pending = sum(d.unacked for d in devs)
        online = sum(d._connected.is_set() for d in devs)
        lat = [x for d in devs for x in d.stats.latencies[-200:]]
        p99 = float(np.percentile(lat, 99)) * 1000 if lat else float("nan")
        print(f"{time.monotonic() - start:6.1f} s  online {online}/{len(devs)}  rows acked {acked}  "
              f"frames waiting {pending}  p99 ack {p99:.0f} ms", file=sys.stderr, flush=True)
