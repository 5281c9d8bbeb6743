"""An image impulse with a MobileNetV2 transfer-learning block: refused until its weights are installed
(or from scratch is chosen explicitly), then trained through the job with the installed weights file."""

from __future__ import annotations

import numpy as np
import pytest

from projects.ingestion import ParsedSample
from projects.models import Job, TrainedModel
from projects.services_samples import sample_create
from workers.ml.samples import Image
from workers.tasks import run_job

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(autouse=True)
def dirs(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STUDIO_PRETRAINED_DIR = tmp_path / "pretrained"
    settings.STUDIO_PRETRAINED_DIR.mkdir()


def add_images(project, size: int) -> None:
    rng = np.random.default_rng(0)
    for label, channel in (("red", 0), ("blue", 2)):
        for k in range(6):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            pixels[:, :, channel] = 200 + rng.integers(0, 50, (size, size))
            parsed = ParsedSample(
                payload=Image(pixels=pixels),
                kind="image",
                device_name=None,
                device_type=None,
                sensors=(),
                raw_extension="png",
                signed=False,
            )
            sample_create(
                project=project,
                category="training",
                label=label,
                file_name=f"{label}.{k}.png",
                parsed=parsed,
                log_activity=False,
            )


def spec(size: int, **extra) -> dict:
    return {
        "input": {"type": "image", "width": size, "height": size, "color": "rgb"},
        "dsp": [{"id": "image", "block": "image"}],
        "learn": [
            {
                "id": "mnv2",
                "block": "transfer",
                "inputs": ["image"],
                "transfer": {"alpha": 0.1, "image_size": size, "dense_units": 8},
                "settings": {"epochs": 3, "batch_size": 8, "validation_split": 0.25},
                **extra,
            }
        ],
    }


def test_transfer_needs_installed_weights_or_an_explicit_from_scratch(api, project, settings):
    add_images(project, 96)
    bad = spec(96)
    bad["input"]["width"] = 64
    r = api("bob").put(f"/api/v1/projects/{project.id}/impulse", bad, format="json")
    assert r.status_code == 400 and "96x96 RGB" in r.json()["detail"]
    assert (
        api("bob")
        .put(f"/api/v1/projects/{project.id}/impulse", spec(96), format="json")
        .status_code
        == 200
    )
    blocks = api("vic").get(f"/api/v1/projects/{project.id}/impulse").json()["blocks"]["learn"]
    assert next(b for b in blocks if b["name"] == "transfer")["installed"] == []
    features = (
        api("bob")
        .post(f"/api/v1/projects/{project.id}/jobs", {"kind": "features"}, format="json")
        .json()
    )
    run_job.run(features["id"])
    r = api("bob").post(f"/api/v1/projects/{project.id}/jobs", {"kind": "train"}, format="json")
    # (training from scratch, chosen with "from_scratch": true, is tested in tests/workers/ml/learn)
    assert (
        r.status_code == 400
        and "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.1_96_no_top.h5" in r.json()["detail"]
        and "from_scratch" in r.json()["detail"]
    )

    # an admin installs a weights file of the right shape (here: a base trained on nothing in particular)
    from workers.ml.learn.transfer import build_mobilenet_v2, save_base_weights

    base = build_mobilenet_v2((96, 96, 3), 0.1)
    path = (
        settings.STUDIO_PRETRAINED_DIR
        / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.1_96_no_top.h5"
    )
    save_base_weights(base, path)
    blocks = api("vic").get(f"/api/v1/projects/{project.id}/impulse").json()["blocks"]["learn"]
    assert next(b for b in blocks if b["name"] == "transfer")["installed"] == [
        {"backbone": "mobilenetv2", "alpha": 0.1, "image_size": 96}
    ]
    r = api("bob").post(f"/api/v1/projects/{project.id}/jobs", {"kind": "train"}, format="json")
    assert r.status_code == 202, r.json()
    run_job.run(r.json()["id"])
    job = Job.objects.get(pk=r.json()["id"])
    assert job.status == "succeeded", job.error
    model = TrainedModel.objects.get(pk=job.result["model_id"])
    assert model.labels == ["blue", "red"] and len(model.history["loss"]) == 3
    assert model.metrics["evaluated_on"] == "validation"
