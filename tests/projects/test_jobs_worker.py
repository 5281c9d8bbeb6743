"""Jobs on a real Celery worker process: a training job runs to the end, cancel stops it between batches,
a worker process killed with SIGKILL mid-job gives the job to the next run, and after the attempts limit
the job fails saying why."""

from __future__ import annotations

import os
import signal
import time

import pytest

from projects import services_training
from projects.models import Job
from projects.services import Actor
from projects.services_impulse import impulse_save
from projects.services_jobs import job_cancel
from tests.conftest import start_celery_worker
from tests.helpers.gestures import add_samples, impulse_spec
from workers.tasks import run_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def shared_media(settings, tmp_path):
    # the worker is another process: media_env() gives it the same directory
    settings.MEDIA_ROOT = str(tmp_path / "media")


def ready_to_train(project, users, epochs: int) -> Actor:
    actor = Actor(user=users["bob"])
    add_samples(project, per_label=4)
    impulse_save(project=project, actor=actor, spec=impulse_spec(epochs=epochs, anomaly=False))
    job = services_training.features_start(project=project, actor=actor)
    run_job.run(job.id)  # in-process: the worker tests are about the training job
    assert Job.objects.get(pk=job.id).status == "succeeded"
    return actor


def wait_for(predicate, timeout: float, what: str, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    log = worker.output()[-3000:] if worker else ""
    raise AssertionError(f"timed out waiting for {what}\n{log}")


def running_epochs(job_id: int) -> int:
    job = Job.objects.get(pk=job_id)
    return len(job.result.get("epochs", [])) if job.status == "running" else 0


def media_env(settings) -> dict:
    return {"MEDIA_ROOT": settings.MEDIA_ROOT}


def test_cancel_stops_a_training_job_on_a_worker_within_seconds(project, users, tmp_path, settings):
    from django.db import connection

    actor = ready_to_train(project, users, epochs=400)
    worker = start_celery_worker(tmp_path, connection.settings_dict, extra_env=media_env(settings))
    try:
        job = services_training.train_start(project=project, actor=actor)
        wait_for(lambda: running_epochs(job.id) >= 3, 120, "epochs to be reported", worker)
        asked = time.monotonic()
        job_cancel(job=Job.objects.get(pk=job.id), actor=actor)
        wait_for(
            lambda: Job.objects.get(pk=job.id).status == "cancelled",
            10,
            "the job to be cancelled",
            worker,
        )
        took = time.monotonic() - asked
        done = Job.objects.get(pk=job.id)
        assert took < 5, f"cancel took {took:.1f} s"
        assert done.finished_at is not None and "cancel requested by bob" in done.log
        assert not done.trained_models.exists()
    finally:
        worker.stop()


def test_a_job_whose_worker_process_is_killed_is_redelivered_and_finishes(
    project, users, tmp_path, settings
):
    from django.db import connection

    actor = ready_to_train(project, users, epochs=30)
    worker = start_celery_worker(tmp_path, connection.settings_dict, extra_env=media_env(settings))
    try:
        job = services_training.train_start(project=project, actor=actor)
        wait_for(lambda: running_epochs(job.id) >= 2, 120, "epochs to be reported", worker)
        first = Job.objects.get(pk=job.id)
        child = int(first.worker.rsplit("pid ", 1)[1])
        assert child != worker.proc.pid
        os.kill(child, signal.SIGKILL)  # the pool process running the job dies mid-training
        wait_for(
            lambda: Job.objects.get(pk=job.id).status == "succeeded",
            240,
            "the job to finish",
            worker,
        )
        done = Job.objects.get(pk=job.id)
        assert done.attempts == 2 and "attempt 2 of 3" in done.log
        assert int(done.worker.rsplit("pid ", 1)[1]) != child
        assert done.trained_models.count() == 1 and len(done.result["epochs"]) == 30
    finally:
        worker.stop()


def test_a_job_that_keeps_losing_its_worker_fails_with_the_reason(
    project, users, tmp_path, settings
):
    from django.db import connection

    actor = ready_to_train(project, users, epochs=400)
    env = media_env(settings) | {"STUDIO_JOB_MAX_ATTEMPTS": "1"}
    worker = start_celery_worker(tmp_path, connection.settings_dict, extra_env=env)
    try:
        job = services_training.train_start(project=project, actor=actor)
        wait_for(lambda: running_epochs(job.id) >= 1, 120, "epochs to be reported", worker)
        os.kill(int(Job.objects.get(pk=job.id).worker.rsplit("pid ", 1)[1]), signal.SIGKILL)
        wait_for(
            lambda: Job.objects.get(pk=job.id).status == "failed", 120, "the job to fail", worker
        )
        done = Job.objects.get(pk=job.id)
        assert "lost 1 times" in done.error and "giving up after 1 attempts" in done.error
        assert done.finished_at is not None
    finally:
        worker.stop()


def test_a_job_whose_whole_worker_is_killed_is_taken_by_the_next_worker(
    project, users, tmp_path, settings
):
    from django.db import connection

    actor = ready_to_train(project, users, epochs=30)
    # Redis gives an unacknowledged message back after the visibility timeout: short here
    env = media_env(settings) | {"CELERY_VISIBILITY_TIMEOUT": "5"}
    first = start_celery_worker(tmp_path, connection.settings_dict, name="w1", extra_env=env)
    second = None
    try:
        job = services_training.train_start(project=project, actor=actor)
        wait_for(lambda: running_epochs(job.id) >= 2, 120, "epochs to be reported", first)
        first.stop(sig=signal.SIGKILL)  # the main process and its pool, no goodbye to the broker
        assert Job.objects.get(pk=job.id).status == "running"
        second = start_celery_worker(tmp_path, connection.settings_dict, name="w2", extra_env=env)
        wait_for(
            lambda: Job.objects.get(pk=job.id).status == "succeeded",
            240,
            "the job to finish",
            second,
        )
        done = Job.objects.get(pk=job.id)
        assert done.attempts == 2 and done.worker.startswith("w2@")
        assert done.trained_models.count() == 1
    finally:
        first.stop()
        if second is not None:
            second.stop()
