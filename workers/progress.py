"""The one way a job reports: progress, log lines and state go to the Job row and to its channel group.

A page that reloads reads the row; a page that listens gets the same fields over /ws/jobs/<id>.
"""
from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from projects.models import Job

log = logging.getLogger(__name__)

LOG_LIMIT = 200_000  # characters of log kept on the row


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def job_state(job: Job) -> dict:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "error": job.error,
        "result": job.result,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def send(job_id: int, event: dict) -> None:
    """Send one event to the job's browsers; a broken channel layer never fails the job."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(job_group(job_id), {"type": "job.event", "event": event})
    except Exception:
        log.warning("could not send job event for job %s", job_id, exc_info=True)


def report(job: Job | int, fraction: float | None = None, message: str | None = None, *,
           log_line: str | None = None, metrics: dict | None = None) -> None:
    """Record progress (0..1), a status message, a log line and/or epoch metrics for a job."""
    job_id = job if isinstance(job, int) else job.id
    updates: dict = {}
    if fraction is not None:
        updates["progress"] = max(0.0, min(1.0, float(fraction)))
    if message is not None:
        updates["message"] = message[:500]
    line = log_line if log_line is not None else message
    if line:
        stamp = timezone.now().strftime("%H:%M:%S")
        updates["log"] = Concat(F("log"), Value(f"[{stamp}] {line}\n"))
    if updates:
        Job.objects.filter(pk=job_id).update(**updates)
    event: dict = {"type": "progress"}
    if fraction is not None:
        event["progress"] = updates["progress"]
    if message is not None:
        event["message"] = message
    if line:
        event["log"] = line
    if metrics is not None:
        event["metrics"] = metrics
    send(job_id, event)


def state_changed(job: Job) -> None:
    send(job.id, {"type": "state", "job": job_state(job)})
