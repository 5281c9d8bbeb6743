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
from workers.ml.export.c_bundle import (
    ANOMALY_ATOL,
    ANOMALY_RTOL,
    C_FLAGS,
    BundleError,
    _c_float,
    reference_outputs,
)
from workers.ml.export.cgen import generate_c
from workers.ml.export.cpp import build_cpp_library
from workers.ml.export.verify import VerifyError, verify_c_bundle
from workers.ml.learn import anomaly as kmeans
from workers.ml.learn.anomaly import KMeansModel

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


# --- the k-means anomaly block -------------------------------------------------------------------

PROBE_C = r"""
#include <stdio.h>
#include "@NAME@_inferencing.h"
int main(void)
{
    static float window[STUDIO_WINDOW_LEN * STUDIO_AXIS_COUNT];
    int v = 0;
    for (;;) {
        for (int i = 0; i < STUDIO_WINDOW_LEN * STUDIO_AXIS_COUNT; i++) {
            if (scanf("%f", &window[i]) != 1) return v;
        }
        studio_result_t r;
        r.anomaly = 123.0f; /* run_classifier must overwrite it */
        if (run_classifier(window, &r) != STUDIO_OK) return 2;
        printf("has_anomaly %d anomaly %.9g label %d\n", STUDIO_HAS_ANOMALY, (double)r.anomaly,
               r.label_index);
    }
}
"""


def _probe(root: Path, name: str, windows: np.ndarray) -> list[tuple[int, float, int]]:
    """Compile PROBE_C against the bundle's src/ with gcc -Werror and run it on raw windows."""
    (root / "probe.c").write_text(PROBE_C.replace("@NAME@", name))
    sources = [str(p) for p in sorted((root / "src").glob("*.c"))]
    subprocess.run(
        ["gcc", *C_FLAGS.split(), "-Werror", "-Isrc", "-o", "probe", "probe.c", *sources, "-lm"],
        cwd=root,
        check=True,
        capture_output=True,
    )
    text = "\n".join(" ".join(f"{v:.9g}" for v in w.reshape(-1)) for w in windows)
    out = subprocess.run(
        ["./probe"], cwd=root, input=text, capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in out.splitlines()]
    return [(int(r[1]), float(r[3]), int(r[5])) for r in rows]


def _kmeans(d: int, seed: int = 0) -> KMeansModel:
    rng = np.random.default_rng(seed)
    return KMeansModel(
        centroids=rng.normal(size=(3, d)),
        mean=rng.normal(scale=0.3, size=d),
        scale=rng.uniform(0.5, 2.0, size=d),
        threshold=1.5,
        inertia=0.0,
    )


def test_a_bundle_without_anomaly_block_reports_anomaly_0_and_has_anomaly_0(
    dense_tflite, tmp_path
):
    windows = _windows(3, 11, seed=4)
    root = _unzip(build_cpp_library(**_raw_kwargs(dense_tflite, windows)), tmp_path)
    header = (root / "src" / "Gesture_demo_inferencing.h").read_text()
    assert "#define STUDIO_HAS_ANOMALY 0" in header and "STUDIO_ANOMALY_THRESHOLD" not in header
    rows = _probe(root, "Gesture_demo", windows)
    _, expected = _expected(dense_tflite, "raw", {}, windows)
    assert rows == [(0, 0.0, int(i)) for i in expected.argmax(axis=1)]


def test_c_anomaly_score_of_chosen_features_is_the_python_score(dense_tflite, tmp_path):
    # A hand-made k-means block over 5 of the 33 raw features, one of them twice, in another order.
    index = [32, 0, 7, 7, 20]
    model = _kmeans(len(index))
    windows = _windows(6, 11, seed=5)
    windows[3:] *= 4  # farther from the centres
    root = _unzip(
        build_cpp_library(
            **_raw_kwargs(dense_tflite, windows),
            anomaly=kmeans.to_dict(model),
            anomaly_feature_index=index,
        ),
        tmp_path,
    )
    header = (root / "src" / "Gesture_demo_inferencing.h").read_text()
    assert "#define STUDIO_HAS_ANOMALY 1" in header and "#define EI_CLASSIFIER_HAS_ANOMALY 1" in header
    assert "#define STUDIO_ANOMALY_THRESHOLD 1.500000000e+00f" in header
    assert "#define STUDIO_ANOMALY_CLUSTERS 3" in header
    feats, _ = _expected(dense_tflite, "raw", {}, windows)
    python = kmeans.score(model, feats[:, index])
    rows = _probe(root, "Gesture_demo", windows)
    c = np.array([r[1] for r in rows])
    assert all(r[0] == 1 for r in rows)
    np.testing.assert_allclose(c, python, rtol=ANOMALY_RTOL, atol=ANOMALY_ATOL)
    assert np.ptp(python) > 1.0  # the windows are spread, so a wrong index or scale would show
    out = _make(root, "test")
    assert "anomaly summary: windows 6 engine_within 6 pipeline_within 6" in out
    assert "failures 0" in out


def test_an_anomaly_block_that_does_not_fit_the_features_is_refused(dense_tflite):
    kwargs = _raw_kwargs(dense_tflite, None)
    with pytest.raises(BundleError, match="do not fit its 33 input features"):
        build_cpp_library(**kwargs, anomaly=kmeans.to_dict(_kmeans(5)))
    with pytest.raises(BundleError, match="must lie in 0..32"):
        build_cpp_library(**kwargs, anomaly=kmeans.to_dict(_kmeans(2)), anomaly_feature_index=[0, 33])
    with pytest.raises(BundleError, match="not a k-means model"):
        build_cpp_library(**kwargs, anomaly={"type": "svm"})


def test_verify_needs_the_python_anomaly_scores_of_a_bundle_with_an_anomaly_block(
    dense_tflite, tmp_path
):
    windows = _windows(2, 11)
    feats, expected = _expected(dense_tflite, "raw", {}, windows)
    with_block = build_cpp_library(
        **_raw_kwargs(dense_tflite, windows), anomaly=kmeans.to_dict(_kmeans(33))
    )
    with pytest.raises(VerifyError, match="give expected_anomaly"):
        verify_c_bundle(
            with_block,
            windows=windows,
            expected_features=feats,
            expected_int8_outputs=expected,
            workdir=tmp_path,
        )
    without = build_cpp_library(**_raw_kwargs(dense_tflite, windows))
    with pytest.raises(VerifyError, match="no anomaly block"):
        verify_c_bundle(
            without,
            windows=windows,
            expected_features=feats,
            expected_int8_outputs=expected,
            expected_anomaly=np.zeros(2),
            workdir=tmp_path,
        )


@pytest.fixture(scope="module")
def gesture_impulse():
    """A dense classifier + k-means (engine API, no Django) trained on synthetic motion windows,
    its int8 .tflite, and normal (held-out) and clearly anomalous raw windows."""
    from tests.helpers.gestures import GESTURES, gesture_series, impulse_spec
    from workers.ml import optimize
    from workers.ml.pipeline import parse_impulse, sample_features, sample_windows, train_impulse

    impulse = parse_impulse(impulse_spec(epochs=30))
    feats, y = [], []
    for i, label in enumerate(GESTURES):
        for k in range(3):
            f, _ = sample_features(gesture_series(label, i * 100 + k), impulse)
            feats.append(f["spectral"])
            y += [label] * len(f["spectral"])
    features = {"spectral": np.concatenate(feats)}
    trained = train_impulse(features, y, impulse)
    tflite = optimize.to_tflite_int8(trained.model, features["spectral"])
    normal = np.concatenate(
        [sample_windows(gesture_series(label, 900 + i), impulse)[0][:2] for i, label in enumerate(GESTURES)]
    )
    # 15 Hz shaking at 8 m/s^2: no gesture of the training data looks like it
    rng = np.random.default_rng(3)
    t = np.arange(normal.shape[1]) / 50.0
    shake = np.stack([np.sin(2 * np.pi * 15 * t + p) * 8 for p in (0, 1, 2)], axis=1)
    anomalous = np.stack([shake + rng.normal(0, 0.3, shake.shape) + [0, 0, 9.8] for _ in range(4)])
    return impulse, trained, tflite, normal.astype(np.float32), anomalous.astype(np.float32)


@pytest.mark.slow
def test_a_trained_kmeans_block_scores_in_c_like_the_python_engine_on_normal_and_anomalous_windows(
    gesture_impulse, tmp_path
):
    import dataclasses

    from workers.ml.pipeline import classify, step_features

    impulse, trained, tflite, normal, anomalous = gesture_impulse
    step = impulse.dsp[0]
    windows = np.concatenate([normal, anomalous])
    feats = step_features(windows, list(step.axes), step, impulse)
    _, python = classify({"spectral": feats}, impulse, None, trained.anomaly)
    threshold = trained.anomaly["threshold"]
    # What the Python engine says, so the C side is held to it (and the test fails if it changes).
    assert (python[len(normal) :] > threshold).all()
    assert (python[: len(normal)] < threshold).mean() >= 0.8
    kwargs = {
        "model_bytes": tflite,
        "project_name": "Motion",
        "labels": trained.labels,
        "dsp_block": step.block,
        "dsp_params": dataclasses.asdict(step.params),
        "frequency": 50.0,
        "window_len": normal.shape[1],
        "axes": list(step.axes),
        "test_windows": windows,
        "anomaly": trained.anomaly,
    }

    # run_classifier on the raw windows (C DSP + C k-means) gives the Python engine's scores
    root = _unzip(build_cpp_library(**kwargs), tmp_path / "cpp")
    rows = _probe(root, "Motion", windows)
    c = np.array([r[1] for r in rows])
    np.testing.assert_allclose(c, python, rtol=ANOMALY_RTOL, atol=ANOMALY_ATOL)
    assert (c[len(normal) :] > threshold).all()
    assert ((c < threshold) == (python < threshold)).all()
    _make(root)
    text = "\n".join(" ".join(f"{v:.9g}" for v in w.reshape(-1)) for w in windows)
    out = subprocess.run(
        ["./build/Motion_classify"], cwd=root, input=text, capture_output=True, text=True, check=True
    ).stdout
    printed = [line for line in out.splitlines() if line.startswith("anomaly: ")]
    assert len(printed) == len(windows) and all("(anomalous)" in line for line in printed[-4:])

    # the Arduino library: verified on host and QEMU, and its sketch prints the anomaly score
    zip_bytes = build_arduino_library(**kwargs)
    header = zipfile.ZipFile(io.BytesIO(zip_bytes)).read("Motion/src/Motion_inferencing.h").decode()
    assert f"#define STUDIO_ANOMALY_THRESHOLD {_c_float(threshold)}" in header
    _, expected = reference_outputs(
        tflite, dsp_block=step.block, dsp_params=kwargs["dsp_params"], windows=windows, frequency=50.0
    )
    report = verify_c_bundle(
        zip_bytes,
        windows=windows,
        expected_features=feats,
        expected_int8_outputs=expected,
        expected_anomaly=python,
        workdir=tmp_path / "verify",
    )
    assert report["ok"], [(s["name"], s["status"], s["output"][-800:]) for s in report["steps"]]
    assert report["anomaly_block"] and report["anomaly_atol"] == ANOMALY_ATOL
    for where in ("host", "qemu"):
        got = report[where]["anomaly"]
        assert got["windows"] == len(windows) and got["within_tolerance"]
        assert got["max_abs_error"] <= ANOMALY_ATOL + ANOMALY_RTOL * python.max()
    assert report["qemu"]["anomaly"]["engine_same_as_host"]
    stub = next(s for s in report["steps"] if s["name"] == "arduino_stub")
    assert stub["status"] == "ok" and "anomaly: " in stub["output"]
    with zipfile.ZipFile(report["bundle_with_report"]) as z:
        assert "anomaly block is included" in z.read("Motion/REPORT.md").decode()

    # a wrong expected score is caught: the check can fail
    report = verify_c_bundle(
        zip_bytes,
        windows=windows,
        expected_features=feats,
        expected_int8_outputs=expected,
        expected_anomaly=python + 0.01,
        workdir=tmp_path / "verify-wrong",
    )
    assert not report["ok"] and not report["host"]["anomaly"]["within_tolerance"]
    assert {s["name"]: s["status"] for s in report["steps"]}["host_run"] == "failed"
