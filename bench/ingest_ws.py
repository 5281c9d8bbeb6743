"""Benchmark the device websocket: N simulated devices at 100 Hz x 3 axes stream for T seconds into a
running studio; prints devices, values/s stored, p50/p99 acknowledgement latency, values lost and the
server's CPU.

    STUDIO_VAR_DIR=/tmp/benchvar .venv/bin/python -m studio.run          # the server (make run)
    .venv/bin/python bench/ingest_ws.py --api-key KEY --devices 10,50,100 --seconds 20 --server-pid PID

Each device records its whole stream into a sample (streamMark start before the first frame, stop
after the last acknowledgement); "lost" is the rows the client saw acknowledged minus the rows the
server put in the sample (and any frame never acknowledged), so it counts what the server dropped.
Clients run in --procs processes; on a small machine they compete with the server for the cores,
which the table says.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.devices.simulate import SimulationParams, simulate


def _client(url: str, key: str, params: SimulationParams, warmup: float, out: mp.Queue) -> None:
    async def run():
        cpu0, wall0 = time.process_time(), time.monotonic()
        devices: list = []
        stop = asyncio.Event()
        task = asyncio.create_task(simulate(url, key, params, stop=stop, devices=devices))
        await asyncio.sleep(warmup)
        marks = [len(d.stats.latencies) for d in devices]
        acked_at_warmup = sum(d.stats.rows_acked for d in devices)
        t0 = time.monotonic()
        await asyncio.sleep(params.seconds - warmup)
        acked_at_end = sum(d.stats.rows_acked for d in devices)
        t1 = time.monotonic()
        try:
            await task
            error = ""
        except Exception as exc:  # noqa: BLE001 (report it with the figures, not lose the run)
            error = f"{exc.__class__.__name__}: {exc}"
        latencies = [x for d, m in zip(devices, marks) for x in d.stats.latencies[m:]]
        recorded = 0
        bad_marks = 0
        for d in devices:
            r = d.recording_result
            if isinstance(r, dict) and r.get("streamMark"):
                recorded += int(r.get("values") or 0)
            else:
                bad_marks += 1
        out.put({"devices": len(devices), "acked": sum(d.stats.rows_acked for d in devices),
                 "steady_acked": acked_at_end - acked_at_warmup, "steady_s": t1 - t0,
                 "unacked_frames": sum(d.unacked for d in devices), "recorded": recorded, "bad_marks": bad_marks,
                 "latencies": latencies[:: max(1, len(latencies) // 50_000)],
                 "reconnects": sum(max(0, d.stats.connects - 1) for d in devices),
                 "warnings": sum(d.stats.warnings for d in devices), "error": error,
                 "client_cpu_pct": 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)})

    asyncio.run(run())


def _cpu_seconds(pid: int | None) -> float:
    if not pid:
        return 0.0
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def _cpu_wait_seconds(pid: int | None) -> float:
    """Seconds the server's processes spent runnable but waiting for a CPU (Linux schedstat, main
    threads): on a shared machine this, not the server's own cost, is often what stretches latency."""
    if not pid:
        return 0.0
    import psutil

    total = 0.0
    try:
        for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            try:
                total += int(Path(f"/proc/{p.pid}/schedstat").read_text().split()[1]) / 1e9
            except (OSError, IndexError, ValueError):
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def run_once(url: str, key: str, devices: int, seconds: float, procs: int, warmup: float, rate: float,
             axes: int, frame_ms: float, server_pid: int | None, ramp: float = 0.0) -> dict:
    run_id = f"b{int(time.time()) % 100000}-{devices}"
    procs = max(1, min(procs, devices))
    queue: mp.Queue = mp.Queue()
    workers = []
    for i in range(procs):
        n = devices // procs + (1 if i < devices % procs else 0)
        params = SimulationParams(devices=n, rate_hz=rate, axes=axes, label="wave", seconds=seconds, record=True,
                                  frame_ms=frame_ms, device_prefix=f"{run_id}-p{i}", ramp_s=ramp)
        workers.append(mp.Process(target=_client, args=(url, key, params, warmup, queue)))
    cpu0, wait0, t0 = _cpu_seconds(server_pid), _cpu_wait_seconds(server_pid), time.monotonic()
    for w in workers:
        w.start()
    results = [queue.get(timeout=seconds + 600) for _ in workers]
    cpu1, wait1, t1 = _cpu_seconds(server_pid), _cpu_wait_seconds(server_pid), time.monotonic()
    for w in workers:
        w.join(10)
    lat = np.concatenate([np.asarray(r["latencies"], dtype=float) for r in results]) * 1000
    acked = sum(r["acked"] for r in results)
    recorded = sum(r["recorded"] for r in results)
    steady_s = max(r["steady_s"] for r in results)
    return {
        "devices": devices, "values_per_s": sum(r["steady_acked"] for r in results) * axes / steady_s,
        "expected_per_s": devices * rate * axes,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "lost_values": (acked - recorded) * axes + sum(r["unacked_frames"] for r in results),
        "unacked_frames": sum(r["unacked_frames"] for r in results),
        "bad_marks": sum(r["bad_marks"] for r in results),
        "reconnects": sum(r["reconnects"] for r in results), "warnings": sum(r["warnings"] for r in results),
        "server_cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0) if server_pid else float("nan"),
        "server_wait_pct": 100 * (wait1 - wait0) / (t1 - t0) if server_pid else float("nan"),
        "errors": [r["error"] for r in results if r["error"]],
        "client_cpu_pct": sum(r["client_cpu_pct"] for r in results),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("STUDIO_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("STUDIO_API_KEY"), required=False)
    parser.add_argument("--devices", default="10", help="one count or a comma-separated list, e.g. 10,50,100")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds excluded from latency and rate")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--axes", type=int, default=3)
    parser.add_argument("--frame-ms", type=float, default=100.0, help="data per frame (a frame every N ms)")
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds over which the devices connect")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--server-pid", type=int, default=None, help="pid of the server (its children count too)")
    args = parser.parse_args()
    if not args.api_key:
        parser.error("--api-key (or STUDIO_API_KEY) is required")
    print(f"{'devices':>7} {'values/s stored':>16} {'expected':>9} {'p50 ms':>7} {'p99 ms':>7} {'lost':>5} "
          f"{'reconn':>6} {'server CPU':>10} {'CPU wait':>8} {'client CPU':>10}  verdict", flush=True)
    for n in [int(x) for x in args.devices.split(",")]:
        r = run_once(args.url, args.api_key, n, args.seconds, args.procs, args.warmup, args.rate, args.axes,
                     args.frame_ms, args.server_pid, args.ramp)
        ok = r["lost_values"] == 0 and r["p99_ms"] < 100 and r["bad_marks"] == 0 and not r["errors"]
        print(f"{r['devices']:>7} {r['values_per_s']:>16,.0f} {r['expected_per_s']:>9,.0f} {r['p50_ms']:>7.1f} "
              f"{r['p99_ms']:>7.1f} {r['lost_values']:>5} {r['reconnects']:>6} {r['server_cpu_pct']:>9.0f}% {r['server_wait_pct']:>7.0f}% {r['client_cpu_pct']:>9.0f}%  "
              f"{'holds' if ok else 'FAILS'}"
              + (f"  ({r['bad_marks']} recordings failed)" if r["bad_marks"] else "")
              + (f"  errors: {r['errors'][:2]}" if r["errors"] else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
