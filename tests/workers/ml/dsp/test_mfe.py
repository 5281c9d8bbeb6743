"""The MFE block against python_speech_features.fbank (preemph=0, rectangular frames).

The frame count is chosen so psf pads no partial frame; energies agree to 1e-6 relative (both in
float64, only the output is float32). The 0..1 dB scale is then checked against the same formula
applied to psf's energies (1e-5 absolute).
"""

from __future__ import annotations

import numpy as np
import pytest
from python_speech_features import fbank

from workers.ml.dsp import DspParamError, mfe, params_from_dict
from workers.ml.dsp.common import log_energy_db


@pytest.mark.parametrize(
    ("params", "fs"),
    [
        (mfe.Params(frame_length=0.02, frame_stride=0.01, num_filters=40, fft_length=512), 16000.0),
        # a 320-sample frame truncated to fft 256, as psf (and Edge Impulse's defaults) do
        (
            mfe.Params(num_filters=32, fft_length=256, low_frequency=300, high_frequency=7000),
            16000.0,
        ),
        (
            mfe.Params(frame_length=0.032, frame_stride=0.016, num_filters=20, fft_length=256),
            8000.0,
        ),
    ],
)
def test_mfe_matches_python_speech_features(audio: np.ndarray, params, fs: float) -> None:
    mfe.validate(params, input_shape=audio.shape, frequency=fs)
    frames, filters = mfe.output_shape(params, input_shape=audio.shape, frequency=fs)
    ref, _ = fbank(
        audio[:, 0].astype(np.float64),
        samplerate=fs,
        winlen=params.frame_length,
        winstep=params.frame_stride,
        nfilt=params.num_filters,
        nfft=params.fft_length,
        lowfreq=params.low_frequency,
        highfreq=params.high_frequency,
        preemph=0,
    )
    assert ref.shape == (frames, filters)
    mine = mfe.energies(
        audio[:, 0].astype(np.float64),
        frequency=fs,
        frame_length=params.frame_length,
        frame_stride=params.frame_stride,
        num_filters=params.num_filters,
        fft_length=params.fft_length,
        low_frequency=params.low_frequency,
        high_frequency=params.high_frequency,
    )
    np.testing.assert_allclose(mine, ref, rtol=1e-6, atol=1e-12)
    out = mfe.features(audio, params, frequency=fs)
    np.testing.assert_allclose(
        out, log_energy_db(ref, params.noise_floor_db).reshape(-1), atol=1e-5
    )


def test_feature_names_and_shape_agree(audio: np.ndarray) -> None:
    p = mfe.Params()
    shape = mfe.output_shape(p, input_shape=audio.shape, frequency=16000.0)
    names = mfe.feature_names(p, axes=["audio"], input_shape=audio.shape, frequency=16000.0)
    assert len(names) == shape[0] * shape[1] == mfe.features(audio, p, frequency=16000.0).size


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"num_filters": 64, "fft_length": 32}, "num_filters"),
        ({"fft_length": 100}, "fft_length"),
        ({"num_filters": 0}, "num_filters"),
        ({"num_filters": -4}, "num_filters"),
        ({"frame_length": 0}, "frame_length"),
        ({"high_frequency": 9000.0}, "high_frequency"),
        ({"low_frequency": 8000.0}, "low_frequency"),
        ({"low_frequency": -1}, "low_frequency"),
        ({"num_filters": 40.5}, "num_filters"),
        ({"filters": 40}, "filters"),
    ],
)
def test_bad_parameters_are_rejected_naming_them(params: dict, word: str) -> None:
    with pytest.raises(DspParamError, match=word):
        mfe.validate(params_from_dict("mfe", params), input_shape=(16000, 1), frequency=16000.0)
