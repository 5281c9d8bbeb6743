"""The image block: pixel scaling, and grayscale against Pillow's own "L" conversion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from workers.ml.dsp import DspParamError, image, params_from_dict


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (12, 16, 3)).astype(np.uint8)


def test_rgb_scaled_to_0_1_and_int8_range(rgb: np.ndarray) -> None:
    x = rgb.astype(np.float32)
    out = image.features(x, image.Params(), frequency=0.0)
    np.testing.assert_allclose(out, (x / 255.0).reshape(-1), rtol=1e-7)
    out8 = image.features(x, image.Params(scale="int8"), frequency=0.0)
    assert out8.min() >= -128 and out8.max() <= 127
    np.testing.assert_array_equal(out8, (x - 128.0).reshape(-1))


def test_grayscale_matches_pillow_luma_within_rounding(rgb: np.ndarray) -> None:
    p = image.Params(color="grayscale")
    out = image.features(rgb.astype(np.float32), p, frequency=0.0)
    ref = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32) / 255.0
    # Pillow rounds to an integer level: half a level of tolerance
    np.testing.assert_allclose(out, ref.reshape(-1), atol=0.5 / 255 + 1e-6)
    assert image.output_shape(p, input_shape=(12, 16, 3), frequency=0.0) == (12, 16, 1)


def test_a_grayscale_image_fed_to_an_rgb_block_is_repeated_over_channels() -> None:
    g = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    out = image.features(g, image.Params(), frequency=0.0).reshape(3, 4, 3)
    assert np.all(out[..., 0] == out[..., 2])


@pytest.mark.parametrize(
    ("params", "word"),
    [({"scale": "0-255"}, "scale"), ({"color": "bgr"}, "color"), ({"width": 96}, "width")],
)
def test_bad_parameters_are_rejected_naming_them(params: dict, word: str) -> None:
    with pytest.raises(DspParamError, match=word):
        image.validate(params_from_dict("image", params), input_shape=(8, 8, 3), frequency=0.0)


def test_an_input_with_four_channels_is_rejected() -> None:
    with pytest.raises(DspParamError, match="input_shape"):
        image.validate(image.Params(), input_shape=(8, 8, 4), frequency=0.0)
