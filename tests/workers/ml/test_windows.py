"""The input block: resampling, window cutting and image preparation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from workers.ml.windows import (
    ImageInput,
    InputBlockError,
    TimeSeriesInput,
    prepare_image,
    resample,
    split_windows,
    window_length,
)


def test_windows_are_cut_every_increase_with_their_start_times() -> None:
    values = np.arange(500, dtype=np.float64)[:, None] * [1.0, -1.0]  # 5 s at 100 Hz
    inp = TimeSeriesInput(window_size_ms=2000, window_increase_ms=500, frequency_hz=100.0)
    windows, starts = split_windows(values, 10.0, inp)
    assert windows.shape == (7, 200, 2) and windows.dtype == np.float32
    assert window_length(inp) == 200
    np.testing.assert_array_equal(starts, [0, 500, 1000, 1500, 2000, 2500, 3000])
    np.testing.assert_array_equal(windows[2, :, 0], np.arange(100, 300))
    np.testing.assert_array_equal(windows[2, :, 1], -np.arange(100, 300))


def test_a_short_sample_gives_one_zero_padded_window_or_none() -> None:
    values = np.ones((30, 3))
    inp = TimeSeriesInput(window_size_ms=1000, frequency_hz=50.0)
    windows, starts = split_windows(values, 20.0, inp)
    assert windows.shape == (1, 50, 3) and starts.tolist() == [0.0]
    assert windows[0, :30].min() == 1.0 and windows[0, 30:].max() == 0.0
    none, _ = split_windows(values, 20.0, TimeSeriesInput(1000, 500, 50.0, zero_pad=False))
    assert none.shape == (0, 50, 3)


def test_split_resamples_to_the_input_frequency() -> None:
    t = np.arange(0, 2, 1 / 200.0)
    values = np.sin(2 * np.pi * 3 * t)[:, None]
    windows, _ = split_windows(values, 5.0, TimeSeriesInput(2000, 1000, 50.0))
    assert windows.shape == (1, 100, 1)
    expected = np.sin(2 * np.pi * 3 * np.arange(100) / 50.0)
    # away from the edges, where the polyphase filter sees no padding
    np.testing.assert_allclose(windows[0, 10:-10, 0], expected[10:-10], atol=0.02)


def test_resample_uses_a_rational_polyphase_ratio_and_is_identity_at_equal_rates() -> None:
    x = np.random.default_rng(0).normal(size=(300, 2))
    assert resample(x, 100.0, 100.0) is not None
    np.testing.assert_array_equal(resample(x, 100.0, 100.0), x)
    np.testing.assert_allclose(resample(x, 100.0, 62.5), resample_poly(x, 5, 8, axis=0))


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"window_size_ms": 0}, "window_size_ms"),
        ({"window_increase_ms": -5}, "window_increase_ms"),
        ({"frequency_hz": 0.0}, "frequency_hz"),
        ({"frequency_hz": float("nan")}, "frequency_hz"),
        ({"window_size_ms": 1, "frequency_hz": 100.0}, "window_size_ms"),
    ],
)
def test_bad_time_series_settings_are_rejected_naming_the_field(kwargs: dict, word: str) -> None:
    with pytest.raises(InputBlockError, match=word):
        TimeSeriesInput(**kwargs).validate()


def test_a_bad_interval_is_rejected() -> None:
    with pytest.raises(InputBlockError, match="interval_ms"):
        split_windows(np.ones((10, 1)), 0.0, TimeSeriesInput())


@pytest.fixture
def wide() -> np.ndarray:
    """40 x 80 RGB: left half red, right half blue."""
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :40, 0] = 255
    img[:, 40:, 2] = 255
    return img


def test_squash_stretches_to_the_target(wide: np.ndarray) -> None:
    out = prepare_image(wide, ImageInput(width=20, height=20))
    assert out.shape == (20, 20, 3) and out.dtype == np.float32
    assert out[10, 2, 0] == 255 and out[10, 17, 2] == 255


def test_fit_long_letterboxes_with_black(wide: np.ndarray) -> None:
    out = prepare_image(wide, ImageInput(width=20, height=20, resize_mode="fit-long"))
    assert out.shape == (20, 20, 3)
    assert out[:5].max() == 0 and out[15:].max() == 0  # 20x10 image centred
    assert out[10, 2, 0] == 255


def test_fit_short_and_crop_take_the_centre(wide: np.ndarray) -> None:
    out = prepare_image(wide, ImageInput(width=20, height=20, resize_mode="fit-short"))
    assert out[10, 2, 0] == 255 and out[10, 17, 2] == 255  # centre 40x40 of 40x80
    crop = prepare_image(wide, ImageInput(width=10, height=10, resize_mode="crop"))
    assert crop[:, :5, 0].min() == 255 and crop[:, 5:, 2].min() == 255


def test_grayscale_has_one_channel_and_rgba_is_accepted(wide: np.ndarray) -> None:
    rgba = np.concatenate([wide, np.full((40, 80, 1), 255, np.uint8)], axis=2)
    out = prepare_image(rgba, ImageInput(width=8, height=8, color="grayscale"))
    assert out.shape == (8, 8, 1) and 0 < out.max() <= 255


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"width": 0}, "width"),
        ({"height": -1}, "height"),
        ({"resize_mode": "stretch"}, "resize_mode"),
        ({"color": "bgr"}, "color"),
    ],
)
def test_bad_image_settings_are_rejected_naming_the_field(kwargs: dict, word: str) -> None:
    with pytest.raises(InputBlockError, match=word):
        prepare_image(np.zeros((4, 4, 3), np.uint8), ImageInput(**kwargs))


def test_a_float_image_is_rejected() -> None:
    with pytest.raises(InputBlockError, match="uint8"):
        prepare_image(np.zeros((4, 4, 3), np.float32), ImageInput())
