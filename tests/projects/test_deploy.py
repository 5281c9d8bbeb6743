"""Deployment and optimization requests that must be refused (naming the problem), and a model whose op the C
generator lacks: its Arduino/C++ jobs fail naming the op while TFLite still deploys. Jobs run in-process
through the worker's task; the model is a small untrained Keras network on the gesture impulse's features."""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np
import pytest

from projects.models import Deployment, Job, TrainedModel
from projects.services import Actor
from projects.services_impulse import data_snapshot, impulse_save
from projects.storage import save_bytes
from tests.helpers.gestures import add_samples, impulse_spec
from workers.tasks import run_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STUDIO_WORK_DIR = tmp_path / "work"


def model_row(
    project,
    users,
    *,
    activation: str = "relu",
    keras: bool = True,
    anomaly: bool = False,
    anomaly_reads: str = "spectral",
) -> TrainedModel:
    """A TrainedModel on the gesture impulse with a hand-built (untrained) network: no training needed.
    With anomaly, the impulse has a k-means block fitted (engine API) on the training windows' features
    of `anomaly_reads` ("spectral", the classifier's block, or "stats", a flatten block of its own)."""
    import keras as k

    from workers.ml.pipeline import _output_size, parse_impulse

    add_samples(project, per_label=2)
    spec = impulse_spec(anomaly=anomaly)
    if anomaly_reads != "spectral":
        spec["dsp"].append({"id": anomaly_reads, "block": "flatten", "axes": ["accX", "accY"]})
        spec["learn"][1]["inputs"] = [anomaly_reads]
    row, _ = impulse_save(project=project, actor=Actor(user=users["bob"]), spec=spec)
    engine = parse_impulse(row.spec)
    kmeans_block = None
    if anomaly:
        from projects.models import Sample
        from projects.storage import read_bytes
        from workers.ml import samples as canonical
        from workers.ml.learn import anomaly as kmeans
        from workers.ml.pipeline import sample_features

        x = np.concatenate(
            [
                sample_features(canonical.decode(read_bytes(s.payload_path)), engine)[0][
                    anomaly_reads
                ]
                for s in Sample.objects.filter(project=project)
            ]
        )
        kmeans_block = kmeans.to_dict(kmeans.fit_kmeans(x, n_clusters=4)) | {
            "inputs": [anomaly_reads],
            "clusters": 4,
        }
    n = _output_size(engine.dsp[0], engine.input)
    path = ""
    if keras:
        k.utils.set_random_seed(0)
        net = k.Sequential(
            [
                k.Input((n,)),
                k.layers.Dense(8, activation=activation),
                k.layers.Dense(3, activation="softmax"),
            ]
        )
        with tempfile.TemporaryDirectory() as tmp:
            net.save(os.path.join(tmp, "m.keras"))
            with open(os.path.join(tmp, "m.keras"), "rb") as fh:
                path = save_bytes(f"projects/{project.id}/models/hand.keras", fh.read())
    return TrainedModel.objects.create(
        project=project,
        impulse=row,
        learn_block="classifier",
        labels=["idle", "shake", "wave"],
        keras_path=path,
        snapshot=data_snapshot(project, ("training",)),
        anomaly=kmeans_block,
    )


def deploy(api, project, body, who="bob"):
    return api(who).post(f"/api/v1/projects/{project.id}/deployments", body, format="json")


def test_a_target_that_does_not_exist_is_refused_naming_it(api, project, users):
    model = model_row(project, users, keras=False)
    r = deploy(api, project, {"model": model.id, "target": "coreml"})
    assert (
        r.status_code == 400 and r.json()["field"] == "target" and "'coreml'" in r.json()["detail"]
    )
    assert "tflite-int8" in r.json()["detail"] and not Job.objects.exists()


def test_a_model_that_is_missing_or_of_another_project_is_404(api, project, other_project, users):
    assert deploy(api, project, {"model": 999, "target": "cpp"}).status_code == 404
    theirs = TrainedModel.objects.create(
        project=other_project, labels=["a", "b"], keras_path="x.keras"
    )
    r = deploy(api, project, {"model": theirs.id, "target": "cpp"})
    assert r.status_code == 404 and r.json()["field"] == "model"
    assert (
        api("bob")
        .post(f"/api/v1/trained-models/{theirs.id}/optimize", {}, format="json")
        .status_code
        == 404
    )
    assert api("bob").get("/api/v1/deployments/12345/download").status_code == 404


def test_a_model_id_that_is_not_an_integer_and_a_model_without_network_are_refused(
    api, project, users
):
    r = deploy(api, project, {"model": "1", "target": "cpp"})
    assert r.status_code == 400 and r.json()["field"] == "model"
    anomaly_only = model_row(project, users, keras=False)
    r = deploy(api, project, {"model": anomaly_only.id, "target": "cpp"})
    assert r.status_code == 400 and "no neural network" in r.json()["detail"]
    r = api("bob").post(
        f"/api/v1/trained-models/{anomaly_only.id}/optimize", {"sparsity": 2}, format="json"
    )
    assert r.status_code == 400


def test_viewers_may_not_deploy_and_outsiders_see_nothing(api, project, users):
    model = model_row(project, users, keras=False)
    assert deploy(api, project, {"model": model.id, "target": "cpp"}, who="vic").status_code == 403
    assert (
        deploy(api, project, {"model": model.id, "target": "cpp"}, who="charlie").status_code == 404
    )
    assert api("charlie").get(f"/api/v1/projects/{project.id}/deployments").status_code == 404


@pytest.mark.slow
def test_an_op_the_c_generator_lacks_fails_the_c_targets_naming_it_while_tflite_deploys(
    api, project, users
):
    model = model_row(project, users, activation="tanh")
    for target in ("arduino", "cpp"):
        r = deploy(api, project, {"model": model.id, "target": target})
        assert r.status_code == 202, r.json()
        run_job.run(r.json()["id"])
        job = Job.objects.get(pk=r.json()["id"])
        assert job.status == "failed" and "TANH" in job.error and "TFLite and ONNX" in job.error, (
            job.error
        )
    assert not Deployment.objects.exists()
    r = deploy(api, project, {"model": model.id, "target": "tflite-int8"})
    run_job.run(r.json()["id"])
    job = Job.objects.get(pk=r.json()["id"])
    assert job.status == "succeeded", job.error
    dep = Deployment.objects.get()
    assert dep.report["ok"] and [s["name"] for s in dep.report["steps"]] == [
        "litert_vs_keras",
        "tflite_micro_vs_litert",
    ]
    assert dep.report["samples_from"] == "validation set"  # the project has no test data
    body = b"".join(api("vic").get(f"/api/v1/deployments/{dep.id}/download").streaming_content)
    assert hashlib.sha256(body).hexdigest() == dep.sha256 and body[4:8] == b"TFL3"


@pytest.mark.slow
def test_an_impulse_with_kmeans_deploys_to_arduino_with_the_anomaly_block_scored_like_python(
    api, project, users
):
    import io
    import zipfile

    from workers.ml.export.c_bundle import ANOMALY_ATOL, ANOMALY_RTOL, _c_float

    model = model_row(project, users, anomaly=True)
    r = deploy(api, project, {"model": model.id, "target": "arduino"})
    assert r.status_code == 202, r.json()
    run_job.run(r.json()["id"])
    job = Job.objects.get(pk=r.json()["id"])
    assert job.status == "succeeded", job.error
    dep = Deployment.objects.get(target="arduino")
    report = dep.report
    assert report["ok"], [(s["name"], s["status"], s["output"][-500:]) for s in report["steps"]]
    assert report["anomaly_block"] and "not part of this deployment" not in report["note"]
    assert "anomaly block (k-means, 4 clusters) is included" in report["note"]
    assert (report["anomaly_atol"], report["anomaly_rtol"]) == (ANOMALY_ATOL, ANOMALY_RTOL)
    for where in ("host", "qemu"):
        got = report[where]["anomaly"]
        assert got["windows"] == report["windows"] > 0 and got["within_tolerance"], got
    body = b"".join(api("vic").get(f"/api/v1/deployments/{dep.id}/download").streaming_content)
    z = zipfile.ZipFile(io.BytesIO(body))
    (header,) = [n for n in z.namelist() if n.endswith("_inferencing.h")]
    text = z.read(header).decode()
    assert "#define STUDIO_HAS_ANOMALY 1" in text
    assert f"#define STUDIO_ANOMALY_THRESHOLD {_c_float(model.anomaly['threshold'])}" in text
    (md,) = [n for n in z.namelist() if n.endswith("REPORT.md")]
    assert "anomaly block is included" in z.read(md).decode()

    # a TFLite file carries the network only, and says so
    r = deploy(api, project, {"model": model.id, "target": "tflite-int8"})
    run_job.run(r.json()["id"])
    tfl = Deployment.objects.get(target="tflite-int8")
    assert "anomaly block (k-means) is not part of this deployment" in tfl.report["note"]


@pytest.mark.slow
def test_a_kmeans_block_on_another_processing_block_is_left_out_of_the_c_bundle_and_said_so(
    api, project, users
):
    model = model_row(project, users, anomaly=True, anomaly_reads="stats")
    r = deploy(api, project, {"model": model.id, "target": "cpp"})
    run_job.run(r.json()["id"])
    job = Job.objects.get(pk=r.json()["id"])
    assert job.status == "succeeded", job.error
    report = Deployment.objects.get(target="cpp").report
    assert report["ok"] and report["anomaly_block"] is False
    assert report["note"] == (
        "the impulse's anomaly block (k-means) is not part of this deployment: it reads stats and "
        "the C bundle runs only spectral"
    )
