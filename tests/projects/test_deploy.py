"""Optimization table and deployment jobs run in-process through the worker's task: a tiny gesture model
trained in the studio gets its float32/int8/pruned/pruned+int8 table, and every target builds, verifies and
downloads; bad requests are refused naming the problem."""
from __future__ import annotations

import hashlib

import pytest

from projects.models import Deployment, Job, TrainedModel
from projects.services import Actor
from projects.services_impulse import impulse_save
from projects import services_training
from tests.helpers.gestures import add_samples, impulse_spec
from workers.tasks import run_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STUDIO_WORK_DIR = tmp_path / "work"


def run(job_id: int) -> Job:
    run_job.run(job_id)
    return Job.objects.get(pk=job_id)


def trained_model(project, users, *, epochs: int = 30, test: bool = True) -> TrainedModel:
    actor = Actor(user=users["bob"])
    add_samples(project, per_label=4)
    if test:
        add_samples(project, per_label=1, category="testing", seed=7)
    impulse_save(project=project, actor=actor, spec=impulse_spec(epochs=epochs, anomaly=False))
    assert run(services_training.features_start(project=project, actor=actor).id).status == "succeeded"
    job = run(services_training.train_start(project=project, actor=actor).id)
    assert job.status == "succeeded", job.error
    return TrainedModel.objects.get(pk=job.result["model_id"])


@pytest.mark.slow
def test_optimize_fills_the_variants_table_of_a_model(project, users, api):
    model = trained_model(project, users)
    queued = Job.objects.get(kind="optimize", params__model_id=model.id)  # chained after training
    job = run(queued.id)
    assert job.status == "succeeded", job.error + job.log
    model.refresh_from_db()
    table = model.variants
    print(table)
    assert table["evaluated_on"] == "test set"
    assert set(table["variants"]) == {"float32", "int8", "pruned", "pruned-int8"}


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tflite-float", "tflite-int8", "onnx-float", "onnx-int8", "arduino", "cpp"])
def test_each_target_deploys(project, users, api, target):
    model = trained_model(project, users)
    r = api("bob").post(f"/api/v1/projects/{project.id}/deployments", {"model": model.id, "target": target},
                        format="json")
    assert r.status_code == 202, r.json()
    job = run(r.json()["id"])
    assert job.status == "succeeded", job.error + job.log
    dep = Deployment.objects.get(pk=job.result["deployment_id"])
    print({k: v for k, v in dep.report.items() if k != "steps"}, [(s["name"], s["status"]) for s in dep.report["steps"]])
    assert dep.report["ok"]
    got = api("vic").get(f"/api/v1/deployments/{dep.id}/download")
    body = b"".join(got.streaming_content)
    assert hashlib.sha256(body).hexdigest() == dep.sha256
