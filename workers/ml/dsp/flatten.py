"""The flatten processing block: per-axis statistics (mean, min, max, RMS, std, skewness, kurtosis)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from workers.ml.dsp.common import (
    DspParamError,
    as_time_series,
    check_ranges,
    moments,
    param,
    time_series_shape,
)

TITLE = "Flatten"
IMPLEMENTATION_VERSION = 1

# Output order per axis; also the order of the C struct's flags.
STATISTICS = ("average", "minimum", "maximum", "rms", "stdev", "skewness", "kurtosis")


@dataclass(frozen=True)
class Params:
    """Which statistics to compute per axis, after scaling. Skewness and kurtosis are the biased
    (population) estimates, kurtosis in Fisher's (excess) form, like scipy.stats' defaults."""

    scale_axes: float = param(1.0, min=-1e6, max=1e6, help="Multiply every value by this first")
    average: bool = param(True, help="Mean")
    minimum: bool = param(True, help="Minimum")
    maximum: bool = param(True, help="Maximum")
    rms: bool = param(True, help="Root mean square")
    stdev: bool = param(True, help="Population standard deviation")
    skewness: bool = param(False, help="Skewness")
    kurtosis: bool = param(False, help="Excess kurtosis")


def _chosen(params: Params) -> list[str]:
    return [s for s in STATISTICS if getattr(params, s)]


def validate(params: Params, *, input_shape: tuple, frequency: float) -> None:
    check_ranges(params)
    if params.scale_axes == 0:
        raise DspParamError("scale_axes must not be zero")
    if not _chosen(params):
        raise DspParamError(f"choose at least one statistic of {list(STATISTICS)}")
    time_series_shape(input_shape)


def features(window: np.ndarray, params: Params, *, frequency: float) -> np.ndarray:
    """[axis0 stats..., axis1 stats...] in STATISTICS order, only the chosen ones."""
    x = as_time_series(window) * params.scale_axes
    mean, std, skew, kurt = moments(x)
    table = {
        "average": mean,
        "minimum": x.min(axis=0),
        "maximum": x.max(axis=0),
        "rms": np.sqrt((x * x).mean(axis=0)),
        "stdev": std,
        "skewness": skew,
        "kurtosis": kurt,
    }
    chosen = _chosen(params)
    return np.stack([table[s] for s in chosen], axis=1).reshape(-1).astype(np.float32)


def output_shape(params: Params, *, input_shape: tuple, frequency: float) -> tuple:
    _, n_axes = time_series_shape(input_shape)
    return (n_axes * len(_chosen(params)),)


def feature_names(
    params: Params, *, axes: list[str], input_shape: tuple, frequency: float
) -> list[str]:
    return [f"{axis} {s}" for axis in axes for s in _chosen(params)]


assert [f.name for f in fields(Params)][1:] == list(STATISTICS)
