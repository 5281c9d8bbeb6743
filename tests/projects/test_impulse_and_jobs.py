"""The impulse API (versioning, checks against the engine's blocks and the data's axes) and the features,
train and test jobs run in-process through the same task a worker runs: results, models, bad input."""

from __future__ import annotations

import pytest

from projects.models import Activity, FeatureSet, Impulse, Job, TrainedModel
from tests.helpers.gestures import add_samples, impulse_spec
from workers.tasks import run_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def put_impulse(api, project, spec, who="bob"):
    return api(who).put(f"/api/v1/projects/{project.id}/impulse", spec, format="json")


def start(api, project, kind, who="bob", **extra):
    return api(who).post(
        f"/api/v1/projects/{project.id}/jobs", {"kind": kind, **extra}, format="json"
    )


def run(job_id: int) -> Job:
    run_job.run(job_id)
    return Job.objects.get(pk=job_id)


def test_a_saved_impulse_gets_a_new_version_only_when_it_changes(api, project):
    add_samples(project, per_label=1)
    first = put_impulse(api, project, impulse_spec())
    assert first.status_code == 200, first.json()
    assert first.json()["version"] == 1 and first.json()["created"]
    again = put_impulse(api, project, impulse_spec())
    assert again.json() == first.json() | {"created": False}
    changed = put_impulse(api, project, impulse_spec(epochs=5))
    assert changed.json()["version"] == 2
    got = api("vic").get(f"/api/v1/projects/{project.id}/impulse").json()
    assert got["version"] == 2 and got["axes"] == ["accX", "accY", "accZ"]
    assert got["spec"]["learn"][0]["settings"]["epochs"] == 5
    assert (
        got["spec"]["dsp"][0]["params"]["fft_length"] == 64
    )  # defaults filled in, given values kept
    assert {b["name"] for b in got["blocks"]["dsp"]} >= {"spectral-analysis", "mfcc", "image"}
    assert Activity.objects.filter(project=project, verb="impulse.saved").count() == 2


@pytest.mark.parametrize(
    "change, field, words",
    [
        (lambda s: s["dsp"][0].update(block="fourier"), "dsp[0].block", "unknown processing block"),
        (lambda s: s["dsp"][0].update(axes=["accX", "gyrQ"]), "dsp[0].axes", "no axis 'gyrQ'"),
        (lambda s: s["dsp"][0]["params"].update(fft_length=100), "dsp[0].params", "power of two"),
        (
            lambda s: s["dsp"][0]["params"].update(filter_cutoff=-1.0),
            "dsp[0].params",
            "filter_cutoff",
        ),
        (lambda s: s["dsp"][0]["params"].update(fft_length=0), "dsp[0].params", "fft_length"),
        (lambda s: s["learn"][0].update(block="svm"), "learn[0].block", "unknown learning block"),
        (
            lambda s: s["learn"][0].update(inputs=["mfcc"]),
            "learn[0].inputs",
            "no processing block 'mfcc'",
        ),
        (lambda s: s["learn"][0]["settings"].update(epochs=0), "learn[0]", "epochs"),
        (lambda s: s["input"].update(window_size_ms=-5), "input", "window_size_ms"),
        (
            lambda s: s.update(
                dsp=[
                    {
                        "block": "mfe",
                        "axes": ["accX"],
                        "params": {"num_filters": 300, "frame_length": 0.5, "frame_stride": 0.25},
                    }
                ]
            ),
            "dsp[0].params",
            "FFT bins",
        ),
    ],
)
def test_a_bad_impulse_is_refused_naming_the_field_and_nothing_changes(
    api, project, change, field, words
):
    add_samples(project, per_label=1)
    put_impulse(api, project, impulse_spec())
    spec = impulse_spec()
    change(spec)
    r = put_impulse(api, project, spec)
    assert r.status_code == 400, r.json()
    assert r.json()["field"] == field and words in r.json()["detail"]
    assert list(Impulse.objects.filter(project=project).values_list("version", flat=True)) == [1]


def test_viewers_may_read_but_not_change_the_impulse_or_start_jobs(api, project):
    assert put_impulse(api, project, impulse_spec(), who="vic").status_code == 403
    assert start(api, project, "features", who="vic").status_code == 403
    assert api("charlie").get(f"/api/v1/projects/{project.id}/impulse").status_code == 404


def test_features_then_training_then_testing_gives_a_model_with_metrics_and_test_results(
    api, project
):
    add_samples(project, per_label=4)
    add_samples(project, per_label=2, category="testing", seed=7)
    put_impulse(api, project, impulse_spec(epochs=30))
    assert start(api, project, "train").json()["detail"].startswith("generate features")

    r = start(api, project, "features")
    assert (
        r.status_code == 202 and r.json()["status"] == "queued" and r.json()["impulse_version"] == 1
    )
    job = run(r.json()["id"])
    assert job.status == "succeeded", job.error
    assert job.attempts == 1 and job.progress == 1.0 and len(job.snapshot) == 18
    explorer = job.result["explorer"]
    assert explorer["labels"] == ["idle", "shake", "wave"]
    # 12 training samples of 3 s, 1 s windows every 0.5 s: 5 windows each
    assert job.result["windows"] == 60 and len(explorer["points"]) == 60
    assert job.result["cache"] == {"hits": 0, "misses": 18}
    assert FeatureSet.objects.count() == 18

    again = run(start(api, project, "features").json()["id"])
    assert again.result["cache"] == {"hits": 18, "misses": 0}
    assert api("vic").get(f"/api/v1/projects/{project.id}/features").json()["job"] == again.id

    train = run(start(api, project, "train").json()["id"])
    assert train.status == "succeeded", train.error
    assert len(train.result["epochs"]) == 30 and {"loss", "accuracy", "val_loss"} <= set(
        train.result["epochs"][0]
    )
    model = TrainedModel.objects.get(pk=train.result["model_id"])
    assert model.labels == ["idle", "shake", "wave"] and model.impulse.version == 1
    assert model.metrics["accuracy"] >= 0.9
    assert (
        sum(map(sum, model.metrics["confusion_matrix"])) == 15
    )  # a quarter of 60 windows validate
    assert model.anomaly["threshold"] > 0 and model.keras_path
    assert len(model.history["loss"]) == 30
    detail = api("vic").get(f"/api/v1/trained-models/{model.id}").json()
    assert detail["metrics"]["per_class"]["wave"]["f1"] >= 0.5

    tested = run(start(api, project, "test").json()["id"])
    assert tested.status == "succeeded", tested.error
    assert tested.result["accuracy"] >= 0.8 and tested.result["samples"] == 6
    model.refresh_from_db()
    first = model.test_results["per_sample"][0]
    assert len(first["timeline"]) == 5 and len(first["timeline"][0]["scores"]) == 3
    assert "anomaly" in first["timeline"][0]


def test_training_needs_two_labels_and_testing_needs_testing_data(api, project):
    add_samples(project, per_label=3, labels=("idle",))
    put_impulse(api, project, impulse_spec())
    run(start(api, project, "features").json()["id"])
    r = start(api, project, "train")
    assert r.status_code == 400 and "at least two labels" in r.json()["detail"]
    assert start(api, project, "test").json()["detail"] == "train a model before testing it"
    TrainedModel.objects.create(
        project=project, impulse=Impulse.objects.get(project=project), labels=["a", "b"]
    )
    r = start(api, project, "test")
    assert r.status_code == 400 and "no testing data" in r.json()["detail"]


def test_a_window_longer_than_every_sample_names_them_and_no_job_is_made(api, project):
    add_samples(project, per_label=1, seconds=0.5)
    spec = impulse_spec(window_ms=2000)
    spec["input"]["zero_pad"] = False
    put_impulse(api, project, spec)
    r = start(api, project, "features")
    assert r.status_code == 400 and r.json()["field"] == "input.window_size_ms"
    assert "idle.0000.json" in r.json()["detail"] and "wave.0000.json" in r.json()["detail"]
    assert not Job.objects.exists()


def test_a_frequency_above_the_data_rate_is_refused(api, project):
    add_samples(project, per_label=1, hz=50)
    r = put_impulse(api, project, impulse_spec(frequency_hz=200))
    assert (
        r.status_code == 400
        and r.json()["field"] == "input.frequency_hz"
        and "50 Hz" in r.json()["detail"]
    )


def test_cancelling_a_queued_job_cancels_it_and_a_finished_job_answers_409(api, project):
    add_samples(project, per_label=2)
    put_impulse(api, project, impulse_spec())
    job_id = start(api, project, "features").json()["id"]
    assert api("vic").post(f"/api/v1/jobs/{job_id}/cancel").status_code == 403
    r = api("bob").post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (
        run(job_id).status == "cancelled"
    )  # the delivered task finds it cancelled and does nothing
    r = api("bob").post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 409 and "already cancelled" in r.json()["detail"]
    listed = api("vic").get(f"/api/v1/projects/{project.id}/jobs").json()
    assert [j["id"] for j in listed] == [job_id]
    assert api("charlie").get(f"/api/v1/jobs/{job_id}").status_code == 404


def test_a_job_on_a_deleted_project_is_404_and_its_task_does_nothing(api, project):
    add_samples(project, per_label=2)
    put_impulse(api, project, impulse_spec())
    job_id = start(api, project, "features").json()["id"]
    project_id = project.id
    assert api("alice").delete(f"/api/v1/projects/{project_id}").status_code == 204
    assert start(api, project, "features").status_code == 404
    assert api("alice").get(f"/api/v1/jobs/{job_id}").status_code == 404
    run_job.run(job_id)  # no row: nothing to do, no error
    assert not Job.objects.filter(pk=job_id).exists()


def test_an_unreadable_sample_fails_the_job_naming_it(api, project):
    samples = add_samples(project, per_label=2)
    put_impulse(api, project, impulse_spec())
    bad = samples[0]
    from projects.storage import delete_quietly

    delete_quietly(bad.payload_path)
    job = run(start(api, project, "features").json()["id"])
    assert job.status == "failed" and f"sample {bad.id} ({bad.file_name})" in job.error


def test_the_pages_render_the_latest_jobs_and_model(api, project, client_for):
    add_samples(project, per_label=3)
    put_impulse(api, project, impulse_spec(epochs=3))
    features = run(start(api, project, "features").json()["id"])
    train = run(start(api, project, "train").json()["id"])
    viewer = client_for("vic")
    pages = {
        f"/projects/{project.id}/impulse": [
            b"Generate features",
            b"features-result",
            b'"explorer"',
        ],
        f"/projects/{project.id}/training": [
            b"model-data",
            b"confusion_matrix",
            b"uPlot.iife.min.js",
        ],
        f"/projects/{project.id}/model-testing": [b"Classify all", b"model-data"],
        f"/projects/{project.id}/jobs": [
            f"#{features.id}".encode(),
            f"#{train.id}".encode(),
            b"succeeded",
        ],
        f"/projects/{project.id}/jobs/{train.id}": [b"job-data", b"epoch"],
    }
    for url, needles in pages.items():
        r = viewer.get(url)
        assert r.status_code == 200, url
        for needle in needles:
            if needle in (b"Generate features", b"Classify all"):
                assert needle not in r.content, f"{url} offers a viewer an editor's button"
            else:
                assert needle in r.content, (url, needle)
    assert b"Generate features" in client_for("bob").get(f"/projects/{project.id}/impulse").content
    assert client_for("charlie").get(f"/projects/{project.id}/jobs/{train.id}").status_code == 404


def test_the_suggested_impulse_is_valid_for_motion_audio_and_image_projects(api, project, users):
    import numpy as np

    from projects import services
    from projects.ingestion import ParsedSample
    from projects.services_samples import sample_create
    from workers.ml.samples import Image, Sensor, TimeSeries

    audio = TimeSeries(
        values=np.sin(np.arange(16000) / 5) * 3000,
        interval_ms=1000 / 16000,
        sensors=(Sensor("audio", "wav"),),
    )
    image = Image(pixels=np.zeros((40, 30, 3), np.uint8))
    payloads = {"motion": None, "audio": (audio, "audio", "wav"), "images": (image, "image", "png")}
    for kind, made in payloads.items():
        p = services.project_create(owner=users["bob"], name=kind)
        if made is None:
            add_samples(p, per_label=1)
        else:
            payload, sample_kind, ext = made
            parsed = ParsedSample(
                payload=payload,
                kind=sample_kind,
                device_name=None,
                device_type=None,
                sensors=getattr(payload, "sensors", ()),
                raw_extension=ext,
                signed=False,
            )
            sample_create(
                project=p, category="training", label="a", file_name=f"a.1.{ext}", parsed=parsed
            )
        suggested = api("bob").get(f"/api/v1/projects/{p.id}/impulse").json()
        assert suggested["saved"] is False
        r = put_impulse(api, p, suggested["spec"])
        assert r.status_code == 200, (kind, r.json())
