import numpy as np
import pytest

from workers.ml.export.tflite import export_tflite, verify_tflite
from workers.ml.learn.classifier import ArchSpec
from workers.ml.learn.settings import LearnParamError, TrainSettings
from workers.ml.learn.train import train


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 24)) * 1.5
    y = np.repeat(np.arange(3), 60)
    x = (centers[y] + rng.normal(size=(len(y), 24))).astype(np.float32)
    arch = ArchSpec(kind="conv1d", layers=(8,), input_shape=(8, 3))
    return train(x, y, ["a", "b", "c"], arch, TrainSettings(epochs=4)).model, x


@pytest.mark.slow
def test_int8_export_runs_in_litert_and_tflite_micro_and_agrees(trained):
    model, x = trained
    q = export_tflite(model, quantize=True, representative=x)
    report = verify_tflite(q, model, x[:40])
    assert report["quantized"] and report["ok"]
    assert report["tflm_max_lsb_diff"] <= 2
    assert report["tflm_top1_agreement"] >= 0.95
    assert report["top1_agreement"] >= 0.95
    assert report["max_lsb_diff_vs_keras"] <= 10


def test_float_export_matches_keras(trained):
    model, x = trained
    report = verify_tflite(export_tflite(model, quantize=False, representative=None), model, x[:20])
    assert report == {**report, "quantized": False, "ok": True, "top1_agreement": 1.0}


def test_int8_export_without_representative_data_is_rejected(trained):
    with pytest.raises(LearnParamError, match="representative"):
        export_tflite(trained[0], quantize=True, representative=None)
