"""Ingestion over HTTP: N two-second 3-axis EI JSON samples at 100 Hz sent by K concurrent clients to a
running studio (`make run`); prints samples/s and p50/p99 latency.

    make run                                    # in one terminal
    .venv/bin/python manage.py project_create --owner demo --name Bench   # prints {"id", "api_key"}
    .venv/bin/python bench/ingest_http.py --api-key ts_... -n 500 -k 8

Each sample has its own random values (no two are duplicates). Every request goes to
/api/training/data (or /files with --endpoint files) with x-file-name and x-label, as a device would.
Errors are counted by status (429 means STUDIO_INGEST_RATE_PER_MINUTE was reached).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import threading
import time
import urllib.parse
from collections import Counter


def sample_body(rng: random.Random, seconds: float = 2.0, hz: float = 100.0) -> bytes:
    rows = [[round(rng.gauss(0, 5), 3) for _ in range(3)] for _ in range(int(seconds * hz))]
    document = {
        "protected": {"ver": "v1", "alg": "none", "iat": int(time.time())},
        "signature": "0" * 64,
        "payload": {"device_name": "bench", "device_type": "BENCH", "interval_ms": 1000.0 / hz,
                    "sensors": [{"name": n, "units": "m/s2"} for n in ("accX", "accY", "accZ")],
                    "values": rows},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def multipart(name: str, body: bytes) -> tuple[bytes, str]:
    boundary = "----bench" + os.urandom(8).hex()
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"{name}\"\r\n"
            "Content-Type: application/json\r\n\r\n").encode()
    return head + body + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def run(url: str, api_key: str, n: int, k: int, endpoint: str, seed: int) -> dict:
    parts = urllib.parse.urlsplit(url)
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    rng = random.Random(seed)
    bodies = [sample_body(rng) for _ in range(n)]  # built before the clock starts
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    next_index = iter(range(n))

    def client() -> None:
        conn = conn_class(parts.hostname, parts.port, timeout=60)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            name = f"bench.{seed}.{i}.json"
            headers = {"x-api-key": api_key, "x-label": "bench", "Connection": "keep-alive"}
            if endpoint == "data":
                body, headers["Content-Type"], headers["x-file-name"] = bodies[i], "application/json", name
            else:
                body, headers["Content-Type"] = multipart(name, bodies[i])
            start = time.perf_counter()
            try:
                conn.request("POST", f"/api/training/{endpoint}", body=body, headers=headers)
                response = conn.getresponse()
                text = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = conn_class(parts.hostname, parts.port, timeout=60)
                status, text = 0, str(exc).encode()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                statuses[status] += 1
                if status != 200 and len(errors) < 5:
                    errors.append(f"{status}: {text[:200].decode(errors='replace')}")
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(k)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    ok = statuses.get(200, 0)
    return {
        "samples": n, "clients": k, "endpoint": endpoint, "ok": ok, "statuses": dict(statuses),
        "wall_s": round(wall, 2), "samples_per_s": round(ok / wall, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "body_bytes": len(bodies[0]), "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("STUDIO_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("STUDIO_API_KEY"), help="or STUDIO_API_KEY")
    parser.add_argument("-n", type=int, default=300, help="samples to send")
    parser.add_argument("-k", type=int, default=4, help="concurrent clients")
    parser.add_argument("--endpoint", choices=["data", "files"], default="data")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    if not args.api_key:
        parser.error("give --api-key (manage.py project_create prints one)")
    result = run(args.url, args.api_key, args.n, args.k, args.endpoint, args.seed)
    print(f"{result['ok']}/{result['samples']} samples of {result['body_bytes']} bytes to /{result['endpoint']} with "
          f"{result['clients']} clients in {result['wall_s']} s: {result['samples_per_s']} samples/s, "
          f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    if result["statuses"].keys() - {200}:
        print("statuses:", result["statuses"], "first errors:", *result["errors"], sep="\n  ")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
