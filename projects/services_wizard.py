"""The "New project" wizard: what the user builds (motion, audio, images, bring a model) picks a starting
impulse and the page the user lands on."""
from __future__ import annotations

import copy
from dataclasses import dataclass

from django.db import transaction
from django.urls import NoReverseMatch, reverse

from .demo import DEMO_IMPULSE
from .models import Project
from .services import Actor, ServiceError, project_create

MOTION_IMPULSE = copy.deepcopy(DEMO_IMPULSE)
# A phone or an accelerometer board: three axes at 62.5 Hz (Edge Impulse's default), 2 s gestures.
MOTION_IMPULSE["input"] = {"type": "time-series", "window_size_ms": 2000, "window_increase_ms": 500,
                           "frequency_hz": 62.5, "zero_pad": True}
MOTION_IMPULSE["dsp"] = [{"id": "spectral", "block": "spectral-analysis", "axes": ["accX", "accY", "accZ"],
                          "params": {"filter_type": "none", "fft_length": 64}}]

# Keyword spotting: 1 s of 16 kHz audio, MFCC, a small 1D CNN over the frames.
AUDIO_IMPULSE = {
    "input": {"type": "time-series", "window_size_ms": 1000, "window_increase_ms": 500, "frequency_hz": 16000,
              "zero_pad": True},
    "dsp": [{"id": "mfcc", "block": "mfcc", "axes": ["audio"]}],
    "learn": [{"id": "classifier", "block": "classifier", "inputs": ["mfcc"],
               "arch": {"kind": "conv1d", "layers": [8, 16], "kernel_size": 3, "dropout": 0.25},
               "settings": {"epochs": 50, "learning_rate": 0.005}}],
}

# Small colour images and a small 2D CNN; the user can switch to transfer learning on the impulse page.
IMAGE_IMPULSE = {
    "input": {"type": "image", "width": 48, "height": 48, "resize_mode": "fit-short", "color": "rgb"},
    "dsp": [{"id": "image", "block": "image", "params": {"color": "rgb"}}],
    "learn": [{"id": "classifier", "block": "classifier", "inputs": ["image"],
               "arch": {"kind": "conv2d", "layers": [8, 16], "kernel_size": 3, "dropout": 0.25},
               "settings": {"epochs": 30, "learning_rate": 0.005}}],
}


@dataclass(frozen=True)
class ProjectKind:
    key: str
    title: str
    help: str
    impulse: dict | None
    lands_on: str  # URL name of the first page, with a project_id kwarg


KINDS: dict[str, ProjectKind] = {k.key: k for k in [
    ProjectKind("motion", "Motion", "Accelerometer or gyroscope gestures on a microcontroller.",
                MOTION_IMPULSE, "data"),
    ProjectKind("audio", "Audio", "Keywords or sounds from a microphone or WAV files.", AUDIO_IMPULSE, "data"),
    ProjectKind("images", "Images", "Classify photos, for a phone or a Raspberry Pi.", IMAGE_IMPULSE, "data"),
    ProjectKind("model", "Bring a model", "Profile and quantize an ONNX, TFLite or Keras model you have.",
                None, "byom"),
]}


def starting_impulse(kind: str) -> dict | None:
    """A copy of the impulse the wizard sets for this kind (None for "bring a model" or no kind)."""
    k = KINDS.get(kind)
    return copy.deepcopy(k.impulse) if k and k.impulse else None


@transaction.atomic
def project_create_guided(*, owner, name: str, description: str = "", kind: str = "") -> Project:
    """Create the project and, for a known kind, save its starting impulse; an unknown kind is refused."""
    if kind and kind not in KINDS:
        raise ServiceError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", status=400, field="kind")
    project = project_create(owner=owner, name=name, description=description, kind=kind)
    spec = starting_impulse(kind)
    if spec is not None:
        from .services_impulse import impulse_save

        impulse_save(project=project, actor=Actor(user=owner), spec=spec)
    return project


def landing_url(project: Project) -> str:
    """Where the wizard sends the user: data acquisition, the model upload page, or the overview."""
    k = KINDS.get(project.kind)
    for name in ([k.lands_on] if k else []) + ["project"]:
        try:
            return reverse(name, kwargs={"project_id": project.id})
        except NoReverseMatch:
            continue
    return f"/projects/{project.id}/"
