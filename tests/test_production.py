"""The production path on one machine: workers that share nothing but the environment (database, Redis, S3).

Two Celery worker processes with their own temporary directories and S3 storage (a moto server) train and
deploy two models at once; a worker killed with SIGKILL during training or during a deployment build leaves
its job to the other worker (or failed, with the reason), never running; a Redis restart during training
leaves the job to finish and its page and API show the final state.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import start_celery_worker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BUCKET = "studio-test"
FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def s3(tmp_path, settings):
    """A moto S3 server on a free port with one bucket; this process stores its files there too."""
    import boto3

    from studio.devservices import free_port, wait_for_port

    port = free_port()
    log = tmp_path / "moto.log"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, timeout=30)
        env = {"S3_BUCKET": BUCKET, "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}", "S3_ACCESS_KEY_ID": "studio",
               "S3_SECRET_ACCESS_KEY": "studio-secret", "S3_REGION": "us-east-1"}
        client = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"], aws_access_key_id="studio",
                              aws_secret_access_key="studio-secret", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        settings.STORAGES = {**settings.STORAGES, "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": BUCKET, "endpoint_url": env["S3_ENDPOINT_URL"], "access_key": "studio",
                        "secret_key": "studio-secret", "region_name": "us-east-1", "default_acl": None,
                        "file_overwrite": False, "querystring_auth": True}}}
        yield env | {"client": client}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def worker_env(s3: dict, tmp_path: Path, name: str, **extra: str) -> dict:
    """What a worker on another machine gets: the environment, its own scratch and media directories."""
    env = {k: v for k, v in s3.items() if k != "client"}
    return env | {"STUDIO_WORK_DIR": str(tmp_path / f"scratch-{name}"), "MEDIA_ROOT": str(tmp_path / f"media-{name}"),
                  "STUDIO_VAR_DIR": str(tmp_path / f"var-{name}")} | extra


def start_workers(tmp_path: Path, s3: dict, names=("w1", "w2"), **extra: str) -> dict:
    from django.db import connection

    workers = {}
    try:
        for name in names:
            workers[name] = start_celery_worker(tmp_path, connection.settings_dict, name=name,
                                                extra_env=worker_env(s3, tmp_path, name, **extra))
    except BaseException:
        for w in workers.values():
            w.stop()
        raise
    return workers


def stop_all(workers: dict) -> None:
    for w in workers.values():
        w.stop(timeout=10)


def worker_logs(workers: dict) -> str:
    return "\n".join(f"--- {n}\n{w.output()[-2500:]}" for n, w in workers.items())


def wait_for(predicate, timeout: float, what: str, workers: dict | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{worker_logs(workers or {})}")


def job(job_id: int):
    from projects.models import Job

    return Job.objects.get(pk=job_id)


def wait_final(job_id: int, timeout: float, workers: dict):
    return wait_for(lambda: (j := job(job_id)).status in FINAL and j, timeout, f"job {job_id} to finish", workers)


def worker_name(j) -> str:
    return j.worker.split("@", 1)[0]


def prepare(project, users, *, epochs: int, test_per_label: int = 1):
    """Training and test data and an impulse: spectral analysis + a small dense network."""
    from projects.services import Actor
    from projects.services_impulse import impulse_save
    from tests.helpers.gestures import add_samples, impulse_spec

    actor = Actor(user=users["alice"])
    add_samples(project, per_label=4)
    add_samples(project, per_label=test_per_label, category="testing", seed=7)
    impulse_save(project=project, actor=actor, spec=impulse_spec(epochs=epochs, anomaly=False, layers=(8,)))
    return actor


def nothing_left_running() -> list:
    from projects.models import Job

    return list(Job.objects.filter(status__in=("queued", "running")).values_list("id", "kind", "status", "worker"))


def test_two_workers_with_s3_and_separate_disks_train_and_deploy_two_models_at_once(project, users, tmp_path, s3):
    from projects import services, services_deploy, services_training
    from projects.models import Deployment, TrainedModel

    second = services.project_create(owner=users["alice"], name="Second gestures")
    projects = [project, second]
    actors = [prepare(p, users, epochs=30) for p in projects]
    started = time.monotonic()
    workers = start_workers(tmp_path, s3)
    try:
        jobs = [services_training.features_start(project=p, actor=a) for p, a in zip(projects, actors)]
        for j in jobs:
            assert wait_final(j.id, 90, workers).status == "succeeded", job(j.id).error
        trains = [services_training.train_start(project=p, actor=a) for p, a in zip(projects, actors)]
        done = [wait_final(j.id, 120, workers) for j in trains]
        assert [d.status for d in done] == ["succeeded", "succeeded"], [d.error for d in done]
        # Both were queued at once and each worker takes one job at a time: they ran side by side.
        assert {worker_name(d) for d in done} == {"w1", "w2"}, [d.worker for d in done]
        overlap = min(d.finished_at for d in done) > max(d.started_at for d in done)
        models = [TrainedModel.objects.get(job=d) for d in done]
        deploys = [services_deploy.deployment_start(project=p, actor=a, model_id=m.id, target="tflite-int8")
                   for p, a, m in zip(projects, actors, models)]
        finished = [wait_final(j.id, 150, workers) for j in deploys]
        assert [f.status for f in finished] == ["succeeded", "succeeded"], [f.error for f in finished]
        took = time.monotonic() - started
        wait_for(lambda: not nothing_left_running(), 120, "the chained optimize jobs to finish", workers)
    finally:
        stop_all(workers)
    keys = [o["Key"] for o in s3["client"].list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    for p, f in zip(projects, finished):
        dep = Deployment.objects.get(job=f)
        assert dep.path in keys and dep.size > 0
        assert any(k.startswith(f"projects/{p.id}/") and "/models/" in k or k.endswith(".keras") for k in keys)
    # Nothing was written to a worker's own media directory: every file went to the bucket.
    for name in workers:
        media = tmp_path / f"media-{name}"
        assert not media.exists() or not any(p.is_file() for p in media.rglob("*")), list(media.rglob("*"))
    print(f"\nproduction: 2 workers + S3 trained and deployed 2 models in {took:.1f} s "
          f"(trainings on {sorted(worker_name(d) for d in done)}, overlapping: {overlap}; "
          f"deployments on {[worker_name(f) for f in finished]}; {len(keys)} objects in S3)")


def kill_worker_running(j, workers: dict) -> str:
    name = worker_name(j)
    proc = workers[name].proc
    os.killpg(proc.pid, signal.SIGKILL)  # the worker and its pool process, as a machine that dies
    proc.wait(timeout=10)
    return name


# The production settings (Redis' visibility timeout stays at an hour): the surviving worker's lost-worker
# check (workers/reaper.py) hands the job back; it runs every 2 s here instead of every 20 s.
CHECK_S = "2"
FAST_RESTORE = {"STUDIO_LOST_WORKER_CHECK_S": CHECK_S}


def test_a_worker_killed_during_training_leaves_the_job_to_the_other_worker(project, users, tmp_path, s3):
    from projects import services_training
    from projects.models import TrainedModel
    from workers.tasks import run_job

    actor = prepare(project, users, epochs=120)
    run_job.run(services_training.features_start(project=project, actor=actor).id)
    workers = start_workers(tmp_path, s3, **FAST_RESTORE)
    try:
        t = services_training.train_start(project=project, actor=actor)
        wait_for(lambda: len(job(t.id).result.get("epochs", [])) >= 2, 90, "epochs to be reported", workers)
        killed_at = time.monotonic()
        killed = kill_worker_running(job(t.id), workers)
        done = wait_final(t.id, 120, workers)
        recovered = time.monotonic() - killed_at
        assert done.status == "succeeded", done.error
        assert worker_name(done) != killed and done.attempts == 2 and "attempt 2 of" in done.log
        assert TrainedModel.objects.filter(job=done).count() == 1
        wait_for(lambda: not nothing_left_running(), 90, "nothing left running", workers)
    finally:
        stop_all(workers)
    print(f"\nkill -9 during training: {killed} killed, the job finished on {worker_name(done)} "
          f"{recovered:.1f} s later (lost-worker check every {CHECK_S} s)")


def test_a_worker_killed_during_a_deployment_build_leaves_no_job_running(project, users, tmp_path, s3):
    from projects import services_deploy, services_training
    from projects.models import Deployment, TrainedModel
    from workers.tasks import run_job

    actor = prepare(project, users, epochs=20)
    run_job.run(services_training.features_start(project=project, actor=actor).id)
    t = services_training.train_start(project=project, actor=actor)
    run_job.run(t.id)
    model = TrainedModel.objects.get(job_id=t.id)
    from projects.models import Job

    # The chained optimize job was queued while no worker ran: leave it out of this test.
    for j in Job.objects.filter(status="queued"):
        Job.objects.filter(pk=j.pk).update(status="cancelled", message="not part of this test")
    workers = start_workers(tmp_path, s3, **FAST_RESTORE)
    try:
        d = services_deploy.deployment_start(project=project, actor=actor, model_id=model.id, target="arduino")
        wait_for(lambda: job(d.id).status == "running" and job(d.id).progress >= 0.3, 90,
                 "the build to be under way", workers)
        killed_at = time.monotonic()
        killed = kill_worker_running(job(d.id), workers)
        done = wait_final(d.id, 150, workers)
        recovered = time.monotonic() - killed_at
        assert done.status in ("succeeded", "failed")
        if done.status == "failed":
            assert done.error, "a failed job states its reason"
        else:
            assert worker_name(done) != killed and Deployment.objects.filter(job=done).count() == 1
        wait_for(lambda: not nothing_left_running(), 60, "nothing left running", workers)
    finally:
        stop_all(workers)
    print(f"\nkill -9 during an Arduino build: {killed} killed, job {done.status} on {worker_name(done)} "
          f"{recovered:.1f} s later {done.error[:200]}")


def restart_test_redis() -> float:
    """Stop the suite's Redis (SIGTERM: it writes its append-only file) and start it again on the same port
    and data; returns how long Redis was away."""
    from urllib.parse import urlparse

    from studio import devservices, pytest_plugin

    old = pytest_plugin._redis_proc
    port = urlparse(os.environ["REDIS_URL"]).port
    data_dir = Path(os.environ["STUDIO_VAR_DIR"]) / "redis"
    down = time.monotonic()
    old.terminate()
    old.wait(timeout=20)
    time.sleep(2)  # away long enough for every client to see the connection fail
    new = subprocess.Popen(devservices.redis_command(port, data_dir), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    devservices.wait_for_port(port, timeout=20)
    pytest_plugin._redis_proc = new  # the plugin's exit hook stops this one
    # This process's pooled broker connections still point at the old server: later tests must not get one.
    from studio.celery import reset_broker_pools

    reset_broker_pools()
    return time.monotonic() - down


def test_a_redis_restart_during_training_lets_the_job_finish_and_its_page_shows_it(
        project, users, tmp_path, s3, api, client_for):
    from projects import services_training
    from workers.tasks import run_job

    try:
        from studio import pytest_plugin
    except ImportError:
        pytest.skip("the suite's Redis is not started by studio.pytest_plugin")
    if getattr(pytest_plugin, "_redis_proc", None) is None:
        pytest.skip("REDIS_URL points at an external Redis; not restarting it")
    actor = prepare(project, users, epochs=60)
    run_job.run(services_training.features_start(project=project, actor=actor).id)
    workers = start_workers(tmp_path, s3, names=("w1",))
    try:
        t = services_training.train_start(project=project, actor=actor)
        wait_for(lambda: len(job(t.id).result.get("epochs", [])) >= 2, 90, "epochs to be reported", workers)
        away = restart_test_redis()
        done = wait_final(t.id, 120, workers)
        assert done.status == "succeeded", done.error
        body = api("bob").get(f"/api/v1/jobs/{t.id}").json()
        assert body["status"] == "succeeded" and body["finished_at"]
        page = client_for("bob").get(f"/projects/{project.id}/jobs/{t.id}")
        assert page.status_code == 200 and "succeeded" in page.content.decode()
        # The worker reconnected: a new job after the restart runs too.
        again = services_training.model_test_start(project=project, actor=actor)
        assert wait_final(again.id, 90, workers).status == "succeeded", job(again.id).error
        wait_for(lambda: not nothing_left_running(), 60, "nothing left running", workers)
    finally:
        stop_all(workers)
    print(f"\nRedis restart during training: away {away:.1f} s; the job finished ({len(done.result['epochs'])} "
          f"epochs), attempts {done.attempts}")
