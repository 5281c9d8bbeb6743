"""Load: bench/ingest_ws.py and bench/ingest_http.py running together while a training job runs, against a
running studio (`make run`); prints both benchmarks' tables, the training job's time and any loss.

    make run                                                         # in one terminal
    .venv/bin/python manage.py project_create --owner demo --name Load  # {"id": …, "api_key": "…"} (admin key)
    .venv/bin/python bench/load_with_training.py --api-key KEY --project ID --ingest-api-key KEY2 \
        --devices 20 --seconds 30 -n 300

The project needs data and an impulse to train (the demo project has both: pass its id and a key of it).
Features are generated first when the impulse has none; then the training job starts, and the two ingestion
benchmarks start as soon as it is running. Exit code 1 when a benchmark lost data or the job did not succeed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def call(url: str, key: str, method: str = "GET", body: dict | None = None) -> dict | list:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"x-api-key": key, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def wait_job(base: str, key: str, job_id: int, want_running: bool = False, timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = call(f"{base}/api/v1/jobs/{job_id}", key)
        if job["status"] in ("succeeded", "failed", "cancelled") or (want_running and job["status"] == "running"):
            return job
        time.sleep(0.5)
    raise SystemExit(f"job {job_id} did not finish in {timeout} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("STUDIO_URL", "http://127.0.0.1:8000"))
    p.add_argument("--api-key", default=os.environ.get("STUDIO_API_KEY"), required=False,
                   help="an editor or admin key of the project (or STUDIO_API_KEY)")
    p.add_argument("--project", type=int, required=True)
    p.add_argument("--ingest-api-key", default=None,
                   help="a key of another project for the ingestion benchmarks (default: --api-key; then the "
                        "3-axis bench samples join the training project's data and a later training of a "
                        "6-axis impulse refuses them, saying so)")
    p.add_argument("--devices", default="20", help="websocket devices (ingest_ws.py --devices)")
    p.add_argument("--seconds", type=float, default=30.0, help="websocket stream length")
    p.add_argument("-n", type=int, default=300, help="HTTP samples (ingest_http.py -n)")
    p.add_argument("-k", type=int, default=4, help="HTTP clients (ingest_http.py -k)")
    p.add_argument("--server-pid", type=int, default=None)
    args = p.parse_args()
    base, key = args.url.rstrip("/"), args.api_key
    if not key:
        raise SystemExit("--api-key (or STUDIO_API_KEY) is required")

    features = call(f"{base}/api/v1/projects/{args.project}/features", key)
    if not features or not features.get("job"):
        job = call(f"{base}/api/v1/projects/{args.project}/jobs", key, "POST", {"kind": "features"})
        done = wait_job(base, key, job["id"])
        print(f"features: {done['status']} {done.get('error') or ''}", flush=True)
    train = call(f"{base}/api/v1/projects/{args.project}/jobs", key, "POST", {"kind": "train"})
    t_train = time.monotonic()
    wait_job(base, key, train["id"], want_running=True)
    print(f"training job {train['id']} running; starting both ingestion benchmarks", flush=True)

    ingest_key = args.ingest_api_key or key
    py = sys.executable
    extra = ["--server-pid", str(args.server_pid)] if args.server_pid else []
    ws = subprocess.Popen([py, str(ROOT / "bench" / "ingest_ws.py"), "--url", base, "--api-key", ingest_key,
                           "--devices", args.devices, "--seconds", str(args.seconds), *extra],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    http = subprocess.Popen([py, str(ROOT / "bench" / "ingest_http.py"), "--url", base, "--api-key", ingest_key,
                             "-n", str(args.n), "-k", str(args.k)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ws_out, _ = ws.communicate()
    http_out, _ = http.communicate()
    job = wait_job(base, key, train["id"])
    took = time.monotonic() - t_train
    print("--- bench/ingest_ws.py\n" + ws_out)
    print("--- bench/ingest_http.py\n" + http_out)
    print(f"--- training job {train['id']}: {job['status']} in {took:.1f} s (queued to final) "
          f"{job.get('error') or ''}")
    return 0 if ws.returncode == 0 and http.returncode == 0 and job["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
