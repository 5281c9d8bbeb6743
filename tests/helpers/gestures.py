"""Small synthetic motion data sets (3-axis sinusoids per label) stored through sample_create, and an impulse for them."""

from __future__ import annotations

import numpy as np

from workers.ml.samples import Sensor, TimeSeries

AXES = ("accX", "accY", "accZ")
# label -> dominant frequency (Hz): the spectral block separates them easily
GESTURES = {"idle": 0.0, "wave": 2.0, "shake": 6.0}


def gesture_series(label: str, seed: int, seconds: float = 3.0, hz: float = 50.0) -> TimeSeries:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * hz)) / hz
    f = GESTURES[label]
    base = np.stack([np.sin(2 * np.pi * f * t + p) * (3 if f else 0) for p in (0, 1, 2)], axis=1)
    values = base + rng.normal(0, 0.3, base.shape) + np.array([0, 0, 9.8])
    return TimeSeries(
        values=values.astype(np.float32),
        interval_ms=1000.0 / hz,
        sensors=tuple(Sensor(a, "m/s2") for a in AXES),
    )


def add_samples(
    project,
    *,
    per_label: int = 4,
    category: str = "training",
    labels=tuple(GESTURES),
    seed: int = 0,
    seconds: float = 3.0,
    hz: float = 50.0,
) -> list:
    from projects.ingestion import ParsedSample
    from projects.services_samples import sample_create

    out = []
    for i, label in enumerate(labels):
        for k in range(per_label):
            series = gesture_series(label, seed * 1000 + i * 100 + k, seconds, hz)
            parsed = ParsedSample(
                payload=series,
                kind="time-series",
                device_name=None,
                device_type=None,
                sensors=series.sensors,
                raw_extension="json",
                signed=False,
            )
            out.append(
                sample_create(
                    project=project,
                    category=category,
                    label=label,
                    file_name=f"{label}.{seed}{k:03d}.json",
                    parsed=parsed,
                    log_activity=False,
                )
            )
    return out


def impulse_spec(
    *,
    epochs: int = 20,
    anomaly: bool = True,
    window_ms: int = 1000,
    frequency_hz: float = 50,
    layers=(16, 8),
) -> dict:
    learn = [
        {
            "id": "classifier",
            "block": "classifier",
            "inputs": ["spectral"],
            "arch": {"kind": "dense", "layers": list(layers), "dropout": 0.1},
            "settings": {
                "epochs": epochs,
                "learning_rate": 0.01,
                "batch_size": 16,
                "validation_split": 0.25,
            },
        }
    ]
    if anomaly:
        learn.append({"id": "anomaly", "block": "anomaly", "inputs": ["spectral"], "clusters": 4})
    return {
        "input": {
            "type": "time-series",
            "window_size_ms": window_ms,
            "window_increase_ms": 500,
            "frequency_hz": frequency_hz,
            "zero_pad": True,
        },
        "dsp": [
            {
                "id": "spectral",
                "block": "spectral-analysis",
                "axes": list(AXES),
                "params": {"filter_type": "none", "fft_length": 64},
            }
        ],
        "learn": learn,
    }
