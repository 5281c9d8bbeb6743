"""Jobs whose worker died: every worker checks, every STUDIO_LOST_WORKER_CHECK_S seconds, which workers
answer a ping; a running job whose worker missed two checks in a row is put back in the queue (the next
claim counts it as a new attempt, see projects/services_jobs.py) instead of staying "running" until
Redis' visibility timeout hands the message back an hour later."""
from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta

from django.db import close_old_connections
from django.utils import timezone

log = logging.getLogger(__name__)

CHECK_S = float(os.environ.get("STUDIO_LOST_WORKER_CHECK_S", "20"))
GRACE_S = 10.0  # a job claimed moments ago may belong to a worker that is not answering pings yet


def worker_host(worker: str) -> str:
    """`Job.worker` is "<celery hostname> pid <n>"; the hostname is what answers pings."""
    return worker.split(" pid ", 1)[0].strip()


def live_workers(app, timeout: float = 5.0) -> set[str] | None:
    """Hostnames that answered a ping, or None when the broker could not be asked."""
    try:
        replies = app.control.ping(timeout=timeout)
    except Exception:
        log.warning("could not ping the workers", exc_info=True)
        from studio.celery import reset_broker_pools

        reset_broker_pools()  # a connection from before a Redis restart: take a fresh one next time
        return None
    return {name for reply in replies for name in reply}


def reap_once(app, suspects: set[str]) -> tuple[list[int], set[str]]:
    """One pass: returns the ids of the jobs put back, and the workers suspected this time."""
    from projects.models import Job, JobStatus
    from workers import progress
    from workers.tasks import run_job

    live = live_workers(app)
    if not live:  # broker trouble or we cannot even see ourselves: judge nothing
        return [], set()
    cutoff = timezone.now() - timedelta(seconds=GRACE_S)
    running = list(Job.objects.filter(status=JobStatus.RUNNING, started_at__lt=cutoff).exclude(worker=""))
    missing = {worker_host(job.worker) for job in running} - live
    requeued = []
    for job in running:
        host = worker_host(job.worker)
        if host not in missing or host not in suspects:
            continue  # alive, or missed only this check: wait for the next one before judging
        # Conditional: only one worker's reaper hands a job back, and only if it did not move meanwhile.
        if Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, worker=job.worker,
                              attempts=job.attempts).update(
                status=JobStatus.QUEUED, worker="", message=f"queued again: worker {host} was lost"):
            progress.report(job.pk, log_line=f"worker {host} stopped answering; the job goes back to the "
                                             "queue for another worker")
            run_job.delay(job.pk)
            requeued.append(job.pk)
    return requeued, missing


def start(app) -> threading.Thread:
    def loop():
        suspects: set[str] = set()
        stop = threading.Event()
        while not stop.wait(CHECK_S):
            try:
                requeued, suspects = reap_once(app, suspects)
                if requeued:
                    log.warning("jobs %s went back to the queue: their worker was lost", requeued)
            except Exception:
                log.exception("the lost-worker check failed; trying again later")
            finally:
                close_old_connections()

    thread = threading.Thread(target=loop, name="studio-lost-worker-check", daemon=True)
    thread.start()
    return thread
