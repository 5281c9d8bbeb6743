import numpy as np
import pytest

from workers.ml.learn.classifier import ArchSpec
from workers.ml.learn.settings import LearnParamError, TrainingCancelled, TrainSettings
from workers.ml.learn.train import train

LABELS = ["idle", "wave", "snake"]


def blobs(n_per_class=80, n_features=20, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, n_features)) * 1.2
    y = np.repeat(np.arange(3), n_per_class)
    return (centers[y] + rng.normal(size=(len(y), n_features)) * spread).astype(np.float32), y


FAST = TrainSettings(epochs=5, batch_size=32)


@pytest.mark.slow
def test_dense_classifier_learns_three_gaussian_classes_and_reports_metrics():
    x, y = blobs()
    epochs = []
    r = train(x, y, LABELS, ArchSpec(), FAST, on_epoch=lambda e, logs: epochs.append((e, logs)))
    assert r.metrics["accuracy"] > 0.8  # chance is 0.33
    assert [e for e, _ in epochs] == [0, 1, 2, 3, 4]
    assert "val_loss" in epochs[-1][1]
    assert len(r.validation_indices) == 48  # 20 % of each class
    assert r.validation_predictions.shape == (48, 3)
    cm = np.array(r.metrics["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 48
    assert set(r.metrics["per_class"]) == set(LABELS)
    assert len(r.history["loss"]) == 5


@pytest.mark.slow
def test_training_is_repeatable_with_the_same_seed_and_differs_with_another():
    x, y = blobs()
    a = train(x, y, LABELS, ArchSpec(), FAST)
    b = train(x, y, LABELS, ArchSpec(), FAST)
    c = train(x, y, LABELS, ArchSpec(), TrainSettings(epochs=5, seed=2))
    assert a.history["loss"] == b.history["loss"]
    np.testing.assert_array_equal(a.validation_predictions, b.validation_predictions)
    assert a.history["loss"] != c.history["loss"]


def test_cancel_takes_effect_within_a_batch():
    x, y = blobs()
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(TrainingCancelled):
        train(
            x,
            y,
            LABELS,
            ArchSpec(),
            TrainSettings(epochs=50, batch_size=8),
            should_stop=should_stop,
        )
    assert len(calls) == 3  # no batch ran after the one that saw the cancel


@pytest.mark.slow
def test_conv1d_and_conv2d_classifiers_train_on_the_dsp_shape():
    x, y = blobs(n_features=24)
    r1 = train(x, y, LABELS, ArchSpec(kind="conv1d", layers=(8,), input_shape=(8, 3)), FAST)
    r2 = train(
        x,
        y,
        LABELS,
        ArchSpec(kind="conv2d", layers=(4,), input_shape=(6, 4)),
        TrainSettings(epochs=5, augmentation="image-flip"),
    )
    assert r1.metrics["accuracy"] > 0.6 and r2.metrics["accuracy"] > 0.6


@pytest.mark.slow
def test_regression_reports_mse_and_mae():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 1.0]) + 0.1
    r = train(
        x,
        y,
        [],
        ArchSpec(layers=(16,), dropout=0.0),
        TrainSettings(epochs=10, learning_rate=0.02),
        task="regression",
    )
    assert r.metrics["mse"] < np.var(y) / 4
    assert set(r.metrics) >= {"mse", "mae", "loss"}


@pytest.mark.slow
def test_class_balancing_raises_recall_of_a_rare_class():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, (300, 4)), rng.normal(1.2, 1, (15, 4))]).astype(np.float32)
    y = np.array([0] * 300 + [1] * 15)
    s = {"epochs": 8, "validation_split": 0.0, "learning_rate": 0.01}
    plain = train(x, y, ["normal", "rare"], ArchSpec(layers=(8,)), TrainSettings(**s))
    balanced = train(
        x, y, ["normal", "rare"], ArchSpec(layers=(8,)), TrainSettings(**s, class_balancing=True)
    )
    assert (
        balanced.metrics["per_class"]["rare"]["recall"]
        > plain.metrics["per_class"]["rare"]["recall"]
    )


def test_early_stopping_ends_training_and_restores_the_best_weights():
    x, y = blobs(spread=3.0)
    r = train(
        x,
        y,
        LABELS,
        ArchSpec(layers=(64,), dropout=0.0),
        TrainSettings(epochs=200, learning_rate=0.05, early_stopping_patience=3),
    )
    assert r.metrics["epochs_run"] < 200
    assert np.isclose(r.metrics["loss"], min(r.history["val_loss"]), rtol=1e-3)


def test_a_classifier_with_one_label_is_rejected():
    x, _ = blobs()
    with pytest.raises(LearnParamError, match="at least two labels; found: \\['idle'\\]"):
        train(x, np.zeros(len(x), int), ["idle"], ArchSpec(), FAST)


def test_nan_features_are_rejected_naming_the_row():
    x, y = blobs()
    x[17, 3] = np.nan
    with pytest.raises(LearnParamError, match="row 17"):
        train(x, y, LABELS, ArchSpec(), FAST)


def test_mismatched_lengths_are_rejected():
    x, y = blobs()
    with pytest.raises(LearnParamError, match="240 samples but y has 239"):
        train(x, y[:-1], LABELS, ArchSpec(), FAST)


def test_string_labels_are_mapped_to_their_index():
    x, y = blobs(n_per_class=20)
    r = train(x, np.array(LABELS)[y], LABELS, ArchSpec(), TrainSettings(epochs=2))
    assert r.validation_predictions.shape[1] == 3
