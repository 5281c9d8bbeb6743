"""Waiting for a job through the JSON API, as a script or the stories do."""

from __future__ import annotations

import time

import requests


def wait_job(api: requests.Session, base: str, job_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = api.get(f"{base}/api/v1/jobs/{job_id}").json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {body}")
