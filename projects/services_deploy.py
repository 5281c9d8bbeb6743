"""Optimization table (float32 / int8 / pruned / pruned+int8) and deployment bundles of trained models, as jobs.

`optimize` (chained after every successful training, or started by hand) converts the model four ways and
measures each file: accuracy on the test set (or the validation split when the project has no test data),
size, TFLite Micro arena, flash, host latency (LiteRT) and a Cortex-M4F estimate from the MAC count; the
table goes to ``TrainedModel.variants`` and the files to ``projects/<id>/models/<model>/<variant>.tflite``.

`deploy` builds one target (DeploymentTarget), runs its verification and stores the file with a
Deployment row (size, sha256, report). Verification per target: TFLite float — LiteRT vs Keras; TFLite
int8 — LiteRT vs Keras and tflite-micro vs LiteRT; ONNX — ONNX Runtime vs Keras; Arduino / C++ —
`verify_c_bundle` on the first test windows (raw signal → C DSP → C int8 engine and C k-means anomaly score,
compared with the Python features, LiteRT's int8 outputs and the Python anomaly scores), whose REPORT.md /
REPORT.json ship inside the zip.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings as django_settings
from django.db import transaction

from workers import progress
from workers.ml import samples as canonical
from workers.ml.pipeline import Impulse as EngineImpulse
from workers.ml.pipeline import ImpulseError, learn_input, parse_impulse, sample_windows

from .models import Category, Deployment, DeploymentTarget, Job, Project, Sample, TrainedModel
from .services import Actor, ServiceError, activity_log
from .services_impulse import data_snapshot
from .services_jobs import CancelWatch, Claim, job_enqueue, job_running_of_kind
from .services_training import _sample_name, gather_features, load_keras
from .storage import delete_quietly, project_prefix, read_bytes, save_bytes

log = logging.getLogger(__name__)

VARIANTS = ("float32", "int8", "pruned", "pruned-int8")
DEFAULT_SPARSITY = 0.5
VERIFY_WINDOWS = 10  # test windows compiled into a C bundle and checked on host and QEMU
ONNX_INT8_MIN_AGREEMENT = (
    0.9  # top-1 agreement of the int8 ONNX model with Keras for a green report
)
TARGET_EXTENSIONS = {
    "tflite-float": "tflite",
    "tflite-int8": "tflite",
    "onnx-float": "onnx",
    "onnx-int8": "onnx",
    "arduino": "zip",
    "cpp": "zip",
}
TARGETS = tuple(t.value for t in DeploymentTarget)

MEASUREMENT_NOTES = {
    "accuracy": "top-1 accuracy of the .tflite file run in LiteRT on every window of the {evaluated_on}",
    "size": "bytes of the .tflite file (gzip: the same file compressed, where pruning's zeros pay off)",
    "ram": "peak tensor arena tflite-micro allocates for the model (its recording allocator, measured in a "
    "subprocess); the C bundle's arena (int8) is planned statically and shown beside it",
    "flash": "the model as a byte array in flash = the file size; for int8 variants also the generated C "
    "engine + weights compiled with arm-none-eabi-gcc -Os for Cortex-M4F (text + data of "
    "arm-none-eabi-size), without DSP and start-up code",
    "latency_host": "median of 50 LiteRT invocations on this server's CPU, 1 thread, after 5 warm-up runs",
    "latency_m4": "estimate, not a measurement: MACs × cycles per MAC / 64 MHz (nRF52840, Arduino Nano 33 "
    "BLE); 1.5 cycles per MAC for int8 (CMSIS-NN-like kernels), 6 for float32",
}


# --- what a job needs of a trained model ---------------------------------------------------------


@dataclass
class ModelData:
    model: TrainedModel
    engine: EngineImpulse
    keras: object
    labels: list[str]
    classify: bool
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    evaluated_on: str
    test_items: list  # SampleFeatures of the testing set (may be empty)


def _model_of(project: Project, model_id) -> TrainedModel:
    if isinstance(model_id, bool) or not isinstance(model_id, int):
        raise ServiceError(
            f"model must be the integer id of a trained model, got {model_id!r}", field="model"
        )
    model = (
        TrainedModel.objects.filter(project=project, pk=model_id).select_related("impulse").first()
    )
    if model is None:
        raise ServiceError(
            f"no trained model {model_id} in this project", status=404, field="model"
        )
    if not model.keras_path:
        raise ServiceError(
            f"model {model_id} has no neural network (anomaly detection only) to optimize or "
            "deploy",
            field="model",
        )
    if model.impulse is None:
        raise ServiceError(f"the impulse of model {model_id} was deleted", field="model")
    return model


def _targets(labels: list[str], y: list[str], classify: bool) -> np.ndarray:
    if classify:
        index = {name: i for i, name in enumerate(labels)}
        return np.array([index.get(v, -1) for v in y], np.int64)
    return np.array([float(v) for v in y], np.float32)


def _items_xy(items, engine: EngineImpulse, labels, classify) -> tuple[np.ndarray, np.ndarray]:
    step = engine.classifier
    if not items:
        return np.zeros((0, 0), np.float32), np.zeros(0)
    feats = {s.id: np.concatenate([it.features[s.id] for it in items]) for s in engine.dsp}
    y = [it.sample.label for it in items for _ in it.starts]
    return learn_input(feats, step), _targets(labels, y, classify)


def model_data(
    job: Job, model: TrainedModel, watch: CancelWatch | None, *, span=(0.0, 0.3)
) -> ModelData:
    """Load the Keras model and the features of its training snapshot and of the project's test set."""
    from workers.ml.learn.train import split_validation

    engine = parse_impulse(model.impulse.spec)
    step = engine.classifier
    if step is None:
        raise ImpulseError("the model's impulse has no classifier or regression block", "learn")
    classify = step.block != "regression"  # classifier or transfer (an image classifier)
    labels = list(model.labels)
    ids = [sid for sid, _ in model.snapshot]
    rows = {s.id: s for s in Sample.objects.filter(project=model.project, pk__in=ids)}
    train_samples = [rows[i] for i in ids if i in rows]
    if not train_samples:
        raise ImpulseError("the training samples of this model were deleted", "data")
    mid = (span[0] + span[1]) / 2
    train_items, _ = gather_features(
        job, engine, train_samples, watch, span=(span[0], mid), what="training features"
    )
    x_train, y_train = _items_xy(train_items, engine, labels, classify)
    test_samples = list(
        Sample.objects.filter(
            project=model.project, enabled=True, category=Category.TESTING
        ).order_by("id")
    )
    test_items = []
    if test_samples:
        try:
            test_items, _ = gather_features(
                job, engine, test_samples, watch, span=(mid, span[1]), what="test features"
            )
        except (
            ImpulseError
        ) as exc:  # test data that does not fit: fall back to the validation split
            progress.report(job.id, log_line=f"test data left out: {exc.message}")
    if classify:
        test_items = [it for it in test_items if it.sample.label in labels]
    if test_items:
        x_eval, y_eval = _items_xy(test_items, engine, labels, classify)
        evaluated_on = "test set"
    else:
        rng = np.random.default_rng(step.settings.seed)
        _, val = split_validation(
            y_train if classify else np.zeros(len(y_train)),
            step.settings.validation_split,
            rng,
            classify,
        )
        if len(val):
            x_eval, y_eval, evaluated_on = x_train[val], y_train[val], "validation set"
        else:
            x_eval, y_eval, evaluated_on = x_train, y_train, "training set"
    return ModelData(
        model=model,
        engine=engine,
        keras=load_keras(model.keras_path),
        labels=labels,
        classify=classify,
        x_train=x_train,
        y_train=y_train,
        x_eval=x_eval,
        y_eval=y_eval,
        evaluated_on=evaluated_on,
        test_items=test_items,
    )


# --- optimize ------------------------------------------------------------------------------------


def optimize_start(
    *,
    project: Project,
    actor: Actor | None,
    model_id,
    sparsity: float = DEFAULT_SPARSITY,
    prune_epochs: int | None = None,
) -> Job:
    """Queue the optimization table of a trained model (float32 / int8 / pruned / pruned+int8)."""
    model = _model_of(project, model_id)
    if (
        isinstance(sparsity, bool)
        or not isinstance(sparsity, (int, float))
        or not 0 < sparsity <= 0.95
    ):
        raise ServiceError(
            f"sparsity must be a number in (0, 0.95], got {sparsity!r}", field="sparsity"
        )
    if prune_epochs is not None and (
        isinstance(prune_epochs, bool)
        or not isinstance(prune_epochs, int)
        or not 0 <= prune_epochs <= 500
    ):
        raise ServiceError(
            f"prune_epochs must be an integer in 0..500, got {prune_epochs!r}", field="prune_epochs"
        )
    running = Job.objects.filter(
        project=project,
        kind="optimize",
        status__in=("queued", "running"),
        params__model_id=model.id,
    ).first()
    if running is not None:
        raise ServiceError(f"job {running.id} is already optimizing model {model.id}", status=409)
    params = {"model_id": model.id, "sparsity": float(sparsity)}
    if prune_epochs is not None:
        params["prune_epochs"] = prune_epochs
    return job_enqueue(
        project=project,
        actor=actor,
        kind="optimize",
        impulse=model.impulse,
        params=params,
        snapshot=data_snapshot(project, (Category.TESTING,)),
    )


def optimize_after_training(*, model_id: int) -> Job | None:
    """Called when a train job succeeded: queue the optimization table so the model page has it at once.

    Off with STUDIO_AUTO_OPTIMIZE=0 (environment or settings). Never fails the training job."""
    flag = os.environ.get(
        "STUDIO_AUTO_OPTIMIZE", str(getattr(django_settings, "STUDIO_AUTO_OPTIMIZE", "1"))
    )
    if flag.lower() in ("0", "false", "no", "off"):
        return None
    model = TrainedModel.objects.filter(pk=model_id).select_related("project", "impulse").first()
    if model is None or not model.keras_path:
        return None
    try:
        return optimize_start(project=model.project, actor=None, model_id=model.id)
    except ServiceError as exc:
        log.info("no optimization after training model %s: %s", model_id, exc.message)
        return None


def _metric(metrics: dict, classify: bool) -> dict:
    if classify:
        return {"accuracy": round(float(metrics["accuracy"]), 4)}
    return {"mse": round(float(metrics["mse"]), 6), "mae": round(float(metrics["mae"]), 6)}


def arm_c_flash(model_bytes: bytes) -> dict | None:
    """Flash and RAM of the generated C engine (int8 .tflite) built for Cortex-M4F, or None without a
    cross compiler. Each source is compiled to an object; text+data is flash, bss+data is RAM."""
    from workers.ml.export.c_bundle import ARM_FLAGS
    from workers.ml.export.cgen import generate_c

    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("arm-none-eabi-size")):
        return None
    cmodel = generate_c(model_bytes, prefix="model")
    with tempfile.TemporaryDirectory(prefix="armsize-") as tmp:
        cmodel.write(tmp)
        objects = []
        for src in sorted(Path(tmp).rglob("*.c")):
            obj = src.with_suffix(".o")
            proc = subprocess.run(
                [
                    "arm-none-eabi-gcc",
                    *ARM_FLAGS.split(),
                    "-std=c99",
                    f"-I{src.parent}",
                    f"-I{tmp}",
                    "-c",
                    str(src),
                    "-o",
                    str(obj),
                ],
                check=False,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if proc.returncode != 0:
                raise ServiceError(f"arm-none-eabi-gcc failed on {src.name}: {proc.stderr[-500:]}")
            objects.append(str(obj))
        out = subprocess.run(
            ["arm-none-eabi-size", "-t", *objects],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        total = out.stdout.strip().splitlines()[-1].split()
        text, data, bss = int(total[0]), int(total[1]), int(total[2])
    return {"flash": text + data, "ram": data + bss, "arena": int(cmodel.arena_size)}


def measure_variant(model_bytes: bytes, data: ModelData, *, int8: bool) -> dict:
    """One row of the optimization table (see MEASUREMENT_NOTES for how each figure is obtained)."""
    from workers.ml import profile

    labels = data.labels if data.classify else []
    row: dict = {
        "size": len(model_bytes),
        "size_gzip": len(gzip.compress(model_bytes, 9)),
        "flash": len(model_bytes),
    }
    if len(data.x_eval):
        row |= _metric(
            profile.evaluate_tflite(model_bytes, data.x_eval, data.y_eval, labels), data.classify
        )
    row["ram"] = profile.tflm_arena_bytes(model_bytes)
    lat = profile.latency_tflite(model_bytes, runs=50, threads=1)
    row["latency_host_ms"] = round(lat["p50_ms"], 4)
    row["latency_host_p99_ms"] = round(lat["p99_ms"], 4)
    macs = profile.count_macs(model_bytes)
    cycles = 1.5 if int8 else 6.0
    row["macs"] = macs
    row["latency_m4_ms"] = round(
        profile.cortex_m4_estimate_ms(macs, mhz=64, cycles_per_mac=cycles), 4
    )
    row["m4_cycles_per_mac"] = cycles
    if int8:
        try:
            c = arm_c_flash(model_bytes)
        except Exception as exc:  # noqa: BLE001 - an op the C generator lacks, or no C build: TFLite figures stand
            row["c_build"] = f"not available: {exc}"
        else:
            if c is not None:
                row["c_flash"], row["c_ram"], row["c_arena"] = c["flash"], c["ram"], c["arena"]
    return row


def _variant_path(model: TrainedModel, job: Job, name: str) -> str:
    return f"{project_prefix(model.project_id)}/models/{model.id}/job-{job.id}/{name}.tflite"


def optimize_run(claim: Claim, watch: CancelWatch) -> dict:
    from workers.ml import optimize

    job = claim.job
    model = (
        TrainedModel.objects.filter(pk=job.params.get("model_id"), project=job.project)
        .select_related("impulse", "project")
        .first()
    )
    if model is None:
        raise ImpulseError("the model to optimize was deleted", "model")
    sparsity = float(job.params.get("sparsity", DEFAULT_SPARSITY))
    data = model_data(job, model, watch, span=(0.0, 0.2))
    step = data.engine.classifier
    epochs = job.params.get("prune_epochs")
    if epochs is None:
        # An image backbone fine-tunes for minutes per epoch on a CPU: a few epochs recover it.
        cap = 5 if step.block == "transfer" else 30
        epochs = int(min(cap, max(3, step.settings.epochs // 2)))
    progress.report(
        job.id,
        0.2,
        f"{len(data.x_train)} training windows; evaluating on the {data.evaluated_on} "
        f"({len(data.x_eval)} windows)",
    )
    files: dict[str, bytes] = {}
    files["float32"] = optimize.to_tflite_float(data.keras)
    watch.check()
    files["int8"] = optimize.to_tflite_int8(data.keras, data.x_train)
    watch.check()
    progress.report(
        job.id, 0.3, f"pruning to {sparsity:.0%} sparsity with {epochs} epochs of fine-tuning"
    )
    y_fit = data.y_train
    keep = y_fit >= 0 if data.classify else np.ones(len(y_fit), bool)
    pruned = optimize.prune(
        data.keras,
        data.x_train[keep],
        y_fit[keep],
        sparsity=sparsity,
        epochs=epochs,
        settings=step.settings,
    )
    achieved = optimize.sparsity_of(pruned)
    files["pruned"] = optimize.to_tflite_float(pruned)
    files["pruned-int8"] = optimize.to_tflite_int8(pruned, data.x_train)
    rows: dict[str, dict] = {}
    for k, name in enumerate(VARIANTS):
        watch.check()
        progress.report(job.id, 0.45 + 0.5 * k / len(VARIANTS), f"measuring {name}")
        rows[name] = measure_variant(files[name], data, int8=name.endswith("int8"))
        if name.startswith("pruned"):
            rows[name]["sparsity"] = round(achieved, 4)
    watch.check()
    saved: list[str] = []
    try:
        with transaction.atomic():
            previous = TrainedModel.objects.select_for_update().get(pk=model.pk).variants or {}
            for name in VARIANTS:
                stored = save_bytes(_variant_path(model, job, name), files[name])
                saved.append(stored)
                rows[name]["path"] = stored
                rows[name]["sha256"] = hashlib.sha256(files[name]).hexdigest()
            table = {
                "job": job.id,
                "evaluated_on": data.evaluated_on,
                "eval_windows": len(data.x_eval),
                "metric": "accuracy" if data.classify else "mse",
                "sparsity_target": sparsity,
                "prune_epochs": epochs,
                "variants": rows,
                "notes": {
                    k: v.format(evaluated_on=data.evaluated_on)
                    for k, v in MEASUREMENT_NOTES.items()
                },
            }
            TrainedModel.objects.filter(pk=model.pk).update(variants=table)
            activity_log(
                project=job.project, actor=None, verb="model.optimized", model=model.id, job=job.id
            )
    except BaseException:
        delete_quietly(*saved)
        raise
    # The previous table's files are replaced only once the new table is committed.
    delete_quietly(*[(r or {}).get("path", "") for r in (previous.get("variants") or {}).values()])
    progress.report(job.id, 1.0, "optimization table ready")
    return {
        "model_id": model.id,
        "evaluated_on": data.evaluated_on,
        "variants": {
            k: {m: v for m, v in r.items() if m not in ("path",)} for k, r in rows.items()
        },
    }


# --- deploy --------------------------------------------------------------------------------------


def deployment_start(*, project: Project, actor: Actor, model_id, target) -> Job:
    """Queue a deployment build of a trained model for one target (verified before it is stored)."""
    if not isinstance(target, str) or target not in TARGETS:
        raise ServiceError(
            f"unknown target {target!r}; choose one of {', '.join(TARGETS)}", field="target"
        )
    model = _model_of(project, model_id)
    running = job_running_of_kind(project, ("deploy",))
    if (
        running is not None
        and running.params.get("model_id") == model.id
        and running.params.get("target") == target
    ):
        raise ServiceError(
            f"job {running.id} is already building {target} for model {model.id}", status=409
        )
    return job_enqueue(
        project=project,
        actor=actor,
        kind="deploy",
        impulse=model.impulse,
        params={"model_id": model.id, "target": target},
        snapshot=data_snapshot(project, (Category.TESTING,)),
    )


def _int8_file(model: TrainedModel, data: ModelData) -> bytes:
    """The int8 .tflite of the optimization table when it matches the model, else a fresh conversion."""
    from workers.ml import optimize

    row = (model.variants or {}).get("variants", {}).get("int8") or {}
    if row.get("path"):
        try:
            blob = read_bytes(row["path"])
            if hashlib.sha256(blob).hexdigest() == row.get("sha256"):
                return blob
        except (FileNotFoundError, OSError):
            pass
    return optimize.to_tflite_int8(data.keras, data.x_train)


def _raw_test_windows(data: ModelData, job: Job, n: int) -> tuple[np.ndarray, str]:
    """Raw windows [n, len, axes] of the classifier's DSP block: test samples first, else training."""
    step = data.engine.dsp_step(data.engine.classifier.inputs[0])
    where = "testing"
    samples = [it.sample for it in data.test_items]
    if not samples:
        where = "training"
        ids = [sid for sid, _ in data.model.snapshot]
        samples = list(Sample.objects.filter(project=job.project, pk__in=ids).order_by("id"))
    out = []
    for s in samples:
        try:
            payload = canonical.decode(read_bytes(s.payload_path))
        except (canonical.SampleError, FileNotFoundError):
            continue
        windows, _ = sample_windows(payload, data.engine, name=_sample_name(s))
        if not len(windows):
            continue
        cols = [list(payload.axes).index(a) for a in step.axes]
        out.append(windows[:, :, cols])
        if sum(len(w) for w in out) >= n:
            break
    if not out:
        raise ImpulseError("no sample gives a window to verify the bundle with", "data")
    return np.concatenate(out)[:n].astype(np.float32), where


def _c_anomaly(
    data: ModelData, dsp_id: str, feature_count: int
) -> tuple[dict | None, list[int] | None, str | None]:
    """(k-means model, its feature indices into the C DSP block's features, report note) for a C bundle.

    The bundle runs one processing block; an anomaly block reading another one is left out, and
    the note says so."""
    from workers.ml.export.c_bundle import ANOMALY_ATOL, ANOMALY_RTOL

    step = data.engine.anomaly
    if step is None or not data.model.anomaly:
        return None, None, None
    if any(i != dsp_id for i in step.inputs):
        return (
            None,
            None,
            f"the impulse's anomaly block (k-means) is not part of this deployment: it reads "
            f"{', '.join(step.inputs)} and the C bundle runs only {dsp_id}",
        )
    # pipeline.learn_input: the named DSP outputs side by side, here all the same block.
    index = [j for _ in step.inputs for j in range(feature_count)]
    a = data.model.anomaly
    return (
        a,
        index,
        f"the impulse's anomaly block (k-means, {len(a['centroids'])} clusters) is included: "
        f"run_classifier sets result.anomaly, STUDIO_ANOMALY_THRESHOLD is {a['threshold']:.4g}; "
        "verification compares its C scores with the Python engine's (within "
        f"{ANOMALY_ATOL:g} + {ANOMALY_RTOL:g} x |score| on the same features; run_classifier's "
        "also within the C features' distance from Python's)",
    )


def _c_bundle(
    data: ModelData, job: Job, target: str, model_bytes: bytes, workdir: str
) -> tuple[str, dict]:
    from workers.ml.export import c_bundle
    from workers.ml.export.arduino import build_arduino_library
    from workers.ml.export.cpp import build_cpp_library
    from workers.ml.export.verify import verify_c_bundle
    from workers.ml.pipeline import step_features
    from workers.ml.windows import window_length

    engine = data.engine
    clf = engine.classifier
    if engine.is_image:
        raise ServiceError(
            "C bundles take time-series impulses; deploy an image model as TFLite or ONNX",
            field="target",
        )
    if not data.classify:
        raise ServiceError(
            "C bundles hold classifiers; deploy a regression model as TFLite or ONNX",
            field="target",
        )
    if len(clf.inputs) != 1:
        raise ServiceError(
            f"the classifier takes {len(clf.inputs)} processing blocks ({', '.join(clf.inputs)}); "
            "the C bundle runs one: deploy as TFLite or ONNX",
            field="target",
        )
    step = engine.dsp_step(clf.inputs[0])
    windows, where = _raw_test_windows(data, job, VERIFY_WINDOWS)
    freq = float(engine.input.frequency_hz)
    dsp_params = dataclasses.asdict(step.params)
    # The Python pipeline's own features are the reference the C DSP must reproduce.
    feats = step_features(windows, list(step.axes), step, engine, name="verification windows")
    anomaly, anomaly_index, anomaly_note = _c_anomaly(data, step.id, feats.shape[1])
    kwargs = {
        "model_bytes": model_bytes,
        "project_name": job.project.name,
        "labels": data.labels,
        "dsp_block": step.block,
        "dsp_params": dsp_params,
        "frequency": freq,
        "window_len": window_length(engine.input),
        "axes": list(step.axes),
        "test_windows": windows,
        "anomaly": anomaly,
        "anomaly_feature_index": anomaly_index,
    }
    build = build_arduino_library if target == "arduino" else build_cpp_library
    zip_bytes = build(**kwargs)
    cm = c_bundle.generate_c(model_bytes, prefix="model")
    inputs_q = c_bundle.quantize_features(
        feats, scale=cm.input_scale, zero_point=cm.input_zero_point
    )
    expected = c_bundle.litert_outputs(model_bytes, inputs_q)
    expected_anomaly = (
        None
        if anomaly is None
        else c_bundle.reference_anomaly(anomaly, feats, feature_index=anomaly_index)
    )
    progress.report(
        job.id,
        0.6,
        f"verifying the bundle on {len(windows)} {where} windows (host gcc, "
        "Cortex-M4 size, Arduino stub, QEMU)",
    )
    report = verify_c_bundle(
        zip_bytes,
        windows=windows,
        expected_features=feats,
        expected_int8_outputs=expected,
        expected_anomaly=expected_anomaly,
        workdir=workdir,
        max_windows=VERIFY_WINDOWS,
    )
    report["windows_from"] = f"{where} set"
    if anomaly_note:
        report["note"] = anomaly_note
    keras_top = np.asarray(data.keras.predict(feats, verbose=0)).argmax(axis=1)
    report["keras_top1_agreement"] = float((expected.argmax(axis=1) == keras_top).mean())
    path = report.pop("bundle_with_report")
    for s in report["steps"]:
        s["output"] = (s.get("output") or "")[-3000:]
    return path, report


def _file_target(data: ModelData, target: str, model_bytes_int8) -> tuple[bytes, dict]:
    from workers.ml import optimize
    from workers.ml.export import onnx as onnx_export
    from workers.ml.export.tflite import verify_tflite

    x = data.x_eval[:200] if len(data.x_eval) else data.x_train[:200]
    if target == "tflite-float":
        blob = optimize.to_tflite_float(data.keras)
        check = verify_tflite(blob, data.keras, x)
        steps = [
            {
                "name": "litert_vs_keras",
                "status": "ok" if check["ok"] else "failed",
                "detail": f"max |LiteRT − Keras| {check['max_abs_diff']:.2e} (≤ 1e-4), top-1 agreement "
                f"{check['top1_agreement']:.3f}",
            }
        ]
    elif target == "tflite-int8":
        blob = model_bytes_int8()
        check = verify_tflite(blob, data.keras, x)
        steps = [
            {
                "name": "litert_vs_keras",
                "status": "ok" if check["top1_agreement"] >= ONNX_INT8_MIN_AGREEMENT else "failed",
                "detail": f"top-1 agreement {check['top1_agreement']:.3f}, max "
                f"{check['max_lsb_diff_vs_keras']} LSB from Keras",
            },
            {
                "name": "tflite_micro_vs_litert",
                "status": "ok" if check["ok"] else "failed",
                "detail": f"max {check['tflm_max_lsb_diff']} LSB (≤ 2), top-1 agreement "
                f"{check['tflm_top1_agreement']:.3f}",
            },
        ]
    else:
        float_onnx = onnx_export.keras_to_onnx(data.keras)
        if target == "onnx-float":
            blob = float_onnx
            check = onnx_export.verify_onnx(blob, data.keras, x)
            ok = check["max_abs_diff"] <= 1e-4
            steps = [
                {
                    "name": "onnxruntime_vs_keras",
                    "status": "ok" if ok else "failed",
                    "detail": f"max |ORT − Keras| {check['max_abs_diff']:.2e} (≤ 1e-4), top-1 agreement "
                    f"{check['top1_agreement']:.3f}",
                }
            ]
        else:
            blob = onnx_export.quantize_onnx_int8(float_onnx, data.x_train)
            check = onnx_export.verify_onnx(blob, data.keras, x)
            ok = check["top1_agreement"] >= ONNX_INT8_MIN_AGREEMENT
            steps = [
                {
                    "name": "onnxruntime_int8_vs_keras",
                    "status": "ok" if ok else "failed",
                    "detail": f"top-1 agreement {check['top1_agreement']:.3f} (≥ {ONNX_INT8_MIN_AGREEMENT}), "
                    f"max |ORT − Keras| {check['max_abs_diff']:.3f}",
                }
            ]
    report = {
        "checks": check,
        "steps": steps,
        "samples_from": data.evaluated_on if len(data.x_eval) else "training set",
        "ok": all(s["status"] == "ok" for s in steps),
    }
    return blob, report


def deploy_run(claim: Claim, watch: CancelWatch) -> dict:
    from workers.ml.export.c_bundle import BundleError, library_name
    from workers.ml.export.cgen import CGenError
    from workers.ml.export.verify import VerifyError

    job = claim.job
    target = job.params.get("target")
    model = (
        TrainedModel.objects.filter(pk=job.params.get("model_id"), project=job.project)
        .select_related("impulse", "project")
        .first()
    )
    if model is None:
        raise ImpulseError("the model to deploy was deleted", "model")
    progress.report(job.id, 0.0, f"building {target} for model {model.id}")
    data = model_data(job, model, watch, span=(0.0, 0.3))
    watch.check()
    progress.report(job.id, 0.35, f"converting model {model.id} for {target}")
    try:
        name = library_name(job.project.name)
    except BundleError:
        name = "model"
    file_name = f"{name}-{target}-model{model.id}.{TARGET_EXTENSIONS[target]}"
    with tempfile.TemporaryDirectory(prefix="deploy-", dir=_work_dir()) as tmp:
        try:
            if target in ("arduino", "cpp"):
                path, report = _c_bundle(data, job, target, _int8_file(model, data), tmp)
                blob = Path(path).read_bytes()
            else:
                blob, report = _file_target(data, target, lambda: _int8_file(model, data))
        except CGenError as exc:
            raise ServiceError(
                f"the {target} bundle cannot be generated: {exc}; TFLite and ONNX deployments "
                "of this model still work",
                field="target",
            ) from None
        except (BundleError, VerifyError) as exc:
            raise ServiceError(
                f"the {target} bundle cannot be built: {exc}", field="target"
            ) from None
    watch.check()
    report |= {"target": target, "model_id": model.id, "impulse_version": model.impulse.version}
    if data.engine.anomaly is not None and target not in ("arduino", "cpp"):
        report["note"] = (
            "the impulse's anomaly block (k-means) is not part of this deployment: it carries the "
            "neural network only"
        )
    digest = hashlib.sha256(blob).hexdigest()
    stored = ""
    try:
        with transaction.atomic():
            stored = save_bytes(
                f"{project_prefix(job.project_id)}/deployments/job-{job.id}/{file_name}", blob
            )
            dep = Deployment.objects.create(
                project=job.project,
                model=model,
                target=target,
                job=job,
                path=stored,
                file_name=file_name,
                size=len(blob),
                sha256=digest,
                report=report,
            )
            activity_log(
                project=job.project,
                actor=None,
                verb="deployment.built",
                deployment=dep.id,
                model=model.id,
                target=target,
                ok=report.get("ok"),
            )
    except BaseException:
        delete_quietly(stored)
        raise
    verdict = "verified" if report.get("ok") else "built, but verification FAILED (see the report)"
    progress.report(job.id, 1.0, f"{file_name}: {len(blob)} bytes, {verdict}")
    return {
        "deployment_id": dep.id,
        "target": target,
        "model_id": model.id,
        "file_name": file_name,
        "size": len(blob),
        "sha256": digest,
        "ok": bool(report.get("ok")),
    }


def _work_dir() -> str | None:
    base = getattr(django_settings, "STUDIO_WORK_DIR", None)
    if not base:
        return None
    os.makedirs(base, exist_ok=True)
    return str(base)


# --- selectors -----------------------------------------------------------------------------------


def deployments_for_project(project: Project, *, model_id: int | None = None):
    qs = Deployment.objects.filter(project=project).select_related("model", "model__impulse", "job")
    if model_id is not None:
        qs = qs.filter(model_id=model_id)
    return qs[:200]


def deployment_body(d: Deployment) -> dict:
    report = d.report or {}
    return {
        "id": d.id,
        "project": d.project_id,
        "model": d.model_id,
        "target": d.target,
        "target_label": DeploymentTarget(d.target).label if d.target in TARGETS else d.target,
        "job": d.job_id,
        "file_name": d.file_name,
        "size": d.size,
        "sha256": d.sha256,
        "impulse_version": report.get("impulse_version"),
        "ok": report.get("ok"),
        "created_at": d.created_at.isoformat(),
        "download_url": f"/api/v1/deployments/{d.id}/download",
        "report": report,
    }


def report_json(report: dict) -> str:
    return json.dumps(report, indent=1)


RUNNERS = {"optimize": optimize_run, "deploy": deploy_run}
