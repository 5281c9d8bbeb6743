"""K-means anomaly detection learning block: distance to the nearest cluster of normal data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.ml.learn.settings import LearnParamError


@dataclass(frozen=True)
class KMeansModel:
    """Centroids live in the scaled feature space: (features - mean) / scale."""

    centroids: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    threshold: float
    inertia: float

    @property
    def n_clusters(self) -> int:
        return len(self.centroids)


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    # ||x||^2 - 2x.c + ||c||^2, clipped because rounding can dip below zero.
    d = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn): 2 + log k candidates per step."""
    n = len(x)
    trials = 2 + int(np.log(k))
    centers = [x[rng.integers(n)]]
    closest = _sq_dist(x, centers[0][None])[:, 0]
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:
            centers.append(x[rng.integers(n)])
            continue
        cand = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
        cand = np.minimum(cand, n - 1)
        dist = np.minimum(closest[None, :], _sq_dist(x[cand], x).reshape(len(cand), n))
        best = int(np.argmin(dist.sum(1)))
        centers.append(x[cand[best]])
        closest = dist[best]
    return np.array(centers)


def _lloyd(
    x: np.ndarray, centers: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, float]:
    for _ in range(max_iter):
        assign = _sq_dist(x, centers).argmin(1)
        new = centers.copy()
        for j in range(len(centers)):
            members = x[assign == j]
            if len(members):
                new[j] = members.mean(0)
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if shift <= tol:
            break
    inertia = float(_sq_dist(x, centers).min(1).sum())
    return centers, inertia


def fit_kmeans(
    x: np.ndarray,
    n_clusters: int = 32,
    seed: int = 1,
    *,
    n_init: int = 3,
    max_iter: int = 300,
    percentile: float = 99.0,
) -> KMeansModel:
    """Cluster normal feature rows; the threshold is the ``percentile`` of training scores.

    Ranges: n_clusters 1..min(samples, 1024); n_init 1..20; percentile (50, 100].
    Features are standardised first so no axis dominates the distance.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise LearnParamError(f"x must be a non-empty (samples, features) array: {x.shape}")
    bad = ~np.isfinite(x).all(1)
    if bad.any():
        raise LearnParamError(f"features of sample row {int(np.argmax(bad))} are NaN or infinite")
    if not 1 <= n_clusters <= min(len(x), 1024):
        raise LearnParamError(
            f"n_clusters must be in 1..{min(len(x), 1024)} for {len(x)} samples: {n_clusters}"
        )
    if not 1 <= n_init <= 20:
        raise LearnParamError(f"n_init out of range 1..20: {n_init}")
    if not 50 < percentile <= 100:
        raise LearnParamError(f"percentile out of range (50, 100]: {percentile}")
    mean = x.mean(0)
    scale = x.std(0)
    scale[scale == 0] = 1.0
    xs = (x - mean) / scale
    tol = 1e-4 * float(xs.var(0).mean())
    rng = np.random.default_rng(seed)
    best: tuple[np.ndarray, float] | None = None
    for _ in range(n_init):
        centers, inertia = _lloyd(xs, _kmeans_pp(xs, n_clusters, rng), max_iter, tol)
        if best is None or inertia < best[1]:
            best = (centers, inertia)
    assert best is not None
    scores = np.sqrt(_sq_dist(xs, best[0]).min(1))
    return KMeansModel(
        centroids=best[0],
        mean=mean,
        scale=scale,
        threshold=float(np.percentile(scores, percentile)),
        inertia=best[1],
    )


def score(model: KMeansModel, x: np.ndarray) -> np.ndarray:
    """Anomaly score per row: Euclidean distance to the nearest centroid (scaled space)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != model.centroids.shape[1]:
        raise LearnParamError(
            f"x must have {model.centroids.shape[1]} features per row; got shape {x.shape}"
        )
    return np.sqrt(_sq_dist((x - model.mean) / model.scale, model.centroids).min(1))


def to_dict(model: KMeansModel) -> dict:
    """JSON-ready form for storage."""
    return {
        "type": "kmeans",
        "version": 1,
        "centroids": model.centroids.tolist(),
        "mean": model.mean.tolist(),
        "scale": model.scale.tolist(),
        "threshold": model.threshold,
        "inertia": model.inertia,
    }


def from_dict(data: dict) -> KMeansModel:
    if data.get("type") != "kmeans" or data.get("version") != 1:
        raise LearnParamError(f"not a version-1 k-means model: type={data.get('type')!r}")
    return KMeansModel(
        centroids=np.asarray(data["centroids"], dtype=np.float64),
        mean=np.asarray(data["mean"], dtype=np.float64),
        scale=np.asarray(data["scale"], dtype=np.float64),
        threshold=float(data["threshold"]),
        inertia=float(data["inertia"]),
    )
