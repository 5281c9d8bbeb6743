"""The project's impulse: reading the current version and saving a new one (checked against the engine's blocks)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from workers.ml.pipeline import Impulse as EngineImpulse
from workers.ml.pipeline import ImpulseError, parse_impulse

from .models import Category, Impulse, Project, Sample, SampleKind
from .services import Actor, ServiceError, activity_log


def project_axes(project: Project) -> list[str] | None:
    """Axis names the project's time-series data has (in first-seen order), or None without such data."""
    axes: list[str] = []
    seen = False
    for sensors in (
        Sample.objects.filter(project=project, enabled=True)
        .exclude(kind=SampleKind.IMAGE)
        .values_list("sensors", flat=True)
        .distinct()[:1000]
    ):
        seen = True
        for s in sensors or []:
            name = s.get("name") if isinstance(s, dict) else None
            if name and name not in axes:
                axes.append(name)
    return axes if seen else None


def project_rates(project: Project) -> list[float]:
    """Distinct sampling rates (Hz) of the project's time-series data."""
    intervals = (
        Sample.objects.filter(project=project, enabled=True, interval_ms__gt=0)
        .exclude(kind=SampleKind.IMAGE)
        .values_list("interval_ms", flat=True)
        .distinct()[:1000]
    )
    return [1000.0 / i for i in intervals]


def default_spec(project: Project) -> dict:
    """A starting impulse for the project's data: spectral analysis + dense classifier for time series,
    MFE for audio, the image block for images."""
    first = Sample.objects.filter(project=project, enabled=True).order_by("id").first()
    axes = project_axes(project) or ["accX", "accY", "accZ"]
    learn = [{"id": "classifier", "block": "classifier", "inputs": []}]
    if first is not None and first.kind == SampleKind.IMAGE:
        return {
            "input": {
                "type": "image",
                "width": 32,
                "height": 32,
                "resize_mode": "squash",
                "color": "grayscale",
            },
            "dsp": [{"id": "image", "block": "image", "params": {"color": "grayscale"}}],
            "learn": [{"id": "classifier", "block": "classifier", "inputs": ["image"]}],
        }
    if first is not None and first.kind == SampleKind.AUDIO:
        return {
            "input": {
                "type": "time-series",
                "window_size_ms": 1000,
                "window_increase_ms": 500,
                "frequency_hz": 16000,
                "zero_pad": True,
            },
            "dsp": [{"id": "mfe", "block": "mfe", "axes": axes[:1]}],
            "learn": [{"id": "classifier", "block": "classifier", "inputs": ["mfe"]}],
        }
    freq = 100.0
    if first is not None and first.interval_ms:
        freq = round(1000.0 / first.interval_ms, 3)
    learn[0]["inputs"] = ["spectral"]
    # Even bands up to Nyquist and a filter only where there is room for one: valid at any rate.
    params = {
        "spectral_power_edges": [],
        "fft_length": 64 if freq <= 25 else 128,
        "filter_type": "low" if freq >= 20 else "none",
        "filter_cutoff": min(3.0, freq / 4),
    }
    return {
        "input": {
            "type": "time-series",
            "window_size_ms": 2000,
            "window_increase_ms": 500,
            "frequency_hz": freq,
            "zero_pad": True,
        },
        "dsp": [{"id": "spectral", "block": "spectral-analysis", "axes": axes, "params": params}],
        "learn": learn,
    }


def impulse_current(project: Project) -> Impulse | None:
    return Impulse.objects.filter(project=project).order_by("-version").first()


def impulse_parse(project: Project, spec: dict) -> EngineImpulse:
    """The engine's view of a spec, checked against the project's data; ServiceError (400) naming the field."""
    try:
        return parse_impulse(spec, axes=project_axes(project), data_hz=project_rates(project))
    except ImpulseError as exc:
        raise ServiceError(exc.message, status=400, field=exc.field) from None


@transaction.atomic
def impulse_save(*, project: Project, actor: Actor, spec: dict) -> tuple[Impulse, bool]:
    """Store the spec as a new version unless it equals the current one; returns (row, created)."""
    engine = impulse_parse(project, spec)
    Project.objects.select_for_update().filter(
        pk=project.pk
    ).first()  # one version number at a time
    current = impulse_current(project)
    if current is not None and current.spec == engine.spec:
        return current, False
    version = (Impulse.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0) + 1
    user = actor.user if getattr(actor.user, "pk", None) else None
    row = Impulse.objects.create(
        project=project, version=version, spec=engine.spec, created_by=user
    )
    activity_log(
        project=project,
        actor=actor,
        verb="impulse.saved",
        version=version,
        dsp=[d["block"] for d in engine.spec["dsp"]],
        learn=[b["block"] for b in engine.spec["learn"]],
    )
    return row, True


def data_snapshot(project: Project, categories: tuple[str, ...]) -> list[list]:
    """[[sample id, sha256], ...] of the enabled samples in these categories (what a job will use)."""
    return [
        list(r)
        for r in Sample.objects.filter(project=project, enabled=True, category__in=categories)
        .order_by("id")
        .values_list("id", "sha256")
    ]


TRAINING_CATEGORIES = (Category.TRAINING,)
TESTING_CATEGORIES = (Category.TESTING,)
