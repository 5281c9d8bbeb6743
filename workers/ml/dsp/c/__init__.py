"""The C versions of the DSP blocks: their sources and the struct initializers for a Params."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from workers.ml.dsp import flatten, mfcc, mfe, raw, spectral
from workers.ml.dsp.common import (
    DspParamError,
    check_mel,
    check_ranges,
    mel_bin_edges,
    require_frequency,
    samples_for,
)

HERE = Path(__file__).resolve().parent
HEADER = HERE / "studio_dsp.h"
C_SOURCES: dict[str, list[Path]] = {
    "raw": [HERE / "raw.c"],
    "flatten": [HERE / "flatten.c"],
    "spectral-analysis": [HERE / "spectral.c", HERE / "fft.c"],
    "mfe": [HERE / "mfe.c", HERE / "fft.c"],
    "mfcc": [HERE / "mfcc.c", HERE / "mfe.c", HERE / "fft.c"],
}
# Function/type prefix per block: <prefix>_features, <prefix>_feature_count, <prefix>_params_t
C_PREFIX: dict[str, str] = {
    "raw": "studio_dsp_raw",
    "flatten": "studio_dsp_flatten",
    "spectral-analysis": "studio_dsp_spectral",
    "mfe": "studio_dsp_mfe",
    "mfcc": "studio_dsp_mfcc",
}
# Compiled limits of studio_dsp.h that are not overridable by a -D
MAX_SOS, MAX_PEAKS, MAX_BANDS, MAX_FILTERS = 6, 32, 64, 128


def _f(v: float) -> str:
    text = f"{float(np.float32(v)):.9g}"
    if not any(c in text for c in ".en"):
        text += ".0"
    return text + "f"


def _ints(values: Any) -> str:
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


def _raw(p: raw.Params, frequency: float, n_axes: int) -> str:
    return f"{{ {_f(p.scale_axes)} /* scale_axes */ }}"


def _flatten(p: flatten.Params, frequency: float, n_axes: int) -> str:
    flags = ", ".join(f"{int(getattr(p, s))} /* {s} */" for s in flatten.STATISTICS)
    return f"{{ {_f(p.scale_axes)} /* scale_axes */, {flags} }}"


def _spectral(p: spectral.Params, frequency: float, n_axes: int) -> str:
    if p.analysis_type != "fft":
        raise DspParamError(f"analysis_type {p.analysis_type} has no C implementation (fft has)")
    sos = spectral.filter_sos(p, frequency)
    if len(sos) > MAX_SOS:
        raise DspParamError(
            f"filter_order {p.filter_order} needs more than {MAX_SOS} sections in C"
        )
    if p.spectral_peaks_count > MAX_PEAKS:
        raise DspParamError(f"spectral_peaks_count is limited to {MAX_PEAKS} in C")
    edges = spectral.band_edges(p, frequency)
    if len(edges) - 1 > MAX_BANDS:
        raise DspParamError(f"spectral_power_bands is limited to {MAX_BANDS} in C")
    bins = spectral.band_bins(p, frequency)
    sos_text = ", ".join("{" + ", ".join(_f(c) for c in row) + "}" for row in sos) or "{0}"
    return (
        f"{{ {_f(p.scale_axes)} /* scale_axes */, {len(sos)} /* n_sections */, {{{sos_text}}}, "
        f"{p.fft_length} /* fft_length */, {p.spectral_peaks_count} /* peaks_count */, "
        f"{_f(p.spectral_peaks_threshold)} /* peaks_threshold */, {int(p.do_log)} /* do_log */, "
        f"{len(bins)} /* n_bands */, {{{', '.join(_ints(b) for b in bins)}}} }}"
    )


def _mel(p: mfe.Params | mfcc.Params, frequency: float, n_axes: int, noise_floor_db: float) -> str:
    if n_axes != 1:
        raise DspParamError(f"this block takes one axis (audio), the input has {n_axes} axes")
    if p.num_filters > MAX_FILTERS:
        raise DspParamError(f"num_filters is limited to {MAX_FILTERS} in C")
    high = check_mel(
        num_filters=p.num_filters,
        fft_length=p.fft_length,
        low_frequency=p.low_frequency,
        high_frequency=p.high_frequency,
        frequency=frequency,
    )
    edges = mel_bin_edges(p.num_filters, p.fft_length, frequency, p.low_frequency, high)
    return (
        f"{{ {samples_for(p.frame_length, frequency)} /* frame_length */, "
        f"{samples_for(p.frame_stride, frequency)} /* frame_stride */, "
        f"{p.fft_length} /* fft_length */, {p.num_filters} /* num_filters */, "
        f"{_ints(edges)} /* filter_bins */, {_f(noise_floor_db)} /* noise_floor_db */ }}"
    )


def _mfe(p: mfe.Params, frequency: float, n_axes: int) -> str:
    return _mel(p, frequency, n_axes, p.noise_floor_db)


def _mfcc(p: mfcc.Params, frequency: float, n_axes: int) -> str:
    mel = _mel(p, frequency, n_axes, 0.0)
    return (
        f"{{ {mel}, {p.num_cepstral} /* num_cepstral */, {_f(p.pre_emphasis)} /* pre_emphasis */, "
        f"{p.cepstral_lifter} /* cepstral_lifter */, {int(p.append_energy)} /* append_energy */ }}"
    )


_EMITTERS = {
    "raw": (raw.Params, _raw),
    "flatten": (flatten.Params, _flatten),
    "spectral-analysis": (spectral.Params, _spectral),
    "mfe": (mfe.Params, _mfe),
    "mfcc": (mfcc.Params, _mfcc),
}


def c_params_initializer(block_name: str, params: Any, *, frequency: float, n_axes: int) -> str:
    """The C aggregate initializer of `<C_PREFIX[block]>_params_t` for a Params instance.

    Positional (no designators) so it is valid C99 and C++ alike, e.g.
    `static const studio_dsp_flatten_params_t p = <this>;`.
    """
    if block_name not in _EMITTERS:
        raise DspParamError(
            f"processing block {block_name!r} has no C implementation; C blocks: {sorted(_EMITTERS)}"
        )
    params_cls, emit = _EMITTERS[block_name]
    if not isinstance(params, params_cls) or not dataclasses.is_dataclass(params):
        raise DspParamError(f"params for {block_name} must be {params_cls.__module__}.Params")
    check_ranges(params)
    require_frequency(frequency)
    if n_axes < 1:
        raise DspParamError(f"n_axes must be positive, got {n_axes}")
    return emit(params, frequency, n_axes)
