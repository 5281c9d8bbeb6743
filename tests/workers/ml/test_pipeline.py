"""The Django-free impulse pipeline: spec normalisation and checks, windows → features per block, the cache
key, the 2-D projection, training and classifying with a classifier and k-means together."""

from __future__ import annotations

import numpy as np
import pytest

from workers.ml import pipeline
from workers.ml.pipeline import ImpulseError, parse_impulse
from workers.ml.samples import Image, Sensor, TimeSeries

AXES = ["accX", "accY", "accZ"]


def spec(**learn_settings) -> dict:
    return {
        "input": {
            "type": "time-series",
            "window_size_ms": 1000,
            "window_increase_ms": 200,
            "frequency_hz": 50,
        },
        "dsp": [
            {
                "id": "spectral",
                "block": "spectral-analysis",
                "axes": AXES,
                "params": {"filter_type": "none", "fft_length": 64},
            },
            {"id": "stats", "block": "flatten", "axes": ["accZ"]},
        ],
        "learn": [
            {
                "id": "nn",
                "block": "classifier",
                "inputs": ["spectral", "stats"],
                "settings": {"epochs": 15, "learning_rate": 0.02, **learn_settings},
            },
            {"id": "anomaly", "block": "anomaly", "inputs": ["spectral"], "clusters": 3},
        ],
    }


def series(freq: float, seed: int, seconds: float = 2.0) -> TimeSeries:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 50)) / 50
    v = np.stack([np.sin(2 * np.pi * freq * t + p) for p in range(3)], 1) + rng.normal(
        0, 0.2, (len(t), 3)
    )
    return TimeSeries(values=v, interval_ms=20.0, sensors=tuple(Sensor(a, "g") for a in AXES))


def test_a_spec_is_normalised_with_every_default_written_out():
    imp = parse_impulse(spec(), axes=AXES, data_hz=[50.0])
    assert imp.spec["input"] == {
        "type": "time-series",
        "window_size_ms": 1000,
        "window_increase_ms": 200,
        "frequency_hz": 50,
        "zero_pad": True,
    }
    assert imp.spec["dsp"][1]["params"]["average"] is True
    assert imp.spec["learn"][0]["arch"] == {
        "kind": "dense",
        "layers": [20, 10],
        "kernel_size": 3,
        "dropout": 0.1,
    }
    assert imp.spec["learn"][0]["settings"]["batch_size"] == 32
    assert parse_impulse(imp.spec).spec == imp.spec  # normalising twice changes nothing


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda s: s["dsp"][1].update(axes=["gyrX"]), "dsp[1].axes"),
        (lambda s: s["dsp"].append({"id": "spectral", "block": "raw", "axes": AXES}), "dsp[2].id"),
        (lambda s: s["learn"].append({"id": "a2", "block": "anomaly"}), "learn"),
        (lambda s: s["learn"][0].update(arch={"kind": "conv1d"}), "learn[0].arch.kind"),
        (lambda s: s["learn"][0].update(arch={"layers": [0]}), "learn[0]"),
        (lambda s: s["learn"][1].update(clusters=0), "learn[1].clusters"),
        (lambda s: s.update(extra=1), "impulse"),
        (lambda s: s["input"].update(type="video"), "input.type"),
        (lambda s: s["dsp"][0].update(block="image"), "dsp[0].block"),
        (lambda s: s["input"].update(frequency_hz=400), "input.frequency_hz"),
    ],
)
def test_bad_specs_name_the_field(mutate, field):
    s = spec()
    mutate(s)
    with pytest.raises(ImpulseError) as err:
        parse_impulse(s, axes=AXES, data_hz=[50.0])
    assert err.value.field == field


def test_features_per_block_have_the_declared_sizes_and_the_cache_key_follows_params_and_version(
    monkeypatch,
):
    imp = parse_impulse(spec(), axes=AXES)
    feats, starts = pipeline.sample_features(series(2, 0), imp)
    assert list(starts) == [0, 200, 400, 600, 800, 1000]
    assert feats["stats"].shape == (6, 5)  # one axis, five default statistics
    spectral = imp.dsp_step("spectral")
    assert (
        feats["spectral"].shape[1]
        == spectral.module.output_shape(spectral.params, input_shape=(50, 3), frequency=50)[0]
    )
    key = pipeline.dsp_cache_key(spectral, imp.input, "ab" * 32)
    changed = spec()
    changed["dsp"][0]["params"]["fft_length"] = 128
    other = parse_impulse(changed, axes=AXES)
    assert pipeline.dsp_cache_key(other.dsp[0], other.input, "ab" * 32) != key
    assert pipeline.dsp_cache_key(spectral, imp.input, "cd" * 32) != key
    monkeypatch.setattr(
        spectral.module, "IMPLEMENTATION_VERSION", spectral.module.IMPLEMENTATION_VERSION + 1
    )
    assert pipeline.dsp_cache_key(spectral, imp.input, "ab" * 32) != key


def test_a_sample_without_a_wired_axis_is_named():
    imp = parse_impulse(spec())
    one_axis = TimeSeries(
        values=np.zeros((100, 1)), interval_ms=20.0, sensors=(Sensor("accX", "g"),)
    )
    with pytest.raises(ImpulseError, match=r"walk\.7 has no axis 'accY', 'accZ'"):
        pipeline.sample_features(one_axis, imp, name="walk.7")


def test_window_and_frequency_checks_name_the_samples():
    s = spec()
    s["input"]["zero_pad"] = False
    imp = parse_impulse(s)
    pipeline.check_window_fit({"a": 500.0, "b": 1500.0}, imp)  # one fits: fine
    with pytest.raises(ImpulseError, match="longer than every sample: a, b"):
        pipeline.check_window_fit({"a": 500.0, "b": 900.0}, imp)
    with pytest.raises(ImpulseError, match="above the data's highest sampling rate"):
        pipeline.check_frequency({"a": 25.0}, imp)


def test_an_image_impulse_gives_one_window_per_image():
    imp = parse_impulse(
        {
            "input": {"type": "image", "width": 8, "height": 6, "color": "grayscale"},
            "dsp": [{"id": "img", "block": "image", "params": {"color": "grayscale"}}],
            "learn": [{"block": "classifier", "arch": {"kind": "conv2d", "layers": [4]}}],
        }
    )
    assert imp.classifier.arch.input_shape == (6, 8, 1)
    pixels = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    feats, starts = pipeline.sample_features(Image(pixels=pixels), imp)
    assert feats["img"].shape == (1, 48) and list(starts) == [0]
    assert 0 <= feats["img"].min() and feats["img"].max() <= 1


def test_pca_puts_the_largest_spread_on_the_first_axis():
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(0, 1, 200), rng.normal(0, 1, 200) * 0.01 + 5, rng.normal(0, 1, 200)]
    x[:, 2] = x[:, 0] * 2 + rng.normal(0, 0.1, 200)
    xy = pipeline.pca_2d(x)
    assert xy.shape == (200, 2) and xy[:, 0].var() > xy[:, 1].var()
    assert pipeline.pca_2d(np.ones((3, 1))).shape == (3, 2)


@pytest.mark.slow
def test_training_an_impulse_separates_the_classes_and_flags_unseen_motion_as_anomalous():
    imp = parse_impulse(spec())
    feats, labels = {"spectral": [], "stats": []}, []
    for label, f in (("slow", 1.0), ("fast", 6.0)):
        for k in range(6):
            fe, st = pipeline.sample_features(series(f, k), imp)
            for key, rows in feats.items():
                rows.append(fe[key])
            labels += [label] * len(st)
    x = {k: np.concatenate(v) for k, v in feats.items()}
    epochs = []
    result = pipeline.train_impulse(x, labels, imp, on_epoch=lambda e, logs: epochs.append(e))
    assert result.labels == ["fast", "slow"] and epochs == list(range(15))
    assert result.metrics["accuracy"] >= 0.9
    unseen, _ = pipeline.sample_features(series(12.0, 99), imp)
    seen, _ = pipeline.sample_features(series(1.0, 98), imp)
    scores, anomaly = pipeline.classify(seen, imp, result.model, result.anomaly)
    assert (scores.argmax(1) == 1).mean() >= 0.8
    _, anomaly_unseen = pipeline.classify(unseen, imp, result.model, result.anomaly)
    threshold = result.anomaly["threshold"]
    assert (anomaly_unseen > threshold).mean() >= 0.5 and (anomaly <= threshold).mean() >= 0.8
    assert anomaly_unseen.mean() > anomaly.mean()


@pytest.mark.slow
def test_a_regression_block_learns_a_numeric_label():
    s = spec()
    s["learn"] = [
        {
            "id": "reg",
            "block": "regression",
            "inputs": ["spectral"],
            "arch": {"layers": [16], "dropout": 0.0},
            "settings": {"epochs": 60, "learning_rate": 0.02, "validation_split": 0.0},
        }
    ]
    imp = parse_impulse(s)
    rows, targets = [], []
    for f in (1.0, 3.0, 5.0, 7.0):
        for k in range(3):
            fe, st = pipeline.sample_features(series(f, k), imp)
            rows.append(fe["spectral"])
            targets += [str(f)] * len(st)
    result = pipeline.train_impulse({"spectral": np.concatenate(rows)}, targets, imp)
    assert result.labels == ["reg"] and result.metrics["mae"] < 1.0
    with pytest.raises(ImpulseError, match="numeric labels"):
        pipeline.train_impulse({"spectral": np.concatenate(rows)}, ["fast"] * len(targets), imp)


def test_pca_reports_the_variance_it_keeps_and_tsne_keeps_clusters_apart():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (8, 20))  # eight clusters span more than the two PCA axes can show
    labels = np.repeat(np.arange(8), 15)
    x = centres[labels] + rng.normal(0, 1, (120, 20))
    _, explained = pipeline.pca_2d(x, return_explained=True)
    assert 0 < explained < pipeline.NONLINEAR_BELOW_EXPLAINED
    xy = pipeline.tsne_2d(x)
    assert xy.shape == (120, 2)
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (
        labels[d.argmin(1)] == labels
    ).mean() > 0.95  # each point's nearest neighbour shares its label
