"""Celery tasks: take ids, load, call the engine or a service, save, report progress."""

import logging
import os

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(name="workers.run_job", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: int) -> None:
    """Run one Job row (features, train, test): claim it, call its runner, record the final state.

    The message is acknowledged only after this returns, so a worker killed mid-job gives the job to
    another worker (see projects/services_jobs.py for the attempts limit)."""
    from projects import services_jobs as jobs
    from projects.services import ServiceError
    from projects.services_byom import RUNNERS as BYOM_RUNNERS
    from projects.services_deploy import RUNNERS as DEPLOY_RUNNERS
    from projects.services_training import RUNNERS as TRAINING_RUNNERS
    from workers.ml.dsp.common import DspParamError
    from workers.ml.learn.settings import LearnParamError, TrainingCancelled
    from workers.ml.pipeline import ImpulseError

    claim = jobs.job_claim(job_id=job_id, worker=f"{self.request.hostname or 'local'} pid {os.getpid()}")
    if claim is None:
        return
    watch = jobs.CancelWatch(claim)
    runner = {**TRAINING_RUNNERS, **DEPLOY_RUNNERS, **BYOM_RUNNERS}.get(claim.job.kind)
    try:
        if runner is None:
            raise ServiceError(f"unknown job kind {claim.job.kind!r}")
        result = runner(claim, watch)
    except (jobs.JobCancelled, TrainingCancelled):
        if not watch.lost:
            jobs.job_mark_cancelled(claim)
    except jobs.JobLost:
        log.info("job %s was taken over or finished elsewhere; this run stops", job_id)
    except ImpulseError as exc:
        jobs.job_fail(claim, error=exc.message)
    except (ServiceError, DspParamError, LearnParamError) as exc:
        jobs.job_fail(claim, error=getattr(exc, "message", None) or str(exc))
    except Exception as exc:  # the job must reach a final state whatever went wrong
        log.exception("job %s failed", job_id)
        jobs.job_fail(claim, error=f"internal error: {type(exc).__name__}: {exc}")
    else:
        if jobs.job_succeed(claim, result=result) and claim.job.kind == "train" and result.get("model_id"):
            from projects.services_deploy import optimize_after_training

            optimize_after_training(model_id=result["model_id"])  # the model page's table, without a click
