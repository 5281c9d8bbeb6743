"""Deterministic windows for the DSP block tests (no RNG stream, so they never drift)."""

from __future__ import annotations

import numpy as np


def deterministic_signal(n: int, frequency: float, axes: int = 1) -> np.ndarray:
    """Sines plus a fixed pseudo-noise pattern, float32 [n, axes]."""
    t = np.arange(n) / frequency
    cols = []
    for a in range(axes):
        tone = np.sin(2 * np.pi * (1.3 + a) * t) + 0.5 * np.sin(2 * np.pi * (7.0 + 2 * a) * t + a)
        noise = (((np.arange(n) * 7919 + 13 * a) % 101) - 50) / 50.0
        cols.append(tone + 0.3 * noise + 0.2 * a)
    return np.stack(cols, axis=1).astype(np.float32)


def deterministic_audio(n: int = 16000, frequency: float = 16000.0) -> np.ndarray:
    t = np.arange(n) / frequency
    x = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.25 * np.sin(2 * np.pi * 1800 * t * (1 + t))
    noise = (((np.arange(n) * 7919) % 1009) - 504) / 504.0
    return (x + 0.05 * noise).astype(np.float32)[:, None]
