"""The live classification page: pick a model and a device, then watch each window's result as it arrives.
The page itself only lists choices; the work happens in projects/live_classification.py over a websocket."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from .access import user_access
from .live_classification import VARIANTS
from .models import Device, Role, TrainedModel


def _url(name: str, project_id: int) -> str:
    try:
        return reverse(name, kwargs={"project_id": project_id})
    except NoReverseMatch:
        return ""


def live_choices(project) -> tuple[list[dict], list[dict]]:
    """Models that can classify a stream (newest first) and devices (online first)."""
    models = []
    for m in TrainedModel.objects.filter(project=project).select_related("impulse"):
        spec = m.impulse.spec if m.impulse else {}
        inp = spec.get("input", {})
        usable = m.impulse is not None and inp.get("type") != "image" and bool(m.keras_path or m.anomaly)
        accuracy = m.metrics.get("accuracy") if isinstance(m.metrics, dict) else None
        table = (m.variants or {}).get("variants") or {}
        variants = [name for name in VARIANTS if (table.get(name) or {}).get("path")] if m.keras_path else []
        models.append({"id": m.id, "labels": m.labels, "usable": usable, "created_at": m.created_at,
                       "variants": variants,
                       "impulse_version": m.impulse.version if m.impulse else None, "accuracy": accuracy,
                       "axes": list(dict.fromkeys(a for d in spec.get("dsp", []) for a in d.get("axes", []))),
                       "window_ms": inp.get("window_size_ms"), "frequency_hz": inp.get("frequency_hz")})
    devices = sorted(Device.objects.filter(project=project), key=lambda d: (not d.online, d.name or d.device_id))
    return models, [{"pk": d.pk, "name": d.name or d.device_id, "device_id": d.device_id, "online": d.online,
                     "interval_ms": d.stream_interval_ms, "axes": [s["name"] for s in d.stream_sensors or []]}
                    for d in devices]


@login_required
def live_classification(request, project_id: int):
    access = user_access(request.user, project_id, Role.VIEWER)
    models, devices = live_choices(access.project)
    return render(request, "live/classification.html", {
        "project": access.project, "role": access.role, "can_edit": access.can(Role.EDITOR),
        "models": models, "model_variants": {m["id"]: m["variants"] for m in models}, "devices": devices, "this_browser_url": _url("device-this-browser", project_id),
        "training_url": _url("training", project_id), "devices_url": _url("devices", project_id)})
