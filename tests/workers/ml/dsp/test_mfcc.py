"""The MFCC block against python_speech_features.mfcc (rectangular frames).

The frame count is chosen so psf pads no partial frame. Agreement: 1e-4 absolute and relative
(both compute in float64; the block's output is float32, coefficients reach ~30).
"""

from __future__ import annotations

import numpy as np
import pytest
from python_speech_features import mfcc as psf_mfcc

from workers.ml.dsp import DspParamError, mfcc, params_from_dict


@pytest.mark.parametrize(
    "params",
    [
        mfcc.Params(
            num_filters=26,
            fft_length=512,
            cepstral_lifter=22,
            append_energy=True,
            pre_emphasis=0.97,
            frame_length=0.025,
            frame_stride=0.01,
        ),
        mfcc.Params(),
        mfcc.Params(
            num_filters=32,
            num_cepstral=20,
            low_frequency=80,
            high_frequency=7600,
            pre_emphasis=0.0,
            cepstral_lifter=10,
        ),
    ],
    ids=["psf-defaults", "block-defaults", "band-limited"],
)
def test_mfcc_matches_python_speech_features(audio: np.ndarray, params) -> None:
    fs = 16000.0
    mfcc.validate(params, input_shape=audio.shape, frequency=fs)
    shape = mfcc.output_shape(params, input_shape=audio.shape, frequency=fs)
    ref = psf_mfcc(
        audio[:, 0].astype(np.float64),
        samplerate=fs,
        winlen=params.frame_length,
        winstep=params.frame_stride,
        numcep=params.num_cepstral,
        nfilt=params.num_filters,
        nfft=params.fft_length,
        lowfreq=params.low_frequency,
        highfreq=params.high_frequency,
        preemph=params.pre_emphasis,
        ceplifter=params.cepstral_lifter,
        appendEnergy=params.append_energy,
    )
    # psf pads a partial last frame; the block keeps whole frames only
    ref = ref[: shape[0]]
    assert ref.shape == shape
    out = mfcc.features(audio, params, frequency=fs).reshape(shape)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_silence_gives_finite_coefficients() -> None:
    out = mfcc.features(np.zeros((16000, 1), np.float32), mfcc.Params(), frequency=16000.0)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"num_filters": 64, "fft_length": 32}, "num_filters"),
        ({"fft_length": 100}, "fft_length"),
        ({"num_filters": 40, "low_frequency": 80, "high_frequency": 7600}, "covers no FFT bin"),
        ({"num_cepstral": 0}, "num_cepstral"),
        ({"num_cepstral": 40}, "num_cepstral"),
        ({"pre_emphasis": -0.5}, "pre_emphasis"),
        ({"cepstral_lifter": -2}, "cepstral_lifter"),
        ({"frame_stride": -0.01}, "frame_stride"),
        ({"high_frequency": 8001}, "high_frequency"),
        ({"append_energy": "yes"}, "append_energy"),
        ({"deltas": 2}, "deltas"),
    ],
)
def test_bad_parameters_are_rejected_naming_them(params: dict, word: str) -> None:
    with pytest.raises(DspParamError, match=word):
        mfcc.validate(params_from_dict("mfcc", params), input_shape=(16000, 1), frequency=16000.0)
