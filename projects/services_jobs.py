"""The job machinery: enqueue after commit, claim with a conditional update, final states, cancel, redelivery.

Lifecycle: queued → running → succeeded | failed | cancelled. A task claims its job with one conditional
UPDATE that also bumps `attempts`, so two deliveries of the same message never both run it, and every
later write of the run is conditional on that attempt number (a superseded run cannot overwrite a newer
one's state). A worker killed mid-job leaves the message unacknowledged (acks_late,
reject_on_worker_lost); when it comes back the job is running with attempts ≥ 1 and is claimed again,
until MAX_ATTEMPTS runs have been lost: then it fails with the reason.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import FINAL_JOB_STATUSES, Impulse, Job, JobStatus, Project
from .services import Actor, ServiceError, activity_log

# How many runs of a job may be lost with their worker before it fails (environment: STUDIO_JOB_MAX_ATTEMPTS).
MAX_ATTEMPTS = int(
    os.environ.get("STUDIO_JOB_MAX_ATTEMPTS", getattr(settings, "STUDIO_JOB_MAX_ATTEMPTS", 3))
)
CANCEL_POLL_SECONDS = 0.5


class JobCancelled(Exception):
    """Raised inside a running job when its cancel was requested; the task marks it cancelled."""


class JobLost(Exception):
    """This run no longer owns the job (a newer attempt claimed it, or it reached a final state)."""


def _task_for(kind: str):
    from workers import tasks

    return tasks.run_job


@transaction.atomic
def job_enqueue(
    *,
    project: Project,
    actor: Actor | None,
    kind: str,
    params: dict | None = None,
    impulse: Impulse | None = None,
    snapshot: list | None = None,
) -> Job:
    """Create a queued Job row and send its task once the row is committed."""
    user = actor.user if actor is not None and getattr(actor.user, "pk", None) else None
    job = Job.objects.create(
        project=project,
        kind=kind,
        params=params or {},
        impulse=impulse,
        snapshot=snapshot or [],
        created_by=user,
        message="queued",
    )
    activity_log(project=project, actor=actor, verb="job.started", job=job.id, kind=kind)
    task = _task_for(kind)
    transaction.on_commit(lambda: task.apply_async(args=[job.id]))
    return job


@dataclass
class Claim:
    job: Job
    attempt: int


def job_claim(*, job_id: int, worker: str = "") -> Claim | None:
    """Take the job for this run, or None when there is nothing to run (gone, final, taken, too many tries)."""
    from workers import progress

    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status in FINAL_JOB_STATUSES:
        return None
    if job.cancel_requested:
        _finish(job_id, None, status=JobStatus.CANCELLED, message="cancelled before it ran")
        return None
    if job.attempts >= MAX_ATTEMPTS:
        # Every earlier run died with its worker (a finished run would have left a final state).
        _finish(
            job_id,
            None,
            status=JobStatus.FAILED,
            message="failed",
            error=f"the worker running this job was lost {job.attempts} times "
            f"(last: {job.worker or 'unknown'}); giving up after {MAX_ATTEMPTS} attempts",
        )
        return None
    attempt = job.attempts + 1
    now = timezone.now()
    taken = Job.objects.filter(
        pk=job_id, attempts=job.attempts, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
    ).update(
        status=JobStatus.RUNNING,
        attempts=attempt,
        started_at=now,
        worker=worker[:200],
        message="running" if attempt == 1 else f"running (attempt {attempt})",
    )
    if not taken:
        return None
    job.refresh_from_db()
    if attempt > 1:
        progress.report(
            job.id,
            log_line=f"the previous run was lost with its worker; attempt {attempt} of "
            f"{MAX_ATTEMPTS} on {worker}",
        )
    progress.state_changed(job)
    return Claim(job, attempt)


def _finish(
    job_id: int,
    attempt: int | None,
    *,
    status: str,
    message: str,
    error: str = "",
    result: dict | None = None,
    progress_value: float | None = None,
) -> bool:
    from workers import progress

    qs = Job.objects.filter(pk=job_id).exclude(status__in=FINAL_JOB_STATUSES)
    if attempt is not None:
        qs = qs.filter(attempts=attempt)
    updates: dict = {
        "status": status,
        "message": message[:500],
        "error": error,
        "finished_at": timezone.now(),
    }
    if result is not None:
        updates["result"] = result
    if progress_value is not None:
        updates["progress"] = progress_value
    done = bool(qs.update(**updates))
    if done:
        job = Job.objects.get(pk=job_id)
        line = f"{status}: {error or message}"
        progress.report(job_id, log_line=line)
        job.refresh_from_db()
        progress.state_changed(job)
    return done


def job_succeed(claim: Claim, *, result: dict, message: str = "done") -> bool:
    return _finish(
        claim.job.id,
        claim.attempt,
        status=JobStatus.SUCCEEDED,
        message=message,
        result=result,
        progress_value=1.0,
    )


def job_fail(claim: Claim, *, error: str) -> bool:
    return _finish(
        claim.job.id, claim.attempt, status=JobStatus.FAILED, message="failed", error=error
    )


def job_mark_cancelled(claim: Claim) -> bool:
    return _finish(claim.job.id, claim.attempt, status=JobStatus.CANCELLED, message="cancelled")


def job_cancel(*, job: Job, actor: Actor) -> Job:
    """Cancel a queued job at once; ask a running one to stop (it stops between batches)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status in FINAL_JOB_STATUSES:
            raise ServiceError(
                f"job {job.id} has already {job.status}; only queued or running jobs can be "
                "cancelled",
                status=409,
            )
        job.cancel_requested = True
        job.save(update_fields=["cancel_requested"])
        activity_log(
            project=job.project, actor=actor, verb="job.cancel_requested", job=job.id, kind=job.kind
        )
    if job.status == JobStatus.QUEUED:
        _finish(job.id, None, status=JobStatus.CANCELLED, message="cancelled before it ran")
    else:
        from workers import progress

        progress.report(job.id, log_line=f"cancel requested by {actor.display}")
    job.refresh_from_db()
    return job


class CancelWatch:
    """A cheap `should_stop` for the engine: reads the job row at most every CANCEL_POLL_SECONDS, and
    also stops when this run no longer owns the job."""

    def __init__(self, claim: Claim):
        self.claim = claim
        self.last = 0.0
        self.cancelled = False
        self.lost = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last < CANCEL_POLL_SECONDS:
            return self.cancelled or self.lost
        self.last = now
        row = (
            Job.objects.filter(pk=self.claim.job.id)
            .values("cancel_requested", "attempts", "status")
            .first()
        )
        if (
            row is None
            or row["attempts"] != self.claim.attempt
            or row["status"] != JobStatus.RUNNING
        ):
            self.lost = True
        elif row["cancel_requested"]:
            self.cancelled = True
        return self.cancelled or self.lost

    def check(self) -> None:
        """Raise between steps of a job that is not a training loop."""
        self.last = 0.0
        if self():
            raise JobLost() if self.lost else JobCancelled()


def jobs_for_project(project: Project, *, kind: str | None = None, limit: int = 100):
    qs = Job.objects.filter(project=project).select_related("created_by")
    if kind:
        qs = qs.filter(kind=kind)
    return qs[:limit]


def job_running_of_kind(project: Project, kinds: tuple[str, ...]) -> Job | None:
    return (
        Job.objects.filter(project=project, kind__in=kinds)
        .filter(Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING))
        .first()
    )
