"""Gesture-like accelerometer signals for simulated devices: idle noise, a wave (a sinusoid on one
axis), a circle (phase-shifted sines on two axes), shake, plus gravity and sensor noise."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRAVITY = 9.81
PATTERNS = ("idle", "wave", "circle", "shake", "updown")


@dataclass(frozen=True)
class GestureParams:
    """How a simulated device moves. frequency_hz 0.3-4 (a hand moves at 1-2 Hz), amplitude in m/s²
    (2-20), noise_std in m/s² (0.01-0.5, a MEMS sensor at rest shows about 0.05)."""

    pattern: str = "wave"
    frequency_hz: float = 1.5
    amplitude: float = 8.0
    noise_std: float = 0.08
    tilt_rad: float = 0.1


def pattern_for_label(label: str) -> str:
    """Map a label to a pattern; unknown labels get a stable pattern chosen from the label's text."""
    label = label.lower()
    for pattern in PATTERNS:
        if pattern in label:
            return pattern
    return PATTERNS[sum(map(ord, label)) % len(PATTERNS)]


class GestureSignal:
    """An endless signal: each call to next_rows() continues where the previous one stopped."""

    def __init__(self, params: GestureParams, *, rate_hz: float, axes: int = 3, seed: int = 0):
        if params.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern '{params.pattern}'; choose one of {', '.join(PATTERNS)}")
        if axes < 1:
            raise ValueError("axes must be at least 1")
        self.params, self.rate_hz, self.axes = params, rate_hz, axes
        self.rng = np.random.default_rng(seed)
        self.t = 0.0
        # Each device holds the board a little differently and moves at its own pace.
        self.phase = self.rng.uniform(0, 2 * np.pi)
        self.speed = params.frequency_hz * self.rng.uniform(0.85, 1.15)

    def next_rows(self, n: int) -> np.ndarray:
        t = self.t + np.arange(n) / self.rate_hz
        self.t = float(t[-1] + 1 / self.rate_hz) if n else self.t
        p, w = self.params, 2 * np.pi * self.speed
        out = np.zeros((n, max(self.axes, 3)))
        out[:, 2] = GRAVITY * np.cos(p.tilt_rad)
        out[:, 0] = GRAVITY * np.sin(p.tilt_rad)
        envelope = 0.75 + 0.25 * np.sin(2 * np.pi * 0.13 * t + self.phase)  # people tire and speed up
        if p.pattern == "wave":
            out[:, 0] += p.amplitude * envelope * np.sin(w * t + self.phase)
            out[:, 1] += 0.2 * p.amplitude * np.sin(2 * w * t)
        elif p.pattern == "circle":
            out[:, 0] += p.amplitude * envelope * np.sin(w * t + self.phase)
            out[:, 1] += p.amplitude * envelope * np.sin(w * t + self.phase + np.pi / 2)
        elif p.pattern == "updown":
            out[:, 2] += p.amplitude * envelope * np.sin(w * t + self.phase)
        elif p.pattern == "shake":
            out[:, :3] += p.amplitude * envelope[:, None] * np.sign(np.sin(3 * w * t + self.phase))[:, None] \
                * np.array([1.0, 0.4, 0.2])
        out += self.rng.normal(0, p.noise_std, size=out.shape)
        return np.round(out[:, : self.axes], 4)
