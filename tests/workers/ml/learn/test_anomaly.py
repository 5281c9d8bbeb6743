import json

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from workers.ml.learn import anomaly
from workers.ml.learn.settings import LearnParamError


def test_kmeans_inertia_is_within_a_few_percent_of_scikit_learn():
    x, _ = make_blobs(1500, n_features=6, centers=8, random_state=3)
    model = anomaly.fit_kmeans(x, n_clusters=8, seed=1)
    scaled = (x - model.mean) / model.scale
    reference = KMeans(8, n_init=3, random_state=0).fit(scaled).inertia_
    assert model.inertia <= reference * 1.03


def test_outliers_score_higher_than_normal_data_and_cross_the_threshold():
    rng = np.random.default_rng(0)
    x, _ = make_blobs(800, n_features=4, centers=5, random_state=1)
    model = anomaly.fit_kmeans(x, n_clusters=10)
    normal = anomaly.score(model, x)
    outliers = anomaly.score(model, x.max(0) + 5 + rng.random((20, 4)) * 5)
    assert outliers.min() > normal.max()
    assert np.all(outliers > model.threshold)
    assert np.mean(normal > model.threshold) == pytest.approx(0.01, abs=0.005)


def test_model_survives_a_json_round_trip():
    x, _ = make_blobs(200, n_features=3, centers=3, random_state=2)
    model = anomaly.fit_kmeans(x, n_clusters=4)
    again = anomaly.from_dict(json.loads(json.dumps(anomaly.to_dict(model))))
    np.testing.assert_array_equal(anomaly.score(again, x), anomaly.score(model, x))
    assert again.threshold == model.threshold


def test_same_seed_gives_the_same_clusters():
    x, _ = make_blobs(300, n_features=3, centers=6, random_state=2)
    a, b = anomaly.fit_kmeans(x, 6, seed=5), anomaly.fit_kmeans(x, 6, seed=5)
    np.testing.assert_array_equal(a.centroids, b.centroids)


def test_bad_inputs_are_rejected():
    x = np.zeros((5, 2))
    with pytest.raises(LearnParamError, match="n_clusters"):
        anomaly.fit_kmeans(x, n_clusters=6)
    x[3, 1] = np.nan
    with pytest.raises(LearnParamError, match="row 3"):
        anomaly.fit_kmeans(x, n_clusters=2)
    model = anomaly.fit_kmeans(np.random.default_rng(0).random((10, 2)), n_clusters=2)
    with pytest.raises(LearnParamError, match="2 features"):
        anomaly.score(model, np.zeros((1, 3)))
    with pytest.raises(LearnParamError, match="k-means"):
        anomaly.from_dict({"type": "gmm"})
