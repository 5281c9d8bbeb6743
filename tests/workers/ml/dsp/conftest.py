"""Fixtures of the DSP block tests."""

from __future__ import annotations

import numpy as np
import pytest

from .signals import deterministic_audio, deterministic_signal


@pytest.fixture
def accel() -> np.ndarray:
    """2 s of 3-axis accelerometer-like data at 100 Hz."""
    return deterministic_signal(200, 100.0, axes=3)


@pytest.fixture
def audio() -> np.ndarray:
    """1 s of one-axis audio at 16 kHz."""
    return deterministic_audio()


@pytest.fixture
def noisy_accel() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(200, 3)).astype(np.float32) + deterministic_signal(
        200, 100.0, axes=3
    )
