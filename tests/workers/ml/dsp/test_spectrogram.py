"""The spectrogram block against scipy.signal.spectrogram (boxcar window, no detrend).

scipy's "spectrum" scaling divides by frame_len^2 and doubles the one-sided interior bins; the
block's power is |X|^2 / fft_length, so the reference is rescaled by frame_len^2 / fft_length and
the doubling undone. Tolerance: 1e-4 relative on power, 1e-5 absolute on the 0..1 dB scale.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from workers.ml.dsp import DspParamError, params_from_dict, spectrogram
from workers.ml.dsp.common import log_energy_db


def reference_power(x: np.ndarray, fs: float, frame: int, step: int, nfft: int) -> np.ndarray:
    _, _, sxx = sps.spectrogram(
        x.astype(np.float64),
        fs=fs,
        window="boxcar",
        nperseg=frame,
        noverlap=frame - step,
        nfft=nfft,
        detrend=False,
        scaling="spectrum",
        mode="psd",
    )
    sxx = sxx.T * frame**2 / nfft
    sxx[:, 1:-1] /= 2.0
    return sxx


def test_power_matches_scipy_spectrogram(audio: np.ndarray) -> None:
    p = spectrogram.Params(frame_length=0.025, frame_stride=0.01, fft_length=512, show_db=False)
    spectrogram.validate(p, input_shape=audio.shape, frequency=16000.0)
    out = spectrogram.features(audio, p, frequency=16000.0)
    ref = reference_power(audio[:, 0], 16000.0, 400, 160, 512)
    assert spectrogram.output_shape(p, input_shape=audio.shape, frequency=16000.0) == ref.shape
    np.testing.assert_allclose(out.reshape(ref.shape), ref, rtol=1e-4, atol=1e-9)


def test_db_scale_maps_the_noise_floor_to_zero_and_is_clipped(audio: np.ndarray) -> None:
    p = spectrogram.Params(frame_length=0.02, frame_stride=0.02, fft_length=512, noise_floor_db=-60)
    out = spectrogram.features(audio, p, frequency=16000.0)
    ref = log_energy_db(reference_power(audio[:, 0], 16000.0, 320, 320, 512), -60.0)
    np.testing.assert_allclose(out, ref.reshape(-1), atol=1e-5)
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"fft_length": 100}, "fft_length"),
        ({"frame_length": -0.02}, "frame_length"),
        ({"frame_stride": 0}, "frame_stride"),
        ({"frame_length": 2.0}, "frame_length"),
        ({"noise_floor_db": 5}, "noise_floor_db"),
        ({"log": True}, "log"),
    ],
)
def test_bad_parameters_are_rejected_naming_them(params: dict, word: str) -> None:
    with pytest.raises(DspParamError, match=word):
        spectrogram.validate(
            params_from_dict("spectrogram", params), input_shape=(16000, 1), frequency=16000.0
        )


def test_more_than_one_axis_is_rejected() -> None:
    with pytest.raises(DspParamError, match="axes"):
        spectrogram.validate(spectrogram.Params(), input_shape=(16000, 3), frequency=16000.0)
