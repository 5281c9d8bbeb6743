"""The block registry, parameter parsing, descriptions, and the pinned outputs of every block."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from workers.ml import dsp
from workers.ml.dsp import DspParamError

from .signals import deterministic_audio, deterministic_signal


def pinned_input(name: str) -> tuple[np.ndarray, float]:
    if name == "image":
        y, x, c = np.mgrid[0:10, 0:12, 0:3]
        return ((y * 37 + x * 11 + c * 91) % 256).astype(np.float32), 0.0
    if name in ("spectrogram", "mfe", "mfcc"):
        return deterministic_audio(8000, 16000.0), 16000.0
    return deterministic_signal(200, 100.0, axes=3), 100.0


# Pinned configurations: each block's defaults, plus modes the defaults do not reach.
PINNED_PARAMS = {name: (name, {}) for name in dsp.BLOCKS} | {
    "spectral-analysis/wavelet": (
        "spectral-analysis",
        {"analysis_type": "wavelet", "wavelet_level": 2},
    ),
    "mfcc/lifter-energy": ("mfcc", {"cepstral_lifter": 22, "append_energy": True}),
}


def output_digest(key: str) -> str:
    name, overrides = PINNED_PARAMS[key]
    block = dsp.get_block(name)
    window, fs = pinned_input(name)
    params = dsp.params_from_dict(name, overrides)
    out = block.features(window, params, frequency=fs).astype(np.float64)
    # 4 decimals absorb BLAS/libm differences; "+ 0.0" folds -0.0 into 0.0
    text = ",".join(f"{v:.4f}" for v in np.round(out, 4) + 0.0)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# {configuration: (IMPLEMENTATION_VERSION, digest of its output on the pinned input)}. When a
# block's output changes on purpose, bump its IMPLEMENTATION_VERSION and update both numbers here.
PINNED = {
    "raw": (1, "cfaf68d9fbe0723d"),
    "flatten": (1, "034e0ef0846724e9"),
    "spectral-analysis": (1, "cf050bba14d5282b"),
    "spectral-analysis/wavelet": (1, "7862c2fd3f2b268d"),
    "spectrogram": (1, "ee6f787c26f9a597"),
    "mfe": (1, "541d8c9fb11fcf1f"),
    "mfcc": (1, "e9312e7c10b50892"),
    "mfcc/lifter-energy": (1, "cf128226ea4f26a0"),
    "image": (1, "64e83043f313da36"),
}


@pytest.mark.parametrize("key", sorted(PINNED_PARAMS))
def test_block_output_is_pinned_to_its_implementation_version(key: str) -> None:
    version, digest = PINNED[key]
    actual = output_digest(key)
    name = PINNED_PARAMS[key][0]
    if dsp.get_block(name).IMPLEMENTATION_VERSION == version:
        assert actual == digest, f"{key} output changed: bump IMPLEMENTATION_VERSION ({actual})"
    else:
        pytest.fail(f"{name} IMPLEMENTATION_VERSION changed: update PINNED[{key!r}] to {actual}")


def test_every_block_has_the_common_interface() -> None:
    for name, block in dsp.BLOCKS.items():
        window, fs = pinned_input(name)
        p = block.Params()
        block.validate(p, input_shape=window.shape, frequency=fs)
        out = block.features(window, p, frequency=fs)
        shape = block.output_shape(p, input_shape=window.shape, frequency=fs)
        axes = [f"a{i}" for i in range(window.shape[-1])]
        names = block.feature_names(p, axes=axes, input_shape=window.shape, frequency=fs)
        assert out.dtype == np.float32 and out.ndim == 1, name
        assert out.size == int(np.prod(shape)) == len(names), name
        assert isinstance(block.IMPLEMENTATION_VERSION, int) and block.__doc__, name


def test_describe_gives_a_json_form_for_every_block() -> None:
    for name in dsp.BLOCKS:
        d = json.loads(json.dumps(dsp.describe(name)))
        assert d["version"] >= 1 and d["title"] and d["doc"]
        assert all({"name", "type", "default"} <= set(p) for p in d["parameters"])
    mfe = {p["name"]: p for p in dsp.describe("mfe")["parameters"]}
    assert mfe["num_filters"] == {
        "name": "num_filters",
        "type": "int",
        "default": 40,
        "help": "Mel filters",
        "min": 2,
        "max": 512,
    }
    assert mfe["high_frequency"]["type"] == "float | null"
    spectral = {p["name"]: p for p in dsp.describe("spectral-analysis")["parameters"]}
    assert spectral["filter_type"]["choices"] == ["none", "low", "high"]
    assert spectral["spectral_power_edges"]["type"] == "list[float]"


def test_params_round_trip_through_a_dict() -> None:
    for name, block in dsp.BLOCKS.items():
        p = block.Params()
        assert dsp.params_from_dict(name, json.loads(json.dumps(dsp.params_to_dict(p)))) == p
    p = dsp.params_from_dict(
        "spectral-analysis", {"spectral_power_edges": [1, 2, 4], "fft_length": 64.0}
    )
    assert p.spectral_power_edges == (1.0, 2.0, 4.0) and p.fft_length == 64


def test_an_unknown_block_is_rejected_naming_it() -> None:
    with pytest.raises(DspParamError, match="wavelets"):
        dsp.get_block("wavelets")


@pytest.mark.parametrize(
    ("d", "word"),
    [
        ({"fft_length": "256"}, "fft_length must be an integer"),
        ({"fft_length": True}, "fft_length"),
        ({"frame_length": None}, "frame_length"),
        ({"high_frequency": None, "nfilt": 3, "zz": 1}, "unknown parameter.*nfilt, zz"),
        ({"num_filters": -1}, "num_filters must be at least 2"),
    ],
)
def test_params_from_dict_rejects_wrong_types_and_unknown_keys(d: dict, word: str) -> None:
    with pytest.raises(DspParamError, match=word):
        dsp.params_from_dict("mfe", d)


def test_params_from_dict_rejects_a_non_dict() -> None:
    with pytest.raises(DspParamError, match="object"):
        dsp.params_from_dict("raw", [1.0])  # type: ignore[arg-type]
