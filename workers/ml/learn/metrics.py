"""Classification and regression metrics in plain numpy."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix.

    ``y_true`` and ``y_pred`` are class indices into ``labels``. The confusion
    matrix is ``[true][predicted]``. A class never predicted has precision 0.
    """
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} items, y_pred {y_pred.size}")
    n = len(labels)
    cm = np.zeros((n, n), dtype=np.int64)
    if y_true.size:
        np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    present = support > 0
    return {
        "accuracy": float(tp.sum() / y_true.size) if y_true.size else 0.0,
        "per_class": per_class,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "confusion_matrix": cm.tolist(),
        "labels": list(labels),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Mean squared and mean absolute error over all outputs."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    err = y_pred - y_true
    return {"mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err)))}
