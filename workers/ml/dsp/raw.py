"""The raw processing block: the window's values as features, optionally scaled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.ml.dsp.common import DspParamError, check_ranges, param, time_series_shape

TITLE = "Raw data"
IMPLEMENTATION_VERSION = 1


@dataclass(frozen=True)
class Params:
    """Parameters of the raw block."""

    scale_axes: float = param(1.0, min=-1e6, max=1e6, help="Multiply every value by this")


def validate(params: Params, *, input_shape: tuple, frequency: float) -> None:
    check_ranges(params)
    if params.scale_axes == 0:
        raise DspParamError("scale_axes must not be zero")
    time_series_shape(input_shape)


def features(window: np.ndarray, params: Params, *, frequency: float) -> np.ndarray:
    """Row-major values (value 0 axis 0, value 0 axis 1, ...) times scale_axes."""
    w = np.asarray(window, dtype=np.float32)
    return (w.reshape(-1) * np.float32(params.scale_axes)).astype(np.float32)


def output_shape(params: Params, *, input_shape: tuple, frequency: float) -> tuple:
    return time_series_shape(input_shape)


def feature_names(
    params: Params, *, axes: list[str], input_shape: tuple, frequency: float
) -> list[str]:
    n_values, _ = time_series_shape(input_shape)
    return [f"{axis} {i}" for i in range(n_values) for axis in axes]
