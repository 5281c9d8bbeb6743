"""Arduino and C/C++ bundles: built with their README commands, and checked by verify_c_bundle."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from workers.ml.export import verify as verify_mod
from workers.ml.export.arduino import build_arduino_library
from workers.ml.export.c_bundle import BundleError, reference_outputs
from workers.ml.export.cgen import generate_c
from workers.ml.export.cpp import build_cpp_library
from workers.ml.export.verify import verify_c_bundle

LABELS = ["idle", "wave", "circle", "up"]
AXES = ["accX", "accY", "accZ"]


def _windows(n: int, window_len: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, window_len, len(AXES))).astype(np.float32)


def _raw_kwargs(model: bytes, windows: np.ndarray) -> dict:
    return {
        "model_bytes": model,
        "project_name": "Gesture demo",
        "labels": LABELS,
        "dsp_block": "raw",
        "dsp_params": {},
        "frequency": 50.0,
        "window_len": 11,
        "axes": AXES,
        "test_windows": windows,
    }


def _expected(model: bytes, block: str, params: dict, windows: np.ndarray, **norm) -> tuple:
    return reference_outputs(
        model, dsp_block=block, dsp_params=params, windows=windows, frequency=50.0, **norm
    )


def _unzip(data: bytes, where: Path) -> Path:
    zipfile.ZipFile(io.BytesIO(data)).extractall(where)
    (root,) = list(where.iterdir())
    return root


def _make(root: Path, *targets: str) -> str:
    proc = subprocess.run(
        ["make", *targets], cwd=root, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_arduino_zip_builds_with_its_readme_commands_and_predicts_like_litert(
    dense_tflite, tmp_path
):
    windows = _windows(12, 11)
    root = _unzip(build_arduino_library(**_raw_kwargs(dense_tflite, windows)), tmp_path)
    assert (root / "library.properties").read_text().startswith("name=Gesture_demo")
    header = (root / "src" / "Gesture_demo_inferencing.h").read_text()
    for macro in (
        "STUDIO_LABELS",
        "STUDIO_LABEL_COUNT 4",
        "STUDIO_WINDOW_LEN 11",
        "STUDIO_FREQUENCY",
        "STUDIO_AXES",
    ):
        assert macro in header
    assert "int run_classifier(const float *signal, studio_result_t *result);" in header
    assert (root / "examples/static_buffer/static_buffer.ino").exists()
    assert (
        root / "examples/nano_ble33_sense_accelerometer/nano_ble33_sense_accelerometer.ino"
    ).exists()
    readme = (root / "README.md").read_text()
    assert "make test" in readme and "stub" in readme

    out = _make(root, "test")
    assert "top1 12 engine_exact 12 pipeline_exact 12" in out and "failures 0" in out
    _make(root, "arduino-stub")
    sketch = subprocess.run(
        ["./build/stub/static_buffer"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    _, expected = _expected(dense_tflite, "raw", {}, windows[:1])
    assert f"prediction: {LABELS[int(expected[0].argmax())]}" in sketch.stdout


@pytest.mark.slow
def test_cpp_zip_classifies_windows_from_stdin_like_litert_with_make_and_cmake(
    dense_tflite, tmp_path
):
    windows = _windows(8, 11, seed=1)
    root = _unzip(build_cpp_library(**_raw_kwargs(dense_tflite, windows)), tmp_path)
    _make(root)
    text = "\n".join(", ".join(f"{v:.9g}" for v in w.reshape(-1)) for w in windows)
    proc = subprocess.run(
        ["./build/Gesture_demo_classify"],
        cwd=root,
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    predictions = [
        line.split(": ")[1] for line in proc.stdout.splitlines() if line.startswith("prediction")
    ]
    _, expected = _expected(dense_tflite, "raw", {}, windows)
    assert predictions == [LABELS[i] for i in expected.argmax(axis=1)]
    if shutil.which("cmake"):
        subprocess.run(
            ["cmake", "-S", ".", "-B", "cmake-build"], cwd=root, check=True, capture_output=True
        )
        subprocess.run(
            ["cmake", "--build", "cmake-build"], cwd=root, check=True, capture_output=True
        )
        proc2 = subprocess.run(
            ["./cmake-build/Gesture_demo_classify"],
            cwd=root,
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc2.stdout == proc.stdout


@pytest.mark.slow
def test_verify_reports_identical_outputs_arm_footprint_and_qemu_exit_code_zero(
    flatten_tflite, tmp_path
):
    windows = _windows(6, 40, seed=2)
    params = {"scale_axes": 1.0, "skewness": True, "kurtosis": True}
    mean = np.linspace(-0.5, 0.5, 21).astype(np.float32)
    scale = np.linspace(0.5, 2.0, 21).astype(np.float32)
    feats, expected = _expected(
        flatten_tflite, "flatten", params, windows, feature_mean=mean, feature_scale=scale
    )
    zip_bytes = build_arduino_library(
        model_bytes=flatten_tflite,
        project_name="flat",
        labels=["a", "b", "c"],
        dsp_block="flatten",
        dsp_params=params,
        frequency=50.0,
        window_len=40,
        axes=AXES,
        feature_mean=mean,
        feature_scale=scale,
        test_windows=windows,
    )
    report = verify_c_bundle(
        zip_bytes,
        windows=windows,
        expected_features=feats,
        expected_int8_outputs=expected,
        workdir=tmp_path,
    )
    steps = {s["name"]: s["status"] for s in report["steps"]}
    assert steps == {
        name: "ok"
        for name in (
            "host_build",
            "host_run",
            "arm_build",
            "arduino_stub",
            "qemu_build",
            "qemu_run",
        )
    }
    assert report["ok"]
    assert report["host"]["engine_outputs_identical"] and report["host"]["top1_agreement"] == 1.0
    assert report["qemu"]["engine_outputs_identical"] and report["qemu"]["same_as_host"]
    assert 0 < report["arm"]["flash"] < 64_000 and 0 < report["arm"]["ram"] < 8_000
    with zipfile.ZipFile(report["bundle_with_report"]) as z:
        assert {"flat/REPORT.json", "flat/REPORT.md"} <= set(z.namelist())


def test_verify_marks_missing_toolchains_skipped_never_ok(dense_tflite, tmp_path, monkeypatch):
    windows = _windows(2, 11)
    feats, expected = _expected(dense_tflite, "raw", {}, windows)
    zip_bytes = build_cpp_library(**_raw_kwargs(dense_tflite, windows))
    monkeypatch.setattr(verify_mod.shutil, "which", lambda tool: None)
    report = verify_c_bundle(
        zip_bytes,
        windows=windows,
        expected_features=feats,
        expected_int8_outputs=expected,
        workdir=tmp_path,
    )
    assert {s["status"] for s in report["steps"]} == {"skipped"}
    assert any("not installed: make, gcc" in s.get("reason", "") for s in report["steps"])
    assert not report["ok"]


def test_bundle_rejects_a_dsp_block_whose_feature_count_does_not_fit_the_model(dense_tflite):
    kwargs = _raw_kwargs(dense_tflite, None)
    kwargs["window_len"] = 12
    with pytest.raises(BundleError, match="makes 36 features but the model takes 33"):
        build_arduino_library(**kwargs)


def test_bundle_rejects_label_count_that_differs_from_model_outputs(dense_tflite):
    kwargs = _raw_kwargs(dense_tflite, None)
    kwargs["labels"] = ["a", "b"]
    with pytest.raises(BundleError, match="4 outputs for 2 labels"):
        build_cpp_library(**kwargs)


@pytest.mark.slow
def test_cnn_engine_on_emulated_cortex_m4_matches_litert_and_the_host(cnn_tflite, tmp_path):
    # The 16x16 image goes in as a raw window of 256 values on one axis.
    windows = np.random.default_rng(5).normal(size=(5, 256, 1)).astype(np.float32)
    feats, expected = _expected(cnn_tflite, "raw", {}, windows)
    zip_bytes = build_cpp_library(
        model_bytes=cnn_tflite,
        project_name="cnn",
        labels=["a", "b", "c"],
        dsp_block="raw",
        dsp_params={},
        frequency=1.0,
        window_len=256,
        axes=["pixel"],
    )
    report = verify_c_bundle(
        zip_bytes,
        windows=windows,
        expected_features=feats,
        expected_int8_outputs=expected,
        workdir=tmp_path,
    )
    assert report["ok"], [(s["name"], s["status"], s["output"][-500:]) for s in report["steps"]]
    assert report["qemu"]["int8_mismatches"] == 0 and report["qemu"]["same_as_host"]
    assert report["arm"]["ram"] >= generate_c(cnn_tflite).arena_size
