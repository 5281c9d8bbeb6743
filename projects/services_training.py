"""The impulse's jobs: feature generation (with the feature cache), training (→ TrainedModel) and model testing.

`*_start` services check what can be checked before a job is queued (and answer 4xx); `*_run` functions
are what the Celery task calls with a claimed job: load rows and files, call workers/ml/pipeline.py,
save, report progress. Feature files: ``projects/<id>/features/<cache key>.npz`` holding ``features``
[windows, n] and ``starts`` (ms), one per (sample, processing block), keyed by block name and
version, parameters, axes, input block and the sample's content hash.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from workers import progress
from workers.ml import samples as canonical
from workers.ml.pipeline import (
    NONLINEAR_BELOW_EXPLAINED,
    NONLINEAR_MAX_POINTS,
    ImpulseError,
    check_frequency,
    check_window_fit,
    classify,
    dsp_cache_key,
    parse_impulse,
    pca_2d,
    sample_windows,
    step_features,
    train_impulse,
    transfer_weights_missing,
    tsne_2d,
)
from workers.ml.pipeline import (
    Impulse as EngineImpulse,
)

from .models import Category, FeatureSet, Impulse, Job, JobStatus, Project, Sample, TrainedModel
from .services import Actor, ServiceError, activity_log
from .services_impulse import data_snapshot, impulse_current
from .services_jobs import CancelWatch, Claim, job_enqueue, job_running_of_kind
from .storage import delete_quietly, project_prefix, read_bytes, save_bytes

log = logging.getLogger(__name__)

EXPLORER_MAX_POINTS = 3000
DEFAULT_UNCERTAIN_THRESHOLD = 0.6
REPORT_EVERY_S = 0.5


def _sample_name(s: Sample) -> str:
    return f"sample {s.id} ({s.file_name})"


def _samples(project: Project, categories: tuple[str, ...]):
    return list(
        Sample.objects.filter(project=project, enabled=True, category__in=categories).order_by("id")
    )


def _require_impulse(project: Project) -> tuple[Impulse, EngineImpulse]:
    row = impulse_current(project)
    if row is None:
        raise ServiceError(
            "design an impulse first (PUT /api/v1/projects/<id>/impulse)",
            status=400,
            field="impulse",
        )
    try:
        return row, parse_impulse(row.spec)
    except ImpulseError as exc:
        raise ServiceError(
            f"the stored impulse is no longer valid: {exc.message}", field=exc.field
        ) from None


def _preflight_data(samples: list[Sample], engine: EngineImpulse, what: str) -> None:
    if not samples:
        raise ServiceError(
            f"there is no {what} data; upload samples first", status=400, field="data"
        )
    kinds = {s.kind for s in samples}
    if engine.is_image and kinds != {"image"}:
        raise ServiceError("the impulse takes images but the data has time series", field="input")
    if not engine.is_image and "image" in kinds:
        names = ", ".join(_sample_name(s) for s in samples if s.kind == "image")[:300]
        raise ServiceError(
            f"the impulse takes time series but these samples are images: {names}", field="input"
        )
    try:
        check_window_fit({_sample_name(s): s.duration_ms for s in samples}, engine)
        check_frequency(
            {_sample_name(s): 1000.0 / s.interval_ms for s in samples if s.interval_ms}, engine
        )
    except ImpulseError as exc:
        raise ServiceError(exc.message, field=exc.field) from None


def _no_running(project: Project, kinds: tuple[str, ...]) -> None:
    running = job_running_of_kind(project, kinds)
    if running is not None:
        raise ServiceError(
            f"job {running.id} ({running.kind}) is still {running.status}; wait for it or cancel it",
            status=409,
        )


def features_start(*, project: Project, actor: Actor) -> Job:
    row, engine = _require_impulse(project)
    samples = _samples(project, (Category.TRAINING, Category.TESTING))
    _preflight_data([s for s in samples if s.category == Category.TRAINING], engine, "training")
    _no_running(project, ("features", "train"))
    return job_enqueue(
        project=project,
        actor=actor,
        kind="features",
        impulse=row,
        snapshot=data_snapshot(project, (Category.TRAINING, Category.TESTING)),
    )


def features_done(project: Project, row: Impulse) -> Job | None:
    """The newest successful feature generation for this impulse's input and processing blocks (a change
    of only the learning blocks keeps the features)."""
    same = [
        i.id
        for i in Impulse.objects.filter(project=project).only("id", "spec")
        if i.spec.get("input") == row.spec.get("input") and i.spec.get("dsp") == row.spec.get("dsp")
    ]
    return Job.objects.filter(
        project=project, kind="features", impulse_id__in=same, status=JobStatus.SUCCEEDED
    ).first()


def train_start(*, project: Project, actor: Actor) -> Job:
    row, engine = _require_impulse(project)
    samples = _samples(project, (Category.TRAINING,))
    _preflight_data(samples, engine, "training")
    if engine.classifier is None and engine.anomaly is None:
        raise ServiceError("the impulse has no learning block", field="learn")
    missing = transfer_weights_missing(engine, str(settings.STUDIO_PRETRAINED_DIR))
    if missing:
        raise ServiceError(missing, field="learn")
    if engine.classifier is not None and engine.classifier.block != "regression":
        labels = sorted({s.label for s in samples})
        if len(labels) < 2:
            raise ServiceError(
                f"a classifier needs at least two labels in the training data; found "
                f"{labels or 'none'}",
                field="label",
            )
    if features_done(project, row) is None:
        raise ServiceError(
            f"generate features for impulse version {row.version} before training",
            status=400,
            field="features",
        )
    _no_running(project, ("features", "train"))
    return job_enqueue(
        project=project,
        actor=actor,
        kind="train",
        impulse=row,
        snapshot=data_snapshot(project, (Category.TRAINING,)),
    )


def model_latest(project: Project) -> TrainedModel | None:
    return TrainedModel.objects.filter(project=project).first()


def model_test_start(
    *,
    project: Project,
    actor: Actor,
    model_id: int | None = None,
    threshold: float = DEFAULT_UNCERTAIN_THRESHOLD,
) -> Job:
    if model_id is not None:
        model = TrainedModel.objects.filter(project=project, pk=model_id).first()
        if model is None:
            raise ServiceError(
                f"no trained model {model_id} in this project", status=404, field="model"
            )
    else:
        model = model_latest(project)
        if model is None:
            raise ServiceError("train a model before testing it", field="model")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0 <= threshold <= 1
    ):
        raise ServiceError(
            f"threshold must be a number in 0..1, got {threshold!r}", field="threshold"
        )
    samples = _samples(project, (Category.TESTING,))
    if not samples:
        raise ServiceError(
            "there is no testing data; upload or move samples to the testing set", field="data"
        )
    engine = parse_impulse(model.impulse.spec) if model.impulse else None
    if engine is None:
        raise ServiceError("the model's impulse was deleted", field="model")
    _preflight_data(samples, engine, "testing")
    return job_enqueue(
        project=project,
        actor=actor,
        kind="test",
        impulse=model.impulse,
        params={"model_id": model.id, "threshold": float(threshold)},
        snapshot=data_snapshot(project, (Category.TESTING,)),
    )


def job_start(*, project: Project, actor: Actor, kind: str, params: dict) -> Job:
    """POST /projects/<id>/jobs: {"kind": "features" | "train" | "test", ...}."""
    if kind == "features":
        return features_start(project=project, actor=actor)
    if kind == "train":
        return train_start(project=project, actor=actor)
    if kind == "test":
        model_id = params.get("model_id")
        if model_id is not None and (isinstance(model_id, bool) or not isinstance(model_id, int)):
            raise ServiceError("model_id must be an integer", field="model_id")
        return model_test_start(
            project=project,
            actor=actor,
            model_id=model_id,
            threshold=params.get("threshold", DEFAULT_UNCERTAIN_THRESHOLD),
        )
    raise ServiceError(f"unknown job kind {kind!r}; choose features, train or test", field="kind")


# --- the feature cache --------------------------------------------------------------------------


@dataclass
class SampleFeatures:
    sample: Sample
    features: dict[str, np.ndarray]
    starts: np.ndarray


def _load_cached(key: str) -> tuple[np.ndarray, np.ndarray] | None:
    fs = FeatureSet.objects.filter(cache_key=key).first()
    if fs is None:
        return None
    try:
        with np.load(io.BytesIO(read_bytes(fs.path)), allow_pickle=False) as data:
            return data["features"], data["starts"]
    except (OSError, ValueError, KeyError):  # a missing or unreadable file is recomputed
        log.warning("feature cache file %s unreadable; recomputing", fs.path)
        return None


def _store(
    project: Project, key: str, step, sample: Sample, feats: np.ndarray, starts: np.ndarray
) -> None:
    buf = io.BytesIO()
    np.savez(buf, features=feats, starts=starts)
    path = f"{project_prefix(project.id)}/features/{key}.npz"
    delete_quietly(path)
    stored = save_bytes(path, buf.getvalue())
    try:
        FeatureSet.objects.update_or_create(
            cache_key=key,
            defaults={
                "block": step.block,
                "implementation_version": step.module.IMPLEMENTATION_VERSION,
                "sample_sha256": sample.sha256,
                "path": stored,
            },
        )
    except Exception:
        delete_quietly(stored)
        raise


def gather_features(
    job: Job,
    engine: EngineImpulse,
    samples: list[Sample],
    watch: CancelWatch | None,
    *,
    span: tuple[float, float] = (0.0, 1.0),
    what: str = "features",
) -> tuple[list[SampleFeatures], dict]:
    """Features of every sample under every DSP block, from the cache or computed (and cached)."""
    project = job.project
    out: list[SampleFeatures] = []
    hits = misses = 0
    empty: list[str] = []
    n = len(samples)
    last_report = 0.0
    for i, s in enumerate(samples):
        if watch is not None:
            watch.check()
        feats: dict[str, np.ndarray] = {}
        starts = None
        need = []
        for step in engine.dsp:
            key = dsp_cache_key(step, engine.input, s.sha256, scope=str(project.id))
            cached = _load_cached(key)
            if cached is None:
                need.append((step, key))
            else:
                feats[step.id], starts = cached
                hits += 1
        if need:
            try:
                payload = canonical.decode(read_bytes(s.payload_path))
            except canonical.SampleError as exc:
                raise ImpulseError(f"{_sample_name(s)} cannot be read: {exc}", "data") from None
            except FileNotFoundError:
                raise ImpulseError(f"{_sample_name(s)}: its data file is missing", "data") from None
            windows, starts = sample_windows(payload, engine, name=_sample_name(s))
            axes = () if engine.is_image else payload.axes
            for step, key in need:
                arr = (
                    step_features(windows, axes, step, engine, name=_sample_name(s))
                    if len(windows)
                    else np.zeros((0, 0), np.float32)
                )
                _store(project, key, step, s, arr, starts)
                feats[step.id] = arr
                misses += 1
        if starts is None or len(starts) == 0:
            empty.append(_sample_name(s))
        else:
            out.append(SampleFeatures(s, feats, np.asarray(starts)))
        # Each report is a row write: at most a few per second, so a cached load stays fast.
        if time.monotonic() - last_report >= REPORT_EVERY_S or i == n - 1:
            last_report = time.monotonic()
            frac = span[0] + (span[1] - span[0]) * (i + 1) / max(1, n)
            progress.report(job.id, frac, f"{what}: {i + 1}/{n} samples")
    if empty:
        progress.report(
            job.id,
            log_line=f"{len(empty)} sample(s) shorter than the window were left out: "
            + ", ".join(empty[:20]),
        )
    if not out:
        raise ImpulseError(
            "no sample gave a window; every sample is shorter than the window "
            f"({', '.join(empty[:10])})",
            "input.window_size_ms",
        )
    return out, {"hits": hits, "misses": misses, "left_out": empty}


def _stack(
    items: list[SampleFeatures], engine: EngineImpulse
) -> tuple[dict[str, np.ndarray], list[str], list[tuple[int, float]]]:
    feats = {step.id: np.concatenate([it.features[step.id] for it in items]) for step in engine.dsp}
    labels = [it.sample.label for it in items for _ in it.starts]
    where = [(it.sample.id, float(t)) for it in items for t in it.starts]
    return feats, labels, where


# --- runners (called by workers/tasks.py with a claimed job) -------------------------------------


def _engine_of(job: Job) -> EngineImpulse:
    if job.impulse is None:
        raise ImpulseError("the job's impulse version was deleted", "impulse")
    return parse_impulse(job.impulse.spec)


def _snapshot_samples(job: Job) -> list[Sample]:
    ids = [sid for sid, _ in job.snapshot]
    rows = {s.id: s for s in Sample.objects.filter(project=job.project, pk__in=ids)}
    return [rows[i] for i in ids if i in rows]


def features_run(claim: Claim, watch: CancelWatch) -> dict:
    job = claim.job
    engine = _engine_of(job)
    samples = _snapshot_samples(job)
    progress.report(
        job.id,
        0.0,
        f"generating features of {len(samples)} samples (impulse v{job.impulse.version})",
    )
    items, cache = gather_features(job, engine, samples, watch, span=(0.0, 0.9))
    train_items = [it for it in items if it.sample.category == Category.TRAINING] or items
    feats, labels, where = _stack(train_items, engine)
    x = np.concatenate([feats[s.id] for s in engine.dsp], axis=1)
    rng = np.random.default_rng(0)
    keep = (
        np.sort(rng.choice(len(x), EXPLORER_MAX_POINTS, replace=False))
        if len(x) > EXPLORER_MAX_POINTS
        else np.arange(len(x))
    )
    xy, explained = pca_2d(x[keep], return_explained=True)
    tsne = None
    if explained < NONLINEAR_BELOW_EXPLAINED and 5 <= len(keep) <= NONLINEAR_MAX_POINTS:
        watch.check()
        progress.report(
            job.id, 0.95, f"PCA keeps {explained:.0%} of the variance; computing a t-SNE map too"
        )
        tsne = [[round(float(a), 3), round(float(b), 3)] for a, b in tsne_2d(x[keep])]
    label_names = sorted(set(labels))
    points = [
        [
            round(float(xy[j, 0]), 4),
            round(float(xy[j, 1]), 4),
            label_names.index(labels[k]),
            where[k][0],
            round(where[k][1], 1),
        ]
        for j, k in enumerate(keep)
    ]
    blocks = [
        {
            "id": s.id,
            "block": s.block,
            "version": s.module.IMPLEMENTATION_VERSION,
            "features": int(feats[s.id].shape[1]),
        }
        for s in engine.dsp
    ]
    progress.report(
        job.id,
        1.0,
        f"{len(x)} windows, {x.shape[1]} features per window "
        f"({cache['hits']} cached, {cache['misses']} computed)",
    )
    return {
        "impulse_version": job.impulse.version,
        "samples": len(items),
        "windows": len(x),
        "blocks": blocks,
        "cache": {"hits": cache["hits"], "misses": cache["misses"]},
        "left_out": cache["left_out"][:100],
        "explorer": {
            "method": "pca",
            "labels": label_names,
            "points": points,
            "pca_explained": round(explained, 4),
            "tsne": tsne,
        },
    }


def _save_keras(project: Project, job: Job, model) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with open(path, "rb") as fh:
            data = fh.read()
    return save_bytes(f"{project_prefix(project.id)}/models/job-{job.id}.keras", data)


def load_keras(path: str):
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "model.keras")
        with open(local, "wb") as fh:
            fh.write(read_bytes(path))
        return keras.models.load_model(local, compile=False)


class EpochReporter:
    """Per-epoch metrics to the browsers at once (channel group) and to the row at most every
    REPORT_EVERY_S (one UPDATE for curve, progress, message and log), so a reload shows the chart and
    short epochs are not slowed by database writes."""

    def __init__(self, claim: Claim, epochs: int):
        self.claim, self.epochs = claim, epochs
        self.curve: list[dict] = []
        self.lines: list[str] = []
        self.last_write = 0.0
        self.fraction = 0.1
        self.message = ""

    def __call__(self, epoch: int, logs: dict) -> None:
        row = {"epoch": epoch + 1} | {k: round(v, 6) for k, v in logs.items()}
        self.curve.append(row)
        text = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch")
        line = f"epoch {epoch + 1}/{self.epochs}: {text}"
        self.fraction = 0.1 + 0.85 * (epoch + 1) / self.epochs
        self.message = f"epoch {epoch + 1}/{self.epochs}"
        self.lines.append(f"[{timezone.now():%H:%M:%S}] {line}\n")
        progress.send(
            self.claim.job.id,
            {
                "type": "progress",
                "progress": self.fraction,
                "message": self.message,
                "log": line,
                "metrics": row,
            },
        )
        if time.monotonic() - self.last_write >= REPORT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        Job.objects.filter(pk=self.claim.job.id, attempts=self.claim.attempt).update(
            result={"epochs": self.curve},
            progress=self.fraction,
            message=self.message,
            log=Concat(F("log"), Value("".join(self.lines))),
        )
        self.lines = []
        self.last_write = time.monotonic()


def train_run(claim: Claim, watch: CancelWatch) -> dict:
    job = claim.job
    engine = _engine_of(job)
    samples = _snapshot_samples(job)
    progress.report(job.id, 0.0, f"loading features of {len(samples)} samples")
    items, _ = gather_features(
        job, engine, samples, watch, span=(0.0, 0.1), what="loading features"
    )
    feats, labels, where = _stack(items, engine)
    step = engine.classifier
    epochs = step.settings.epochs if step is not None else 1
    reporter = EpochReporter(claim, epochs)
    progress.report(job.id, 0.1, f"training on {len(labels)} windows from {len(items)} samples")
    try:
        trained = train_impulse(
            feats,
            labels,
            engine,
            on_epoch=reporter,
            should_stop=watch,
            pretrained_dir=str(settings.STUDIO_PRETRAINED_DIR),
        )
    finally:
        reporter.flush()
    curve = reporter.curve
    misclassified = []
    if (
        trained.model is not None
        and step is not None
        and step.block != "regression"
        and trained.validation_predictions is not None
    ):
        predicted = trained.validation_predictions.argmax(axis=1)
        for k, idx in enumerate(trained.validation_indices):
            truth = labels[int(idx)]
            guess = trained.labels[int(predicted[k])]
            if truth != guess:
                sample_id, start = where[int(idx)]
                misclassified.append(
                    {
                        "sample_id": sample_id,
                        "start_ms": start,
                        "label": truth,
                        "predicted": guess,
                        "score": round(float(trained.validation_predictions[k].max()), 4),
                    }
                )
    if trained.anomaly is not None:
        progress.report(
            job.id,
            0.97,
            f"k-means: {trained.anomaly['clusters']} clusters, "
            f"threshold {trained.anomaly['threshold']:.3f}",
        )
    watch.check()
    keras_path = _save_keras(job.project, job, trained.model) if trained.model is not None else ""
    try:
        with transaction.atomic():
            model = TrainedModel.objects.create(
                project=job.project,
                job=job,
                impulse=job.impulse,
                learn_block=step.block if step else "anomaly",
                snapshot=job.snapshot,
                settings=job.impulse.spec.get("learn", []),
                labels=trained.labels,
                keras_path=keras_path,
                anomaly=trained.anomaly,
                metrics=trained.metrics,
                history=trained.history,
                misclassified=misclassified[:500],
            )
            activity_log(
                project=job.project,
                actor=None,
                verb="model.trained",
                model=model.id,
                job=job.id,
                accuracy=trained.metrics.get("accuracy"),
            )
    except BaseException:
        delete_quietly(keras_path)
        raise
    return {
        "epochs": curve,
        "model_id": model.id,
        "accuracy": trained.metrics.get("accuracy"),
        "loss": trained.metrics.get("loss"),
        "labels": trained.labels,
        "anomaly_threshold": trained.anomaly["threshold"] if trained.anomaly else None,
    }


def model_test_run(claim: Claim, watch: CancelWatch) -> dict:
    from workers.ml.learn.metrics import classification_metrics

    job = claim.job
    model = TrainedModel.objects.filter(pk=job.params.get("model_id"), project=job.project).first()
    if model is None:
        raise ImpulseError("the model to test was deleted", "model")
    threshold = float(job.params.get("threshold", DEFAULT_UNCERTAIN_THRESHOLD))
    engine = _engine_of(job)
    samples = _snapshot_samples(job)
    items, _ = gather_features(job, engine, samples, watch, span=(0.0, 0.6), what="features")
    keras_model = load_keras(model.keras_path) if model.keras_path else None
    labels = list(model.labels)
    per_sample = []
    y_true, y_pred = [], []
    uncertain_index = len(labels)
    for n, it in enumerate(items):
        watch.check()
        scores, anomaly_scores = classify(it.features, engine, keras_model, model.anomaly)
        timeline = []
        votes: Counter = Counter()
        correct = 0
        for w, start in enumerate(it.starts):
            entry: dict = {"start_ms": round(float(start), 1)}
            if scores is not None and len(scores):
                best = int(scores[w].argmax())
                confident = float(scores[w, best]) >= threshold
                guess = labels[best] if confident else "uncertain"
                entry["scores"] = [round(float(v), 4) for v in scores[w]]
                entry["predicted"] = guess
                votes[guess] += 1
                correct += guess == it.sample.label
                if it.sample.label in labels:
                    y_true.append(labels.index(it.sample.label))
                    y_pred.append(best if confident else uncertain_index)
            if anomaly_scores is not None:
                entry["anomaly"] = round(float(anomaly_scores[w]), 4)
            timeline.append(entry)
        windows = len(it.starts)
        per_sample.append(
            {
                "sample_id": it.sample.id,
                "file_name": it.sample.file_name,
                "label": it.sample.label,
                "predicted": votes.most_common(1)[0][0] if votes else None,
                "accuracy": round(correct / windows, 4) if windows and scores is not None else None,
                "windows": windows,
                "timeline": timeline,
                "anomalous_windows": int((anomaly_scores > model.anomaly["threshold"]).sum())
                if anomaly_scores is not None
                else None,
            }
        )
        progress.report(
            job.id, 0.6 + 0.4 * (n + 1) / len(items), f"classified {n + 1}/{len(items)} samples"
        )
    summary: dict = {
        "model_id": model.id,
        "threshold": threshold,
        "samples": len(per_sample),
        "windows": sum(p["windows"] for p in per_sample),
    }
    if keras_model is not None and labels:
        cm_labels = labels + ["uncertain"]
        metrics = classification_metrics(
            np.array(y_true, np.int64), np.array(y_pred, np.int64), cm_labels
        )
        metrics["confusion_matrix"] = metrics["confusion_matrix"][: len(labels)]
        summary |= {
            "accuracy": metrics["accuracy"],
            "confusion_matrix": metrics["confusion_matrix"],
            "labels": labels,
            "columns": cm_labels,
            "per_class": {k: v for k, v in metrics["per_class"].items() if k in labels},
            "unknown_labels": sorted({p["label"] for p in per_sample if p["label"] not in labels}),
        }
    results = summary | {"per_sample": per_sample}
    TrainedModel.objects.filter(pk=model.pk).update(test_results=results)
    activity_log(
        project=job.project,
        actor=None,
        verb="model.tested",
        model=model.id,
        job=job.id,
        accuracy=summary.get("accuracy"),
    )
    return summary


RUNNERS = {"features": features_run, "train": train_run, "test": model_test_run}
