"""Reads of a project's data set: filtered sample lists, per-label counts and durations, the
train/test ratio, and a sample's values shaped for a chart."""
from __future__ import annotations

import math

import numpy as np
from django.db.models import Count, Q, QuerySet, Sum

from workers.ml.samples import Image, SampleError, TimeSeries

from .models import Category, Project, Sample
from .services import ServiceError
from .storage import read_bytes

ORDERINGS = ("created_at", "file_name", "label", "category", "duration_ms", "id", "kind")
# EI's advice: keep 70-90 % of labelled, non-anomaly data for training.
TRAIN_RATIO_RANGE = (0.70, 0.90)
MAX_CHART_POINTS = 20_000


def samples_filtered(project: Project, *, label: str | None = None, category: str | None = None,
                     device: str | None = None, q: str | None = None, kind: str | None = None,
                     enabled: bool | None = None, ordering: str = "-created_at") -> QuerySet[Sample]:
    """The project's samples with the explorer's filters. label "" means unlabelled; None: any.

    ordering: one of ORDERINGS, "-" in front for descending (unknown values fall back to newest first).
    """
    rows = Sample.objects.filter(project=project).select_related("uploader", "device")
    if label is not None:
        rows = rows.filter(label=label)
    if category:
        rows = rows.filter(category=category)
    if device:
        rows = rows.filter(device_name=device)
    if kind:
        rows = rows.filter(kind=kind)
    if enabled is not None:
        rows = rows.filter(enabled=enabled)
    if q:
        rows = rows.filter(Q(file_name__icontains=q) | Q(label__icontains=q) | Q(device_name__icontains=q))
    field = ordering.lstrip("-")
    if field not in ORDERINGS:
        ordering, field = "-created_at", "created_at"
    direction = "-" if ordering.startswith("-") else ""
    return rows.order_by(f"{direction}{field}", f"{direction}id")


def dataset_summary(project: Project) -> dict:
    """Per-label sample counts and durations by category, totals, devices, and the train/test split.

    train_ratio: training / (training + testing) over enabled samples, None when there are none;
    ratio_warning names the problem when it is outside 70-90 %.
    """
    rows = (Sample.objects.filter(project=project)
            .values("label", "category", "enabled")
            .annotate(count=Count("id"), duration=Sum("duration_ms")))
    by_label: dict[str, dict] = {}
    totals = {c: {"count": 0, "duration_ms": 0.0} for c in Category.values}
    disabled = 0
    for row in rows:
        if not row["enabled"]:
            disabled += row["count"]
            continue
        entry = by_label.setdefault(row["label"], {"label": row["label"], "count": 0, "duration_ms": 0.0,
                                                   **{c: 0 for c in Category.values}})
        entry["count"] += row["count"]
        entry["duration_ms"] += row["duration"] or 0.0
        entry[row["category"]] += row["count"]
        totals[row["category"]]["count"] += row["count"]
        totals[row["category"]]["duration_ms"] += row["duration"] or 0.0
    train, test = totals["training"]["count"], totals["testing"]["count"]
    ratio = train / (train + test) if train + test else None
    warning = None
    if ratio is not None and not TRAIN_RATIO_RANGE[0] <= ratio <= TRAIN_RATIO_RANGE[1]:
        warning = (f"{ratio:.0%} of the data is for training; keep it between "
                   f"{TRAIN_RATIO_RANGE[0]:.0%} and {TRAIN_RATIO_RANGE[1]:.0%} (move samples to rebalance)")
    devices = sorted(d for d in Sample.objects.filter(project=project).exclude(device_name="")
                     .values_list("device_name", flat=True).distinct())
    return {
        "total": sum(t["count"] for t in totals.values()),
        "total_duration_ms": sum(t["duration_ms"] for t in totals.values()),
        "disabled": disabled,
        "categories": totals,
        "labels": sorted(by_label.values(), key=lambda e: e["label"]),
        "devices": devices,
        "train_ratio": ratio,
        "ratio_warning": warning,
    }


def sample_read(sample: Sample) -> TimeSeries | Image:
    """The canonical payload; a storage problem is a ServiceError (500) naming the sample."""
    from workers.ml.samples import decode

    try:
        return decode(read_bytes(sample.payload_path))
    except (OSError, SampleError, ValueError) as exc:
        raise ServiceError(f"the stored data of sample {sample.id} cannot be read: {exc}", status=500) from exc


def sample_chart(sample: Sample, *, max_points: int = 4000) -> dict:
    """Values per axis for uPlot: {"t": ms, "series": [[axis 0], ...]}; long series are reduced to
    the min and max of each bucket (so peaks and a waveform's envelope survive)."""
    payload = sample_read(sample)
    if isinstance(payload, Image):
        return {"kind": "image", "width": payload.width, "height": payload.height, "channels": payload.channels}
    max_points = max(16, min(int(max_points), MAX_CHART_POINTS))
    values = payload.values.astype(np.float64)
    n = len(values)
    step = payload.interval_ms
    if n <= max_points:
        t = np.arange(n) * step
        series = values.T
        downsampled = False
    else:
        bucket = math.ceil(n / (max_points // 2))
        buckets = math.ceil(n / bucket)
        padded = np.concatenate([values, np.repeat(values[-1:], buckets * bucket - n, axis=0)])
        shaped = padded.reshape(buckets, bucket, -1)
        lows, highs = shaped.min(axis=1), shaped.max(axis=1)
        series = np.empty((values.shape[1], buckets * 2))
        series[:, 0::2], series[:, 1::2] = lows.T, highs.T
        starts = np.arange(buckets) * bucket * step
        t = np.empty(buckets * 2)
        t[0::2], t[1::2] = starts, starts + bucket * step / 2
        downsampled = True
    return {
        "kind": sample.kind,
        "interval_ms": step,
        "frequency_hz": payload.frequency_hz,
        "sensors": [{"name": s.name, "units": s.units} for s in payload.sensors],
        "length": n,
        "duration_ms": payload.duration_ms,
        "downsampled": downsampled,
        "t": np.round(t, 6).tolist(),
        "series": [np.round(axis, 6).tolist() for axis in series],
    }
