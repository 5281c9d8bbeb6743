"""The flatten block against scipy.stats and numpy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from workers.ml.dsp import DspParamError, flatten, params_from_dict


def test_all_statistics_match_numpy_and_scipy_stats(noisy_accel: np.ndarray) -> None:
    p = flatten.Params(scale_axes=2.0, skewness=True, kurtosis=True)
    out = flatten.features(noisy_accel, p, frequency=100.0).reshape(3, 7)
    x = noisy_accel.astype(np.float64) * 2.0
    ref = np.stack(
        [
            x.mean(axis=0),
            x.min(axis=0),
            x.max(axis=0),
            np.sqrt((x**2).mean(axis=0)),
            x.std(axis=0),
            stats.skew(x, axis=0),
            stats.kurtosis(x, axis=0),
        ],
        axis=1,
    )
    # float32 output: 1e-5 relative
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_only_chosen_statistics_are_output_in_fixed_order(accel: np.ndarray) -> None:
    p = flatten.Params(
        average=False, minimum=False, maximum=True, rms=False, stdev=False, kurtosis=True
    )
    out = flatten.features(accel, p, frequency=100.0)
    assert flatten.output_shape(p, input_shape=(200, 3), frequency=100.0) == (6,)
    names = flatten.feature_names(p, axes=["x", "y", "z"], input_shape=(200, 3), frequency=100.0)
    assert names[:2] == ["x maximum", "x kurtosis"]
    assert out[0] == pytest.approx(accel[:, 0].max())


def test_a_constant_axis_gives_finite_skewness_and_kurtosis() -> None:
    p = flatten.Params(skewness=True, kurtosis=True)
    out = flatten.features(np.full((50, 1), 3.0, np.float32), p, frequency=10.0)
    assert np.all(np.isfinite(out))
    assert out[-2:].tolist() == [0.0, -3.0]


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"scale_axes": 0}, "scale_axes"),
        ({"scale_axes": "big"}, "scale_axes"),
        ({"average": 1}, "average"),
        ({"median": True}, "median"),
    ],
)
def test_bad_parameters_are_rejected_naming_them(params: dict, word: str) -> None:
    with pytest.raises(DspParamError, match=word):
        flatten.validate(params_from_dict("flatten", params), input_shape=(10, 1), frequency=1.0)


def test_choosing_no_statistic_is_rejected() -> None:
    none = dict.fromkeys(flatten.STATISTICS, False)
    with pytest.raises(DspParamError, match="at least one statistic"):
        flatten.validate(flatten.Params(**none), input_shape=(10, 1), frequency=1.0)
