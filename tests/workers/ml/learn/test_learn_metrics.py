import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from workers.ml.learn.metrics import classification_metrics, regression_metrics


def test_classification_metrics_match_scikit_learn():
    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, 200))
    labels = ["idle", "wave", "snake", "updown"]
    m = classification_metrics(y_true, y_pred, labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(4), zero_division=0)
    assert m["accuracy"] == np.mean(y_true == y_pred)
    assert m["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=range(4)).tolist()
    for i, label in enumerate(labels):
        assert np.isclose(m["per_class"][label]["precision"], p[i])
        assert np.isclose(m["per_class"][label]["recall"], r[i])
        assert np.isclose(m["per_class"][label]["f1"], f[i])
        assert m["per_class"][label]["support"] == s[i]


def test_a_class_never_predicted_has_zero_precision_not_nan():
    m = classification_metrics(np.array([0, 1, 1]), np.array([0, 0, 0]), ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}


def test_regression_metrics():
    assert regression_metrics(np.array([1.0, 2.0]), np.array([2.0, 0.0])) == {
        "mse": 2.5,
        "mae": 1.5,
    }
