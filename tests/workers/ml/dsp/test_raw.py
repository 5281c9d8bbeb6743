"""The raw block: values in row-major order, scaled."""

from __future__ import annotations

import numpy as np
import pytest

from workers.ml.dsp import DspParamError, params_from_dict, raw


def test_raw_features_are_the_scaled_values_in_row_major_order(accel: np.ndarray) -> None:
    p = raw.Params(scale_axes=0.5)
    out = raw.features(accel, p, frequency=100.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, (accel * np.float32(0.5)).reshape(-1))
    assert raw.output_shape(p, input_shape=accel.shape, frequency=100.0) == (200, 3)
    names = raw.feature_names(p, axes=["x", "y", "z"], input_shape=accel.shape, frequency=100.0)
    assert names[:4] == ["x 0", "y 0", "z 0", "x 1"]


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"scale_axes": 0.0}, "scale_axes"),
        ({"scale_axes": 1e9}, "scale_axes"),
        ({"gain": 2}, "gain"),
    ],
)
def test_bad_parameters_are_rejected_naming_them(params: dict, word: str) -> None:
    with pytest.raises(DspParamError, match=word):
        raw.validate(params_from_dict("raw", params), input_shape=(10, 1), frequency=1.0)


def test_an_input_that_is_not_a_time_series_is_rejected() -> None:
    with pytest.raises(DspParamError, match="input_shape"):
        raw.validate(raw.Params(), input_shape=(10, 10, 3), frequency=1.0)
