"""Bring-your-own-model: upload of a .tflite / .onnx / .keras file (+ optional .npz test set and sample
inputs), and its profile job.

The upload does only cheap checks in the web process (size limit, extension, magic bytes, the npz's
arrays); everything that parses the model runs in `workers.ml.byom`'s memory- and time-limited
subprocess: inside the "profile" job, whose failure message names the file and the problem, and, only
when sample inputs come with the upload, once at upload to read the input names and shapes they must fit.
Files: ``projects/<id>/uploaded-models/<sha256[:16]>/<name>`` (``test-set.npz``, ``inputs.npz`` beside it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

from workers import progress
from workers.ml import byom

from .models import Category, Job, Project, Sample, TrainedModel, UploadedModel
from .services import Actor, ServiceError, activity_log
from .services_jobs import CancelWatch, Claim, job_enqueue
from .storage import delete_quietly, project_prefix, read_bytes, save_bytes

log = logging.getLogger(__name__)

PROFILE_RUNS = 50
PROFILE_THREADS = (1, 4)
PROJECT_TEST_WINDOWS = 500  # at most this many windows of the project's test set feed the accuracy


def max_model_bytes() -> int:
    return int(getattr(settings, "STUDIO_MAX_MODEL_BYTES", 200 * 1024 * 1024))


UPLOAD_INSPECT_TIMEOUT_S = 60.0


def model_limits() -> byom.ByomLimits:
    return byom.ByomLimits(max_file_bytes=min(max(max_model_bytes(), 1024), 1024**3))


def _read_upload(f, what: str, limit: int) -> bytes:
    size = getattr(f, "size", None)
    if size is not None and size > limit:
        raise ServiceError(
            f"{what} '{f.name}' is {size} bytes, over the limit of {limit} bytes "
            "(STUDIO_MAX_MODEL_BYTES)",
            status=413,
            field=what,
        )
    data = f.read(limit + 1)
    if len(data) > limit:
        raise ServiceError(
            f"{what} '{f.name}' is over the limit of {limit} bytes (STUDIO_MAX_MODEL_BYTES)",
            status=413,
            field=what,
        )
    if not data:
        raise ServiceError(f"{what} '{f.name}' is empty", field=what)
    return data


def _safe_name(name: str) -> str:
    base = os.path.basename(name or "model")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base)[:120] or "model"


def check_model_bytes(name: str, data: bytes) -> str:
    """The kind of an uploaded model from its name and first bytes (no parsing of the model)."""
    try:
        kind = byom.detect_kind(name)
    except byom.ModelFileError as exc:
        raise ServiceError(str(exc), field="file") from None
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        raise ServiceError(
            f"'{name}' is a Python pickle: refused (pickles run code when loaded)", field="file"
        )
    if kind == "tflite" and data[4:8] != b"TFL3":
        raise ServiceError(
            f"'{name}' is not a TFLite flatbuffer (no TFL3 identifier at byte 4): corrupt or not a "
            ".tflite file",
            field="file",
        )
    if kind == "keras" and not zipfile.is_zipfile(io.BytesIO(data)):
        raise ServiceError(
            f"'{name}' is not a .keras archive (not a zip: corrupt or truncated)", field="file"
        )
    return kind


def check_test_set(name: str, data: bytes) -> dict:
    """x and y of an .npz test set (no pickles); their shapes for the report."""
    if not name.lower().endswith(".npz"):
        raise ServiceError(
            f"test_set '{name}' must be an .npz file with arrays x and y", field="test_set"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if "x" not in npz.files or "y" not in npz.files:
                raise ServiceError(
                    f"test_set '{name}' must hold arrays 'x' and 'y'; it holds "
                    f"{', '.join(npz.files) or 'nothing'}",
                    field="test_set",
                )
            x, y = npz["x"], npz["y"]
    except ServiceError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable npz is the user's file at fault
        raise ServiceError(
            f"test_set '{name}' is not a readable .npz: {exc}", field="test_set"
        ) from None
    if len(x) == 0 or len(x) != len(y):
        raise ServiceError(
            f"test_set '{name}': x has {len(x)} samples and y {len(y)}; they must match and not be "
            "empty",
            field="test_set",
        )
    return {"x_shape": list(x.shape), "y_shape": list(y.shape), "samples": len(x)}


def load_inputs(name: str, data: bytes, *, limit: int) -> dict[str, np.ndarray]:
    """The arrays of a sample-inputs .npz (no pickles, unpacked size within `limit`)."""
    if not name.lower().endswith(".npz"):
        raise ServiceError(
            f"inputs '{name}' must be an .npz file with one array per model input name", field="inputs"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            unpacked = sum(i.file_size for i in zf.infolist())
    except zipfile.BadZipFile:
        raise ServiceError(
            f"inputs '{name}' is not an .npz (not a zip archive: corrupt or truncated)", field="inputs"
        ) from None
    if unpacked > limit:
        raise ServiceError(
            f"inputs '{name}' unpacks to {unpacked} bytes, over the limit of {limit} bytes "
            "(STUDIO_MAX_MODEL_BYTES)",
            status=413,
            field="inputs",
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ServiceError(
                f"inputs '{name}' holds pickled (object) arrays: refused (pickles run code when loaded)",
                field="inputs",
            ) from None
        raise ServiceError(f"inputs '{name}' is not a readable .npz: {exc}", field="inputs") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable npz is the user's file at fault
        raise ServiceError(f"inputs '{name}' is not a readable .npz: {exc}", field="inputs") from None


def check_inputs(name: str, arrays: dict[str, np.ndarray], inputs: list[dict]) -> dict:
    """Sample inputs (one array per model input name, first axis = feeds) checked against the model's
    `inputs` as inspect reports them; the feed count and shapes for the report."""
    try:
        feeds = byom.check_feeds(arrays, inputs)
    except byom.FeedsError as exc:
        raise ServiceError(f"inputs '{name}': {exc}", field="inputs") from None
    return {"feeds": feeds, "shapes": {k: list(v.shape) for k, v in arrays.items()}}


def _model_inputs(name: str, kind: str, data: bytes) -> list[dict]:
    """The model's inputs (names, shapes, dtypes) from the engine's limited inspection subprocess."""
    with tempfile.TemporaryDirectory(prefix="byom-upload-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            # Inside a web request: a model that takes longer than this to load is refused here
            # rather than holding the request (the profile job has the full limit).
            limits = dataclasses.replace(model_limits(), timeout_s=UPLOAD_INSPECT_TIMEOUT_S)
            info = byom.inspect_model(path, kind=kind, limits=limits)
        except byom.ModelFileError as exc:
            raise ServiceError(
                f"{exc} (the model is read at upload to check its sample inputs)", field="file"
            ) from None
    return list(info.get("inputs") or [])


def uploaded_model_create(
    *, project: Project, actor: Actor, file, test_set=None, inputs=None
) -> UploadedModel:
    """Check and store an uploaded model (and test set, sample inputs), create its row and queue its
    profile job. Sample inputs are checked against the model's inputs, read in the engine's limited
    subprocess, so a model that cannot be read is refused here rather than in its job."""
    if file is None:
        raise ServiceError(
            "send the model as multipart field 'file' (.tflite, .onnx or .keras)", field="file"
        )
    limit = max_model_bytes()
    name = _safe_name(file.name)
    data = _read_upload(file, "file", limit)
    kind = check_model_bytes(name, data)
    test_bytes, test_info = None, None
    if test_set is not None:
        test_bytes = _read_upload(test_set, "test_set", limit)
        test_info = check_test_set(_safe_name(test_set.name), test_bytes)
    inputs_bytes, inputs_info = None, None
    if inputs is not None:
        inputs_name = _safe_name(inputs.name)
        inputs_bytes = _read_upload(inputs, "inputs", limit)
        arrays = load_inputs(inputs_name, inputs_bytes, limit=limit)
        inputs_info = check_inputs(inputs_name, arrays, _model_inputs(name, kind, data))
    digest = hashlib.sha256(data).hexdigest()
    folder = f"{project_prefix(project.id)}/uploaded-models/{digest[:16]}"
    saved: list[str] = []
    try:
        with transaction.atomic():
            path = save_bytes(f"{folder}/{name}", data)
            saved.append(path)
            test_path = (
                save_bytes(f"{folder}/test-set.npz", test_bytes) if test_bytes is not None else ""
            )
            if test_path:
                saved.append(test_path)
            inputs_path = (
                save_bytes(f"{folder}/inputs.npz", inputs_bytes) if inputs_bytes is not None else ""
            )
            if inputs_path:
                saved.append(inputs_path)
            report = {"test_set": test_info, "inputs": inputs_info}
            row = UploadedModel.objects.create(
                project=project,
                name=name,
                kind=kind,
                path=path,
                size=len(data),
                sha256=digest,
                test_set_path=test_path,
                inputs_path=inputs_path,
                report={k: v for k, v in report.items() if v},
                uploaded_by=actor.user if getattr(actor.user, "pk", None) else None,
            )
            job = job_enqueue(
                project=project, actor=actor, kind="profile", params={"uploaded_model_id": row.id}
            )
            row.job = job
            row.save(update_fields=["job"])
            activity_log(
                project=project,
                actor=actor,
                verb="model.uploaded",
                uploaded_model=row.id,
                name=name,
                kind=kind,
                size=len(data),
            )
    except BaseException:
        delete_quietly(*saved)
        raise
    return row


def uploaded_model_delete(*, row: UploadedModel, actor: Actor) -> None:
    with transaction.atomic():
        paths = [row.path, row.test_set_path, row.inputs_path]
        activity_log(project=row.project, actor=actor, verb="model.upload_deleted", name=row.name)
        row.delete()
        transaction.on_commit(lambda: delete_quietly(*paths))


def _project_test_set(
    job: Job, inspect: dict, tmp: str, watch: CancelWatch
) -> tuple[str | None, str]:
    """An npz of the project's own test features when they fit the model's single input, else None
    and the reason (shown in the report)."""
    from workers.ml.pipeline import ImpulseError, learn_input, parse_impulse

    from .services_impulse import impulse_current
    from .services_training import gather_features

    inputs = inspect.get("inputs") or []
    if len(inputs) != 1:
        return None, f"the model has {len(inputs)} inputs; the project's features feed one"
    shape = [d if isinstance(d, int) and d > 0 else None for d in (inputs[0].get("shape") or [])]
    per_sample = shape[1:]
    if not per_sample or None in per_sample:
        return None, f"the model's input shape {inputs[0].get('shape')} is not fixed"
    row = impulse_current(job.project)
    if row is None:
        return None, "the project has no impulse to compute features with"
    try:
        engine = parse_impulse(row.spec)
    except ImpulseError:
        return None, "the project's impulse is not valid"
    step = engine.classifier
    if step is None or step.block == "regression":
        return None, "the project's impulse has no classifier"
    samples = list(
        Sample.objects.filter(
            project=job.project, enabled=True, category=Category.TESTING
        ).order_by("id")
    )
    if not samples:
        return None, "the project has no test data"
    try:
        items, _ = gather_features(
            job, engine, samples, watch, span=(0.05, 0.3), what="project test features"
        )
    except ImpulseError as exc:
        return None, f"the project's test data gives no features: {exc.message}"
    feats = {s.id: np.concatenate([it.features[s.id] for it in items]) for s in engine.dsp}
    x = learn_input(feats, step)
    want = int(np.prod(per_sample))
    if x.shape[1] != want:
        return None, (
            f"the project's features ({x.shape[1]} per window) do not fit the model's input "
            f"{inputs[0].get('shape')}"
        )
    model = TrainedModel.objects.filter(project=job.project).first()
    labels = (
        list(model.labels) if model and model.labels else sorted({it.sample.label for it in items})
    )
    y_names = [it.sample.label for it in items for _ in it.starts]
    keep = np.array([n in labels for n in y_names])
    x = x[keep][:PROJECT_TEST_WINDOWS]
    y = np.array([labels.index(n) for n in y_names if n in labels], np.int64)[:PROJECT_TEST_WINDOWS]
    if not len(x):
        return None, "no test window carries one of the model's labels"
    path = os.path.join(tmp, "project-test.npz")
    np.savez(path, x=x.reshape(len(x), *per_sample).astype(np.float32), y=y)
    return (
        path,
        f"the project's test set ({len(x)} windows, labels in the order {', '.join(labels)})",
    )


def _feeds_used(report: dict, *, has_inputs: bool) -> str:
    """Which inputs timed the model (and calibrated its int8 version), for the report."""
    fed = str((report.get("model") or {}).get("feeds") or "")
    if has_inputs and fed.startswith("representative data"):
        return "the uploaded sample inputs" + fed.removeprefix("representative data")
    if has_inputs:
        return f"{fed}; the uploaded sample inputs were not used (a test set comes first)"
    return fed


def profile_run(claim: Claim, watch: CancelWatch) -> dict:
    job = claim.job
    row = UploadedModel.objects.filter(
        pk=job.params.get("uploaded_model_id"), project=job.project
    ).first()
    if row is None:
        raise ServiceError("the uploaded model was deleted")
    limits = model_limits()
    with tempfile.TemporaryDirectory(prefix="byom-job-") as tmp:
        path = Path(tmp) / row.name
        path.write_bytes(read_bytes(row.path))
        test_npz, accuracy_on = None, "no test set was uploaded"
        # checked against the model at upload; the engine feeds them when there is no test set
        representative = (
            load_inputs("inputs.npz", read_bytes(row.inputs_path), limit=max_model_bytes())
            if row.inputs_path
            else None
        )
        try:
            progress.report(job.id, 0.02, f"inspecting {row.name}")
            if row.test_set_path:
                test_npz = str(Path(tmp) / "test-set.npz")
                Path(test_npz).write_bytes(read_bytes(row.test_set_path))
                accuracy_on = "the uploaded test set"
            else:
                info = byom.inspect_model(path, kind=row.kind, limits=limits)
                test_npz, accuracy_on = _project_test_set(job, info, tmp, watch)
                if test_npz is None:
                    accuracy_on = f"no accuracy: no test set was uploaded and {accuracy_on}"
            watch.check()
            progress.report(
                job.id,
                0.3,
                f"profiling {row.name}: latency at {PROFILE_THREADS} threads, peak RSS"
                + (", int8 version" if row.kind != "tflite" else ""),
            )
            report = byom.profile_model(
                path,
                runs=PROFILE_RUNS,
                threads=PROFILE_THREADS,
                test_npz=test_npz,
                representative=representative,
                kind=row.kind,
                int8=True,
                limits=limits,
            )
        except byom.ModelFileError as exc:
            UploadedModel.objects.filter(pk=row.pk).update(
                report=(row.report or {}) | {"error": str(exc)}
            )
            raise ServiceError(str(exc)) from None
    report["accuracy_on"] = accuracy_on
    report["feeds"] = _feeds_used(report, has_inputs=representative is not None)
    for key in ("test_set", "inputs"):
        if row.report.get(key):
            report[key] = row.report[key]
    UploadedModel.objects.filter(pk=row.pk).update(report=report)
    activity_log(project=job.project, actor=None, verb="model.profiled", uploaded_model=row.id)
    progress.report(job.id, 1.0, f"{row.name} profiled")
    lat = (report.get("model") or {}).get("latency_ms") or {}
    return {
        "uploaded_model_id": row.id,
        "latency_ms": lat,
        "accuracy": (report.get("model") or {}).get("accuracy"),
    }


def uploaded_model_body(row: UploadedModel) -> dict:
    return {
        "id": row.id,
        "project": row.project_id,
        "name": row.name,
        "kind": row.kind,
        "size": row.size,
        "sha256": row.sha256,
        "has_test_set": bool(row.test_set_path),
        "has_inputs": bool(row.inputs_path),
        "job": row.job_id,
        "job_status": row.job.status if row.job_id and row.job else None,
        "uploaded_by": row.uploaded_by.username if row.uploaded_by_id and row.uploaded_by else None,
        "created_at": row.created_at.isoformat(),
        "report": row.report,
    }


RUNNERS = {"profile": profile_run}
