"""Everything that writes samples: create (the one path every source uses), edit, move, crop, split,
delete, bulk actions, and import/export of a data set as a zip.

Files: the canonical payload (workers/ml/samples.py) and the raw upload sit side by side under
``projects/<id>/samples/<uuid>.*`` in Django's default storage (local disk or S3). A write saves
its files first and the row last inside ``transaction.atomic()``; when anything fails the files it
saved are deleted again, so a failed write leaves neither a row nor a file. Deleting a row deletes
its files once the deletion is committed.
"""
from __future__ import annotations

import contextvars
import io
import json
import logging
import math
import re
import time
import typing
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from workers.ml import samples as canonical
from workers.ml.samples import Image, TimeSeries

from . import ingestion
from .ingestion import IngestionError, Limits, ParsedSample
from .models import Category, Device, Project, Sample, SampleKind
from .services import Actor, ServiceError, activity_log, project_hmac_key
from .storage import delete_quietly, project_prefix, save_bytes

log = logging.getLogger(__name__)

# What the ingestion paths accept; "split" is decided per sample by its content hash (80/20).
UPLOAD_CATEGORIES = ("training", "testing", "anomaly", "split")
BULK_ACTIONS = ("relabel", "move", "enable", "disable", "delete")
MAX_SPLIT_WINDOWS = 1000
EXPORT_INDEX = "info.labels"

# Paths saved by sample writes inside a `storage_rollback()` block, to delete if the block fails.
_pending_paths: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("pending_paths", default=None)


def ingestion_limits() -> Limits:
    """The upload limits from settings (STUDIO_MAX_SAMPLE_BYTES, _VALUES, _IMAGE_PIXELS)."""
    return Limits(
        max_body_bytes=settings.STUDIO_MAX_SAMPLE_BYTES,
        max_values=settings.STUDIO_MAX_VALUES,
        max_pixels=settings.STUDIO_MAX_IMAGE_PIXELS,
    )


@contextmanager
def storage_rollback():
    """Delete every file that sample writes inside the block saved, if the block raises.

    Wrap a multi-sample write (an import, a split) together with its `transaction.atomic()`: the
    database rolls back the rows, this removes the files those rows would have pointed at.
    """
    paths: list[str] = []
    token = _pending_paths.set(paths)
    try:
        yield
    except BaseException:
        delete_quietly(*paths)
        raise
    finally:
        _pending_paths.reset(token)


def _save_files(project_id: int, payload, raw_bytes: bytes | None, raw_extension: str) -> tuple[str, str]:
    stem = f"{project_prefix(project_id)}/samples/{uuid.uuid4().hex}"
    saved: list[str] = []
    try:
        saved.append(save_bytes(f"{stem}.{canonical.canonical_extension(payload)}", canonical.encode(payload)))
        if raw_bytes is not None:
            saved.append(save_bytes(f"{stem}.raw.{raw_extension or 'bin'}", raw_bytes))
    except BaseException:
        delete_quietly(*saved)
        raise
    pending = _pending_paths.get()
    if pending is not None:
        pending.extend(saved)
    return saved[0], (saved[1] if len(saved) > 1 else "")


def _check_category(category: str, allowed=Category.values) -> str:
    if category not in allowed:
        raise ServiceError(f"unknown category '{category}'; choose one of {', '.join(allowed)}", field="category")
    return category


def _check_label(label: str | None) -> str:
    if label is None or label == "":
        return ""
    try:
        return ingestion.validate_label(label)
    except IngestionError as exc:
        raise ServiceError(exc.message, field="label") from exc


def _check_metadata(metadata: dict | None) -> dict[str, str]:
    if not metadata:
        return {}
    if not isinstance(metadata, dict):
        raise ServiceError("metadata must be an object of strings", field="metadata")
    # One validator for headers and forms: the x-metadata rules.
    try:
        return ingestion.parse_metadata_header(json.dumps(metadata))
    except IngestionError as exc:
        raise ServiceError(exc.message.replace("x-metadata", "metadata"), field="metadata") from exc


def _date_id() -> str:
    # Milliseconds since the epoch in base 36 plus 4 random hex digits: short, sortable, unique.
    ms = int(time.time() * 1000)
    digits = ""
    while ms:
        ms, r = divmod(ms, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return f"{digits}{uuid.uuid4().hex[:4]}"


def _payload_fields(payload) -> dict:
    if isinstance(payload, TimeSeries):
        return {
            "kind": SampleKind.AUDIO if payload.is_audio else SampleKind.TIME_SERIES,
            "sensors": [{"name": s.name, "units": s.units} for s in payload.sensors],
            "interval_ms": payload.interval_ms,
            "value_count": int(payload.values.size),
            "duration_ms": payload.duration_ms,
            "width": None,
            "height": None,
        }
    return {
        "kind": SampleKind.IMAGE,
        "sensors": [],
        "interval_ms": None,
        "value_count": 0,
        "duration_ms": 0.0,
        "width": payload.width,
        "height": payload.height,
    }


def _device_for(project: Project, device_name: str | None, device_type: str | None) -> Device | None:
    if not device_name:
        return None
    device, _ = Device.objects.get_or_create(
        project=project, device_id=device_name[:128],
        defaults={"name": device_name[:128], "device_type": (device_type or "")[:128]},
    )
    Device.objects.filter(pk=device.pk).update(last_seen=timezone.now())
    return device


def sample_create(
    *,
    project: Project,
    category: str,
    label: str | None,
    file_name: str | None,
    parsed: ParsedSample,
    raw_bytes: bytes | None = None,
    uploader=None,
    device: Device | None = None,
    metadata: dict | None = None,
    upload_source: str = "",
    actor: Actor | None = None,
    disallow_duplicates: bool = False,
    add_date_id: bool = False,
    log_activity: bool = True,
) -> Sample:
    """Store one sample: canonical payload + raw file + row, all or nothing.

    category: training, testing, anomaly, or split (80/20 by content hash). label: "" for
    unlabelled, None to take it from the file name (EI's rule: ``idle.01.json`` -> idle). file_name: as uploaded (its last path component is kept; empty gives
    ``<label or sample>.<hash12>.<ext>``). device: the Device it came from; when None and the
    payload names a device (EI ``device_name``) that device is found or created. Raises
    ServiceError (409 for a duplicate under ``disallow_duplicates``).
    Callable from a request, a Celery task or a websocket consumer (sync; wrap with
    database_sync_to_async).
    """
    category = _check_category(category, UPLOAD_CATEGORIES)
    if file_name:
        try:
            file_name = ingestion.safe_file_name(file_name)
        except IngestionError as exc:
            raise ServiceError(exc.message, field="file_name") from exc
    if label is None:
        label = ""
        if file_name and not file_name.startswith("."):
            try:
                label = ingestion.label_from_file_name(file_name)
            except IngestionError as exc:
                raise ServiceError(exc.message, field="label") from exc
    label = _check_label(label)
    metadata = _check_metadata(metadata)
    payload = parsed.payload
    sha = canonical.content_sha256(payload)
    if category == "split":
        category = ingestion.split_category(sha)
    raw_extension = parsed.raw_extension
    if not file_name:
        file_name = f"{label or 'sample'}.{sha[:12]}.{raw_extension}"
    if add_date_id:
        stem, dot, ext = file_name.rpartition(".")
        file_name = f"{stem}.{_date_id()}.{ext}" if dot and stem else f"{file_name}.{_date_id()}"
        file_name = file_name[-255:]
    uploader = uploader if getattr(uploader, "pk", None) else None
    if actor is None:
        actor = Actor(user=uploader)

    payload_path, raw_path = _save_files(project.id, payload, raw_bytes, raw_extension)
    try:
        # The row is written first: on SQLite a transaction that reads before its first write cannot
        # wait for a concurrent writer (it fails with "database is locked"); one that writes first
        # waits its turn, and then sees the other's committed row in the duplicate check.
        with transaction.atomic():
            sample = Sample.objects.create(
                project=project, category=category, label=label, file_name=file_name, sha256=sha,
                device=device, device_name=(parsed.device_name or (device.device_id if device else ""))[:128],
                device_type=(parsed.device_type or (device.device_type if device else ""))[:128],
                uploader=uploader, upload_source=(upload_source or "")[:64], metadata=metadata,
                signed=parsed.signed, payload_path=payload_path, raw_path=raw_path,
                **_payload_fields(payload),
            )
            if disallow_duplicates:
                existing = (Sample.objects.filter(project=project, sha256=sha).exclude(pk=sample.pk)
                            .values_list("id", flat=True).first())
                if existing is not None:
                    raise ServiceError(
                        f"a sample with the same data already exists in this project (sample {existing}); "
                        "duplicates are refused because x-disallow-duplicates is set", status=409)
            if device is None and parsed.device_name:
                sample.device = _device_for(project, parsed.device_name, parsed.device_type)
                Sample.objects.filter(pk=sample.pk).update(device=sample.device)
            if log_activity:
                activity_log(project=project, actor=actor, verb="samples.uploaded", count=1,
                             files=[file_name], categories={category: 1}, source=upload_source or "")
    except BaseException:
        delete_quietly(payload_path, raw_path)
        raise
    return sample


def samples_uploaded_log(*, project: Project, actor: Actor | None, samples: list[Sample], failed: int = 0,
                         source: str = "") -> None:
    """One activity entry for a batch upload (the files endpoint, the browser, an import); a batch
    that stored nothing leaves no entry (a failed upload leaves no row at all)."""
    if not samples:
        return
    categories: dict[str, int] = {}
    for s in samples:
        categories[s.category] = categories.get(s.category, 0) + 1
    activity_log(project=project, actor=actor, verb="samples.uploaded", count=len(samples), failed=failed,
                 files=[s.file_name for s in samples[:20]], categories=categories, source=source)


@dataclass(frozen=True)
class UploadOptions:
    """What the EI headers (or the browser's form) ask for one upload."""

    category: str
    label: str | None = None  # None: infer from the file name (EI's rule), unless no_label
    no_label: bool = False
    disallow_duplicates: bool = False
    add_date_id: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    upload_source: str = ""


def upload_ingest(*, project: Project, actor: Actor, data: bytes, file_name: str | None, content_type: str | None,
                  options: UploadOptions, log_activity: bool = True) -> Sample:
    """Parse uploaded bytes (EI JSON/CBOR, CSV, WAV, JPEG, PNG) and store them as one sample.

    Raises IngestionError (bad bytes: 400/413/415) or ServiceError (bad label, duplicate...).
    """
    safe_name = ingestion.safe_file_name(file_name) if file_name else None
    if options.no_label:
        label = ""
    elif options.label is not None:
        label = ingestion.validate_label(options.label)
    elif safe_name and not safe_name.startswith("."):
        label = ingestion.label_from_file_name(safe_name)
    else:
        label = ""
    parsed = ingestion.parse_upload(
        data, file_name=safe_name, content_type=_effective_content_type(data, content_type),
        hmac_key=project_hmac_key(project) or None, require_signed=project.require_signed,
        limits=ingestion_limits(),
    )
    return sample_create(
        project=project, category=options.category, label=label, file_name=safe_name, parsed=parsed,
        raw_bytes=data, uploader=actor.user, metadata=options.metadata, upload_source=options.upload_source,
        actor=actor, disallow_duplicates=options.disallow_duplicates, add_date_id=options.add_date_id,
        log_activity=log_activity,
    )


def _effective_content_type(data: bytes, content_type: str | None) -> str | None:
    # The edgeimpulse Python SDK sends a JSON document labelled application/cbor (upload_samples of a
    # DataAcquisition): a CBOR document never starts with "{" (0x7b is a text string header of
    # length 27, not a map), so such a body is JSON whatever its label says.
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/cbor" and data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "application/json"
    # curl --data-binary labels any body as a form unless told otherwise: let the bytes decide.
    if media == "application/x-www-form-urlencoded":
        return None
    return content_type


# --- Reading payloads ---------------------------------------------------------------------------


def sample_payload(sample: Sample) -> TimeSeries | Image:
    """The sample's canonical payload, read from storage (ServiceError 500 when it cannot be)."""
    from .selectors_samples import sample_read

    return sample_read(sample)


# --- Edits ----------------------------------------------------------------------------------------


@transaction.atomic
def sample_update(*, sample: Sample, actor: Actor, label: str | None = None, category: str | None = None,
                  enabled: bool | None = None, file_name: str | None = None,
                  metadata: dict | None = None) -> Sample:
    """Relabel, move, enable/disable, rename or re-annotate one sample (None leaves a field as is)."""
    changes: dict = {}
    if label is not None:
        new = _check_label(label)
        if new != sample.label:
            changes["label"] = [sample.label, new]
            sample.label = new
    if category is not None:
        new = _check_category(category)
        if new != sample.category:
            changes["category"] = [sample.category, new]
            sample.category = new
    if enabled is not None and bool(enabled) != sample.enabled:
        changes["enabled"] = bool(enabled)
        sample.enabled = bool(enabled)
    if file_name is not None:
        try:
            new = ingestion.safe_file_name(file_name)
        except IngestionError as exc:
            raise ServiceError(exc.message, field="file_name") from exc
        if new != sample.file_name:
            changes["file_name"] = [sample.file_name, new]
            sample.file_name = new
    if metadata is not None:
        new_meta = _check_metadata(metadata)
        if new_meta != sample.metadata:
            changes["metadata"] = True
            sample.metadata = new_meta
    if changes:
        sample.save()
        activity_log(project=sample.project, actor=actor, verb="sample.updated", sample=sample.id,
                     file=sample.file_name, **changes)
    return sample


def _delete_files_on_commit(*paths: str) -> None:
    paths = tuple(p for p in paths if p)
    transaction.on_commit(lambda: delete_quietly(*paths))


@transaction.atomic
def sample_delete(*, sample: Sample, actor: Actor, log_activity: bool = True) -> None:
    """Delete the row; its files go once the deletion is committed."""
    sample_id, name = sample.id, sample.file_name
    paths = (sample.payload_path, sample.raw_path)
    project = sample.project
    sample.delete()
    _delete_files_on_commit(*paths)
    if log_activity:
        activity_log(project=project, actor=actor, verb="sample.deleted", sample=sample_id, file=name)


def samples_bulk(*, project: Project, actor: Actor, ids: list[int], action: str, label: str | None = None,
                 category: str | None = None) -> int:
    """Apply one action to the selected samples of a project; returns how many it touched.

    action: relabel (label, "" unlabels), move (category), enable, disable, delete. Ids of other
    projects' samples are ignored (never touched).
    """
    if action not in BULK_ACTIONS:
        raise ServiceError(f"unknown bulk action '{action}'; choose one of {', '.join(BULK_ACTIONS)}",
                           field="action")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ServiceError("ids must be a list of sample ids", field="ids")
    if len(ids) > 100_000:
        raise ServiceError("at most 100000 samples per bulk action", field="ids")
    with transaction.atomic():
        rows = Sample.objects.select_for_update().filter(project=project, id__in=ids)
        detail: dict = {"action": action}
        if action == "relabel":
            if label is None:
                raise ServiceError("relabel needs a label", field="label")
            detail["label"] = _check_label(label)
            count = rows.update(label=detail["label"])
        elif action == "move":
            detail["category"] = _check_category(category or "")
            count = rows.update(category=detail["category"])
        elif action in ("enable", "disable"):
            count = rows.update(enabled=action == "enable")
        else:
            paths = [p for pair in rows.values_list("payload_path", "raw_path") for p in pair]
            _, per_model = rows.delete()
            count = per_model.get(Sample._meta.label, 0)
            _delete_files_on_commit(*paths)
        if count:
            activity_log(project=project, actor=actor, verb="samples.bulk", count=count, **detail)
    return count


def _replace_payload(sample: Sample, payload, actor: Actor, verb: str, **detail) -> Sample:
    old = sample.payload_path
    new_path, _ = _save_files(sample.project_id, payload, None, "")
    try:
        with transaction.atomic():
            sample.payload_path = new_path
            sample.sha256 = canonical.content_sha256(payload)
            for key, value in _payload_fields(payload).items():
                setattr(sample, key, value)
            sample.save()
            activity_log(project=sample.project, actor=actor, verb=verb, sample=sample.id, file=sample.file_name,
                         **detail)
            _delete_files_on_commit(old)
    except BaseException:
        delete_quietly(new_path)
        raise
    return sample


def _series_of(sample: Sample) -> TimeSeries:
    if sample.kind == SampleKind.IMAGE:
        raise ServiceError("images cannot be cropped or split in time", status=400)
    payload = sample_payload(sample)
    assert isinstance(payload, TimeSeries)
    return payload


def _number(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ServiceError(f"{name} must be a number of milliseconds", field=name) from None
    if not math.isfinite(number):
        raise ServiceError(f"{name} must be finite", field=name)
    return number


def sample_crop(*, sample: Sample, actor: Actor, start_ms, end_ms) -> Sample:
    """Keep only the values from start_ms (inclusive) to end_ms (exclusive) of a time series."""
    series = _series_of(sample)
    start, end = _number(start_ms, "start_ms"), _number(end_ms, "end_ms")
    first = max(0, math.floor(start / series.interval_ms + 1e-9))
    last = min(series.length, math.ceil(end / series.interval_ms - 1e-9))
    if last - first < 1:
        raise ServiceError(
            f"crop {start:g}-{end:g} ms keeps no values of this {series.duration_ms:g} ms sample", field="end_ms")
    if first == 0 and last == series.length:
        return sample
    cropped = TimeSeries(values=series.values[first:last], interval_ms=series.interval_ms, sensors=series.sensors)
    return _replace_payload(sample, cropped, actor, "sample.cropped", start_ms=first * series.interval_ms,
                            end_ms=last * series.interval_ms)


def sample_split(*, sample: Sample, actor: Actor, length_ms) -> list[Sample]:
    """Cut a time series into consecutive windows of length_ms (a shorter rest is dropped); the
    windows become new samples (same label, category, device, metadata) and the original goes."""
    series = _series_of(sample)
    length = _number(length_ms, "length_ms")
    per_window = round(length / series.interval_ms)
    if per_window < 1:
        raise ServiceError(f"length_ms must be at least one interval ({series.interval_ms:g} ms)", field="length_ms")
    count = series.length // per_window
    if count < 2:
        raise ServiceError(f"a {series.duration_ms:g} ms sample holds fewer than two {length:g} ms windows",
                           field="length_ms")
    if count > MAX_SPLIT_WINDOWS:
        raise ServiceError(f"splitting gives {count} windows, over the limit of {MAX_SPLIT_WINDOWS}",
                           field="length_ms")
    stem = sample.file_name.rsplit(".", 1)[0] if "." in sample.file_name else sample.file_name
    created: list[Sample] = []
    with storage_rollback(), transaction.atomic():
        for i in range(count):
            window = TimeSeries(values=series.values[i * per_window:(i + 1) * per_window],
                                interval_ms=series.interval_ms, sensors=series.sensors)
            parsed = ParsedSample(window, sample.kind, sample.device_name or None, sample.device_type or None,
                                  window.sensors, "json", sample.signed)
            created.append(sample_create(
                project=sample.project, category=sample.category, label=sample.label,
                file_name=f"{stem}.s{i + 1}.json"[-255:], parsed=parsed, raw_bytes=None,
                uploader=sample.uploader, device=sample.device, metadata=sample.metadata,
                upload_source="split", actor=actor, log_activity=False))
        original = sample.id
        sample_delete(sample=sample, actor=actor, log_activity=False)
        activity_log(project=created[0].project, actor=actor, verb="sample.split", sample=original,
                     windows=count, length_ms=per_window * series.interval_ms)
    return created


# --- Export / import -------------------------------------------------------------------------------


def _export_entry(sample: Sample) -> tuple[str, bytes]:
    payload = sample_payload(sample)
    stem = sample.file_name.rsplit(".", 1)[0] if "." in sample.file_name else sample.file_name
    stem = re.sub(r"[^\w.\-]+", "_", stem)[:100] or "sample"
    if isinstance(payload, Image):
        return f"{sample.category}/{stem}.{sample.id}.png", canonical.encode(payload)
    document = canonical.to_ei_json(payload, sample.device_name or None, sample.device_type or "")
    return f"{sample.category}/{stem}.{sample.id}.json", json.dumps(document, separators=(",", ":")).encode()


def dataset_export(*, project: Project, out, sample_ids: list[int] | None = None) -> int:
    """Write the data set as a zip to the binary file `out`; returns the number of samples.

    Layout (as Edge Impulse exports it): ``<category>/<name>.<id>.json`` for time series and audio
    (EI data acquisition JSON, unsigned), ``.png`` for images, and ``info.labels`` listing every
    file with its category, label, enabled flag and metadata. `dataset_import` reads it back.
    """
    rows = Sample.objects.filter(project=project).order_by("id")
    if sample_ids is not None:
        rows = rows.filter(id__in=sample_ids)
    files = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for sample in rows.iterator():
            path, data = _export_entry(sample)
            archive.writestr(path, data)
            files.append({
                "path": path, "name": sample.file_name, "category": sample.category,
                "label": {"type": "label", "label": sample.label} if sample.label else {"type": "unlabeled"},
                "metadata": sample.metadata, "enabled": sample.enabled,
            })
        archive.writestr(EXPORT_INDEX, json.dumps({"version": 1, "files": files}, indent=1))
    return len(files)


def _max_import_bytes() -> int:
    return getattr(settings, "STUDIO_MAX_IMPORT_BYTES", 1024 * 1024 * 1024)


def _check_zip_name(name: str) -> None:
    if "\x00" in name or name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise ServiceError(f"zip entry {name[:80]!r} has an absolute path or a NUL", field="file")
    if any(part == ".." for part in re.split(r"[\\/]", name)):
        raise ServiceError(f"zip entry {name[:80]!r} points outside the archive ('..')", field="file")


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    # file_size is what the archive claims; read at most one byte more to catch a lying header.
    with archive.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ServiceError(f"zip entry {info.filename[:80]!r} decompresses to more than {limit} bytes", status=413,
                           field="file")
    return data


@dataclass
class ImportResult:
    samples: list[Sample]
    skipped: list[str]


def dataset_import(*, project: Project, actor: Actor, data: bytes | typing.BinaryIO) -> ImportResult:
    """Import a zip written by `dataset_export` (or any zip of EI JSON/CBOR, CSV, WAV, PNG, JPEG files
    in ``training/``, ``testing/``, ``anomaly/`` folders; labels from ``info.labels`` or file names).

    All or nothing: a bad file rejects the whole import with its name. Refuses entries with ``..``
    or absolute paths, and archives whose entries decompress to more than STUDIO_MAX_IMPORT_BYTES.
    """
    limit = _max_import_bytes()
    fh = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    size = fh.seek(0, io.SEEK_END)
    fh.seek(0)
    if size > limit:
        raise ServiceError(f"zip is {size} bytes, over the limit of {limit}", status=413, field="file")
    try:
        archive = zipfile.ZipFile(fh)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ServiceError(f"not a zip file: {exc}", field="file") from exc
    total = 0
    for info in infos:
        _check_zip_name(info.filename)
        total += info.file_size
    if total > limit:
        raise ServiceError(f"zip decompresses to {total} bytes, over the limit of {limit}", status=413, field="file")
    if len(infos) > 100_000:
        raise ServiceError("zip holds more than 100000 entries", status=413, field="file")
    index: dict[str, dict] = {}
    names = {i.filename for i in infos}
    index_name = next((n for n in names if n.rsplit("/", 1)[-1] == EXPORT_INDEX), None)
    budget = limit
    if index_name:
        raw_index = _read_entry(archive, archive.getinfo(index_name), budget)
        budget -= len(raw_index)
        try:
            listed = json.loads(raw_index)["files"]
            index = {str(f["path"]): f for f in listed if isinstance(f, dict)}
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceError(f"{EXPORT_INDEX} is not valid: {exc}", field="file") from exc
    limits = ingestion_limits()
    created: list[Sample] = []
    skipped: list[str] = []
    with storage_rollback(), transaction.atomic():
        for info in infos:
            name = info.filename
            if info.is_dir() or name == index_name or name.rsplit("/", 1)[-1].startswith("."):
                continue
            content = _read_entry(archive, info, min(budget, limits.max_body_bytes))
            budget -= len(content)
            base = name.rsplit("/", 1)[-1]
            entry = index.get(name, {})
            folders = name.split("/")[:-1]
            category = entry.get("category") or next((f for f in folders if f in Category.values), "training")
            try:
                parsed = ingestion.parse_upload(content, file_name=base, content_type=None, hmac_key=None,
                                                require_signed=False, limits=limits)
                if entry:
                    label_info = entry.get("label") or {}
                    label = label_info.get("label", "") if label_info.get("type") == "label" else ""
                else:
                    label = ingestion.label_from_file_name(base)
            except IngestionError as exc:
                if exc.status == 415 and not entry:
                    skipped.append(name)  # a README or other stray file in a folder zip
                    continue
                raise ServiceError(f"{name}: {exc.message}", status=exc.status, field="file") from exc
            sample = sample_create(
                project=project, category=_check_category(str(category)), label=label,
                file_name=entry.get("name") or base, parsed=parsed, raw_bytes=content, uploader=actor.user,
                metadata=entry.get("metadata") or {}, upload_source="import", actor=actor, log_activity=False)
            if entry.get("enabled") is False:
                sample.enabled = False
                sample.save(update_fields=["enabled"])
            created.append(sample)
        samples_uploaded_log(project=project, actor=actor, samples=created, source="import")
    return ImportResult(created, skipped)
