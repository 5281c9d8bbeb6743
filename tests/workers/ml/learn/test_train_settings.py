import pytest

from workers.ml.learn.classifier import ArchSpec, build_model
from workers.ml.learn.settings import LearnParamError, TrainSettings


def test_defaults_are_valid():
    assert TrainSettings().validate() == TrainSettings()


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("learning_rate", 0.0),
        ("batch_size", 0),
        ("validation_split", 0.9),
        ("seed", -1),
        ("early_stopping_patience", -1),
        ("augmentation", "rotate"),
    ],
)
def test_out_of_range_setting_is_rejected_naming_the_field(field, value):
    with pytest.raises(LearnParamError, match=field):
        TrainSettings(**{field: value}).validate()


def test_conv_input_shape_that_does_not_hold_the_features_is_rejected():
    with pytest.raises(LearnParamError, match="input_shape"):
        build_model(ArchSpec(kind="conv2d", input_shape=(5, 5)), 30, 3)


def test_unknown_architecture_is_rejected():
    with pytest.raises(LearnParamError, match="kind"):
        build_model(ArchSpec(kind="lstm"), 30, 3)


def test_cnn_models_take_the_flat_feature_vector():
    m1 = build_model(ArchSpec(kind="conv1d", layers=(8, 16), input_shape=(10, 3)), 30, 4)
    m2 = build_model(ArchSpec(kind="conv2d", layers=(4,), input_shape=(6, 5)), 30, 4)
    assert m1.input_shape == (None, 30) and m1.output_shape == (None, 4)
    assert m2.input_shape == (None, 30) and m2.output_shape == (None, 4)
