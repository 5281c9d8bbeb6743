import numpy as np
import pytest

from workers.ml.learn import transfer
from workers.ml.learn.settings import LearnParamError, TrainSettings

SIZE = 32  # the smallest input MobileNetV2 accepts; keeps the test in seconds


def stripes(n_per_class, angles, rng, freq=(0.25, 0.6), noise=0.15):
    """RGB images of stripes at one orientation per class, random frequency/phase/colour."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    x, y = [], []
    for label, angle in enumerate(angles):
        for _ in range(n_per_class):
            a = np.deg2rad(angle + rng.normal(0, 5))
            f = rng.uniform(*freq)
            wave = 0.5 + 0.5 * np.sin(f * (np.cos(a) * xx + np.sin(a) * yy) + rng.uniform(0, 6.3))
            colour = rng.uniform(0.3, 1.0, 3)
            img = wave[..., None] * colour + rng.normal(0, noise, (SIZE, SIZE, 3))
            x.append(np.clip(img, 0, 1).ravel())
            y.append(label)
    return np.array(x, np.float32), np.array(y)


@pytest.fixture(scope="module")
def weights_dirs(tmp_path_factory):
    """Two weights files named as Keras publishes them: a tiny MobileNetV2 pretrained
    on horizontal vs vertical stripes, and the same network untrained (the from-scratch
    reference). Both have batch-norm statistics measured on the same images."""
    import keras

    rng = np.random.default_rng(0)
    x, y = stripes(192, [0, 90], rng, freq=(0.6, 0.8), noise=0.05)
    spec = transfer.TransferSpec(alpha=0.35, image_size=SIZE, dropout=0.0)
    name = transfer.mobilenet_v2_weights_file(0.35, SIZE)
    keras.utils.set_random_seed(0)
    untrained = transfer.build_transfer_model(spec, 2, pretrained_dir=None, from_scratch=True)
    transfer.recalibrate_batchnorm(untrained.base, untrained.model, x)
    scratch_dir = tmp_path_factory.mktemp("untrained")
    transfer.save_base_weights(untrained.base, scratch_dir / name)

    tm = transfer.build_transfer_model(spec, 2, pretrained_dir=None, from_scratch=True)
    tm.model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    fit = tm.model.fit(x, y, epochs=12, batch_size=32, verbose=0, shuffle=True)
    assert fit.history["accuracy"][-1] > 0.8, f"pretraining failed: {fit.history}"
    transfer.recalibrate_batchnorm(tm.base, tm.model, x)
    pretrained_dir = tmp_path_factory.mktemp("pretrained")
    transfer.save_base_weights(tm.base, pretrained_dir / name)
    return pretrained_dir, scratch_dir


@pytest.fixture(scope="module")
def pretrained_dir(weights_dirs):
    return weights_dirs[0]


@pytest.mark.slow
def test_pretrained_backbone_transfers_to_a_new_task_better_than_an_untrained_one(weights_dirs):
    pretrained_dir, scratch_dir = weights_dirs
    rng = np.random.default_rng(1)
    # New task, little data: two orientations the backbone never saw as classes, finer stripes.
    x, y = stripes(24, [20, 110], rng, freq=(0.5, 0.9), noise=0.25)
    spec = transfer.TransferSpec(alpha=0.35, image_size=SIZE, dropout=0.0)
    settings = TrainSettings(epochs=10, learning_rate=0.01, batch_size=16, validation_split=0.5)
    reference = transfer.build_transfer_model(spec, 2, pretrained_dir=pretrained_dir).base
    before = [w.copy() for w in reference.get_weights()]

    pre = transfer.train_transfer(x, y, ["a", "b"], spec, settings, pretrained_dir=pretrained_dir)
    # Training everything from scratch (from_scratch=True) costs a full training graph;
    # the same frozen recipe on untrained weights isolates what the pretraining brings.
    scratch = transfer.train_transfer(x, y, ["a", "b"], spec, settings, pretrained_dir=scratch_dir)
    base = pre.model.get_layer(reference.name)
    for a, b in zip(before, base.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the frozen phase left the backbone alone
    assert pre.metrics["accuracy"] >= 0.75
    assert pre.metrics["accuracy"] > scratch.metrics["accuracy"] + 0.1


@pytest.mark.slow
def test_fine_tuning_changes_only_the_last_layers(pretrained_dir):
    rng = np.random.default_rng(2)
    x, y = stripes(10, [20, 110], rng)
    spec = transfer.TransferSpec(
        alpha=0.35, image_size=SIZE, fine_tune_layers=5, fine_tune_epochs=1
    )
    r = transfer.train_transfer(
        x,
        y,
        ["a", "b"],
        spec,
        TrainSettings(epochs=1, validation_split=0.0),
        pretrained_dir=pretrained_dir,
    )
    fresh = transfer.build_transfer_model(spec, 2, pretrained_dir=pretrained_dir).base
    base = r.model.get_layer(fresh.name)
    changed = [
        layer.name
        for layer, ref in zip(base.layers, fresh.layers, strict=True)
        if any(not np.array_equal(a, b) for a, b in zip(layer.get_weights(), ref.get_weights()))
    ]
    assert changed and set(changed) <= {layer.name for layer in base.layers[-5:]}
    assert r.metrics["epochs_run"] == 2


def test_missing_weights_are_a_clear_error_unless_from_scratch_is_explicit(tmp_path):
    spec = transfer.TransferSpec(alpha=0.35, image_size=SIZE)
    with pytest.raises(transfer.PretrainedWeightsMissing, match="0.35_32_no_top.h5"):
        transfer.build_transfer_model(spec, 2, pretrained_dir=tmp_path)
    model = transfer.build_transfer_model(spec, 2, pretrained_dir=None, from_scratch=True).model
    assert model.input_shape == (None, SIZE * SIZE * 3)


def test_a_weights_file_of_another_width_is_rejected_naming_the_layer(tmp_path):
    base = transfer.build_mobilenet_v2((SIZE, SIZE, 3), 0.1)
    path = tmp_path / transfer.mobilenet_v2_weights_file(0.35, SIZE)
    transfer.save_base_weights(base, path)
    with pytest.raises(transfer.WeightsFileMismatch, match="layer Conv1 "):
        transfer.check_weights_file(path, 0.35, SIZE)
    transfer.check_weights_file(path, 0.1, SIZE)
    assert (
        transfer.available_backbones(tmp_path)
        == [{"backbone": "mobilenetv2", "alpha": 0.35, "image_size": 32, "path": str(path)}]
        or transfer.available_backbones(tmp_path) == []
    )  # 32 is not a size the studio offers


def test_available_backbones_lists_installed_files(tmp_path):
    assert transfer.available_backbones(tmp_path) == []
    (tmp_path / transfer.mobilenet_v2_weights_file(0.35, 96)).write_bytes(b"")
    assert transfer.available_backbones(tmp_path) == [
        {
            "backbone": "mobilenetv2",
            "alpha": 0.35,
            "image_size": 96,
            "path": str(
                tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
            ),
        }
    ]


def test_unknown_backbone_and_bad_alpha_are_rejected():
    with pytest.raises(LearnParamError, match="backbone"):
        transfer.TransferSpec(backbone="resnet").validate()
    with pytest.raises(LearnParamError, match="alpha"):
        transfer.TransferSpec(alpha=0.5).validate()
