"""Live classification under load: K simulated devices stream to a running studio and K browsers (websocket
clients) watch each one's live classification; prints windows/s, per-window latency and what was skipped.

    make run                                    # in one terminal (the demo project has a trained model
                                                # once you trained it on its Training page)
    .venv/bin/python bench/live_classification.py --user demo --password demo-studio-2026 \\
        --project 1 --model 1 --api-key ts_... -k 10 --seconds 30

latency_ms is measured by the server: from the arrival of the rows that completed a window to the
window's result being sent (features + model in a worker thread). The devices stream `--rate` Hz on
as many axes as the model's impulse names (accX..gyrZ), so the server resamples when the impulse's
frequency differs. "gap" statuses mean rows were lost on the way to a classifier: the channel layer
keeps one inbound queue per server process (capacity in studio/settings.py), and a process that cannot
drain it fast enough drops messages ("over capacity" in the server's log).
"""
from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import re
import statistics
import time
import urllib.parse
import urllib.request
from collections import Counter

import websockets

from workers.devices.simulate import SimulationParams, simulate


def login(url: str, user: str, password: str) -> tuple[urllib.request.OpenerDirector, str]:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{url}/login").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"username": user, "password": password, "csrfmiddlewaretoken": token}).encode()
    opener.open(urllib.request.Request(f"{url}/login", data=body, headers={"Referer": f"{url}/login"}))
    session = next((c.value for c in jar if c.name == "sessionid"), None)
    if session is None:
        raise SystemExit("log-in failed: check --user and --password")
    return opener, f"sessionid={session}"


def device_pks(opener, url: str, project: int, prefix: str) -> dict[str, int]:
    rows = json.loads(opener.open(f"{url}/api/v1/projects/{project}/devices").read())
    rows = rows.get("results", rows) if isinstance(rows, dict) else rows
    return {r["device_id"]: r["id"] for r in rows if r["device_id"].startswith(prefix) and r.get("online")}


async def watch(url: str, cookie: str, seconds: float, out: dict) -> None:
    async with websockets.connect(url, additional_headers={"Cookie": cookie}, max_size=2**22) as ws:
        end = None
        while end is None or time.monotonic() < end:
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 5 if end is None else end - time.monotonic()))
            except TimeoutError:
                if end is not None:
                    break
                continue
            kind = message["type"]
            if kind == "ready":
                end = time.monotonic() + seconds  # the clock starts once the model is loaded
                out["ready"] = message
            elif kind == "classification":
                out["latency"].append(message["latency_ms"])
                out["labels"][message["label"]] += 1
            elif kind == "status":
                out["skipped"] += message.get("skipped", 0)
                out["states"][message["state"]] += 1
            elif kind == "error":
                out["errors"].append(message["message"])


async def main(args) -> None:
    opener, cookie = login(args.url, args.user, args.password)
    ws_base = args.url.replace("http", "ws", 1) + f"/ws/projects/{args.project}/live-classification/"
    stop = asyncio.Event()
    params = SimulationParams(devices=args.k, rate_hz=args.rate, axes=args.axes, label=args.label,
                              device_prefix="bench-live")
    sim = asyncio.create_task(simulate(args.url, args.api_key, params, stop=stop))
    try:
        deadline = time.monotonic() + 60
        while len(pks := device_pks(opener, args.url, args.project, "bench-live")) < args.k:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(pks)} of {args.k} devices came online")
            await asyncio.sleep(0.5)
        results = [{"latency": [], "labels": Counter(), "states": Counter(), "skipped": 0, "errors": []}
                   for _ in pks]
        query = f"?model={args.model}" + (f"&variant={args.variant}" if args.variant else "")
        started = time.monotonic()
        await asyncio.gather(*(watch(f"{ws_base}{pk}{query}", cookie, args.seconds, out)
                               for pk, out in zip(pks.values(), results)))
        wall = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.gather(sim, return_exceptions=True)
    latencies = sorted(x for r in results for x in r["latency"])
    labels = sum((r["labels"] for r in results), Counter())
    model = next((r["ready"]["model"] for r in results if "ready" in r), {})
    print(f"devices {args.k} at {args.rate:g} Hz x {args.axes} axes; model {args.model} "
          f"({model.get('variant')}, {model.get('frequency_hz')} Hz, window {model.get('window_size_ms')} ms "
          f"every {model.get('window_increase_ms')} ms); {args.seconds:g} s per socket ({wall:.1f} s wall)")
    if latencies:
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
        print(f"windows {len(latencies)} ({len(latencies) / args.seconds:.1f}/s over all sockets); latency ms "
              f"p50 {q[49]:.1f}, p95 {q[94]:.1f}, p99 {q[98]:.1f}, max {latencies[-1]:.1f}")
    states = sum((r["states"] for r in results), Counter())
    print(f"skipped (classifier behind) {sum(r['skipped'] for r in results)}; labels {dict(labels)}; "
          f"status messages {dict(states)}")
    short = [len(r["latency"]) for r in results if len(r["latency"]) < 0.8 * args.seconds * 1000 /
             model.get("window_increase_ms", 1000)]
    if short:
        print(f"{len(short)} sockets got under 80 % of the windows their time allows: {sorted(short)[:20]}")
    errors = [e for r in results for e in r["errors"]]
    if errors:
        print(f"errors {len(errors)}: {errors[:3]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--project", type=int, required=True)
    parser.add_argument("--model", type=int, required=True)
    parser.add_argument("--variant", default="", help="float32, int8, pruned or pruned-int8 (default: Keras)")
    parser.add_argument("--api-key", required=True, help="an ingestion key of the project (for the devices)")
    parser.add_argument("-k", type=int, default=4, help="devices, each watched by one socket")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--axes", type=int, default=3)
    parser.add_argument("--label", default="wave", help="the simulated motion (idle, wave, circle, shake, updown)")
    parser.add_argument("--seconds", type=float, default=20.0)
    asyncio.run(main(parser.parse_args()))
