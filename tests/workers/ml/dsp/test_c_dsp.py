"""The C blocks (workers/ml/dsp/c) compiled with the host gcc, fed the same windows as the Python
blocks, and compared. Agreement, float32 C against float64 Python: raw exact; flatten 1e-4
relative + 1e-5 absolute; spectral analysis 3e-4 relative + 1e-5 absolute (measured 1e-4: the
order-6 filter's poles near the unit circle amplify float32 rounding); MFE 1e-5 absolute on its
0..1 scale (measured 2e-6); MFCC 2e-4 absolute on coefficients up to ~70 (measured 7e-5). The
sources also build for the Cortex-M4 with -Werror, and the initializers are valid C++."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from workers.ml.dsp import DspParamError, flatten, get_block, mfcc, mfe, raw, spectral, spectrogram
from workers.ml.dsp.c import C_PREFIX, C_SOURCES, HEADER, c_params_initializer

from .signals import deterministic_audio, deterministic_signal

# compiling the harness (two windows as C literals) takes a few seconds
pytestmark = [
    pytest.mark.skipif(shutil.which("gcc") is None, reason="no host gcc"),
    pytest.mark.slow,
]

ACCEL = deterministic_signal(200, 100.0, axes=3) + np.random.default_rng(7).normal(
    size=(200, 3)
).astype(np.float32)
AUDIO = deterministic_audio(8000, 16000.0)

# (case, block, params, window, frequency, rtol, atol)
CASES = [
    ("raw", "raw", raw.Params(scale_axes=0.25), ACCEL, 100.0, 0.0, 0.0),
    ("flatten", "flatten", flatten.Params(skewness=True, kurtosis=True), ACCEL, 100.0, 1e-4, 1e-5),
    ("spectral-low", "spectral-analysis", spectral.Params(), ACCEL, 100.0, 3e-4, 1e-5),
    (
        "spectral-high-log",
        "spectral-analysis",
        spectral.Params(
            filter_type="high",
            filter_cutoff=5.0,
            filter_order=4,
            fft_length=64,
            do_log=True,
            spectral_power_edges=(),
            spectral_power_bands=6,
            spectral_peaks_threshold=0.01,
        ),
        ACCEL,
        100.0,
        3e-4,
        1e-5,
    ),
    (
        "spectral-none-pad",
        "spectral-analysis",
        spectral.Params(filter_type="none", fft_length=256, spectral_peaks_count=4),
        ACCEL,
        100.0,
        3e-4,
        1e-5,
    ),
    ("mfe", "mfe", mfe.Params(), AUDIO, 16000.0, 0.0, 1e-5),
    (
        "mfe-band",
        "mfe",
        mfe.Params(
            frame_length=0.025,
            num_filters=32,
            fft_length=512,
            low_frequency=300,
            high_frequency=6000,
            noise_floor_db=-70,
        ),
        AUDIO,
        16000.0,
        0.0,
        1e-5,
    ),
    ("mfcc", "mfcc", mfcc.Params(), AUDIO, 16000.0, 0.0, 2e-4),
    (
        "mfcc-lifter-energy",
        "mfcc",
        mfcc.Params(
            frame_length=0.025,
            frame_stride=0.01,
            num_filters=26,
            fft_length=512,
            cepstral_lifter=22,
            append_energy=True,
            pre_emphasis=0.97,
        ),
        AUDIO,
        16000.0,
        0.0,
        2e-4,
    ),
]


def _array(name: str, values: np.ndarray) -> str:
    body = ",".join(f"{float(v):.9g}f" for v in values.reshape(-1))
    return f"static const float {name}[] = {{{body}}};\n"


def harness_source() -> str:
    src = [
        '#include <stdio.h>\n#include "studio_dsp.h"\n',
        _array("accel", ACCEL),
        _array("audio", AUDIO),
    ]
    src.append("static float out[20000];\nint main(void) {\n    int n, c;\n")
    for case, block, params, window, fs, _, _ in CASES:
        prefix = C_PREFIX[block]
        init = c_params_initializer(block, params, frequency=fs, n_axes=window.shape[1])
        name = "accel" if window is ACCEL else "audio"
        src.append(
            f"    {{ static const {prefix}_params_t p = {init};\n"
            f"      n = {prefix}_features({name}, {window.shape[0]}, {window.shape[1]}, {fs}f, &p,"
            f" out, 20000);\n"
            f"      c = {prefix}_feature_count({window.shape[0]}, {window.shape[1]}, &p);\n"
            f'      printf("CASE {case} %d %d\\n", n, c);\n'
            f'      for (int i = 0; i < n; i++) printf("%.9g\\n", out[i]);\n'
            # too small an output buffer, and a two-axis window for an audio block
            f"      if ({prefix}_features({name}, {window.shape[0]}, {window.shape[1]}, {fs}f, &p,"
            f" out, c - 1) != STUDIO_DSP_ERR_OUT_TOO_SMALL) return 2;\n"
            f"    }}\n"
        )
    src.append(
        "    { static const studio_dsp_mfe_params_t p = "
        + c_params_initializer("mfe", mfe.Params(), frequency=16000.0, n_axes=1)
        + ";\n      if (studio_dsp_mfe_features(audio, 4000, 2, 16000.0f, &p, out, 20000)"
        " != STUDIO_DSP_ERR_ARGS) return 3; }\n"
    )
    src.append("    return 0;\n}\n")
    return "".join(src)


@pytest.fixture(scope="module")
def c_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    tmp = tmp_path_factory.mktemp("c_dsp")
    (tmp / "harness.c").write_text(harness_source())
    sources = sorted({str(p) for paths in C_SOURCES.values() for p in paths})
    exe = tmp / "harness"
    subprocess.run(
        [
            "gcc",
            "-std=c99",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{HEADER.parent}",
            str(tmp / "harness.c"),
            *sources,
            "-o",
            str(exe),
            "-lm",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    run = subprocess.run([str(exe)], check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"harness failed with {run.returncode}: {run.stderr}"
    outputs: dict[str, np.ndarray] = {}
    current: list[float] = []
    for line in run.stdout.splitlines():
        if line.startswith("CASE "):
            _, case, n, c = line.split()
            assert int(n) == int(c), f"{case}: wrote {n} features, feature_count says {c}"
            current = []
            outputs[case] = current  # type: ignore[assignment]
        else:
            current.append(float(line))
    return {k: np.array(v) for k, v in outputs.items()}


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_c_block_matches_the_python_block(c_outputs: dict[str, np.ndarray], case: str) -> None:
    _, block, params, window, fs, rtol, atol = next(c for c in CASES if c[0] == case)
    expected = get_block(block).features(window, params, frequency=fs)
    got = c_outputs[case].astype(np.float32)  # printed with %.9g: exact float32
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
def test_c_sources_build_for_cortex_m4_without_warnings(tmp_path: Path) -> None:
    sources = sorted({str(p) for paths in C_SOURCES.values() for p in paths})
    for src in sources:
        subprocess.run(
            [
                "arm-none-eabi-gcc",
                "-std=c99",
                "-O2",
                "-Wall",
                "-Werror",
                "-mcpu=cortex-m4",
                "-mthumb",
                "-mfloat-abi=hard",
                "-mfpu=fpv4-sp-d16",
                "-c",
                src,
                "-o",
                str(tmp_path / (Path(src).stem + ".o")),
            ],
            check=True,
            capture_output=True,
            text=True,
        )


@pytest.mark.skipif(shutil.which("g++") is None, reason="no host g++")
def test_initializers_are_valid_cplusplus_too(tmp_path: Path) -> None:
    lines = ['#include "studio_dsp.h"\n']
    for i, (_, block, params, window, fs, _, _) in enumerate(CASES):
        init = c_params_initializer(block, params, frequency=fs, n_axes=window.shape[1])
        lines.append(f"const {C_PREFIX[block]}_params_t p{i} = {init};\n")
    (tmp_path / "check.cpp").write_text("".join(lines))
    subprocess.run(
        [
            "g++",
            "-std=c++11",
            "-Wall",
            "-Werror",
            "-fsyntax-only",
            f"-I{HEADER.parent}",
            str(tmp_path / "check.cpp"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )


def test_blocks_and_modes_without_a_c_version_are_refused_by_name() -> None:
    with pytest.raises(DspParamError, match="analysis_type wavelet"):
        c_params_initializer(
            "spectral-analysis",
            spectral.Params(analysis_type="wavelet"),
            frequency=100.0,
            n_axes=3,
        )
    with pytest.raises(DspParamError, match="spectrogram"):
        c_params_initializer("spectrogram", spectrogram.Params(), frequency=16000.0, n_axes=1)
