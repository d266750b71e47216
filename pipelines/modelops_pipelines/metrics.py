"""Scores for the search, the held-out evaluation and the gate: one function, direction-aware.

Classification predictions are probability matrices (n_rows, n_classes) over the encoded classes
0..K-1; regression predictions are values.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from modelops_pipelines.spec import HIGHER_IS_BETTER, TASK_METRICS


def higher_is_better(metric: str) -> bool:
    return metric in HIGHER_IS_BETTER


def as_proba(pred: ArrayLike, n_classes: int) -> np.ndarray:
    """A (n, K) probability matrix from a binary P(class 1) vector or an (n, K) matrix."""
    arr = np.asarray(pred, dtype=float)
    if arr.ndim == 1:
        if n_classes != 2:
            raise ValueError(f"a 1-D prediction needs 2 classes, not {n_classes}")
        arr = np.column_stack([1.0 - arr, arr])
    # float32 probabilities (xgboost) drift from summing to 1; renormalize so log loss is well defined.
    normalized: np.ndarray = arr / np.maximum(arr.sum(axis=1, keepdims=True), 1e-12)
    return normalized


def binary_auc(y_true: np.ndarray, score1: np.ndarray) -> float | None:
    """ROC AUC of a binary 0/1 target as the Mann-Whitney statistic over average ranks (ties count half),
    which is the area under the trapezoidal ROC curve that scikit-learn computes, at a fraction of its cost
    (no input validation, one sort). None when it is undefined or the input needs scikit-learn's checks
    (one class only, non-finite scores): the caller then asks scikit-learn, for its value or its error.
    """
    if y_true.ndim != 1 or score1.ndim != 1 or len(y_true) != len(score1) or not np.isfinite(score1).all():
        return None
    positive = y_true == 1
    n_pos = int(positive.sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0 or not np.isin(y_true, (0, 1)).all():
        return None
    # average ranks (ties share the mean of their positions), from one sort: the group of each score, its size
    _, group, size = np.unique(score1, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(size) - size + (size + 1) / 2.0)[group]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def score(metric: str, y_true: ArrayLike, pred: ArrayLike, n_classes: int | None = None) -> float:
    """The value of `metric`; `n_classes` is None for regression."""
    from sklearn import metrics as skm

    y = np.asarray(y_true)
    if n_classes is None:
        p = np.asarray(pred, dtype=float)
        if metric == "rmse":
            return float(np.sqrt(np.mean((y - p) ** 2)))
        if metric == "mae":
            return float(np.mean(np.abs(y - p)))
        if metric == "r2":
            return float(skm.r2_score(y, p))
        raise ValueError(f"metric {metric!r} is not a regression metric ({TASK_METRICS['regression']})")
    proba = as_proba(pred, n_classes)
    labels = np.arange(n_classes)
    if metric == "auc":
        if n_classes == 2:
            fast = binary_auc(y, proba[:, 1])
            return fast if fast is not None else float(skm.roc_auc_score(y, proba[:, 1]))
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels))
    if metric == "logloss":
        return float(skm.log_loss(y, np.clip(proba, 1e-15, 1.0), labels=labels))
    hard = proba.argmax(axis=1)
    if metric == "accuracy":
        return float(np.mean(hard == y))
    if metric == "f1":
        if n_classes == 2:
            return float(skm.f1_score(y, hard, pos_label=1, zero_division=0))
        return float(skm.f1_score(y, hard, average="macro", labels=labels, zero_division=0))
    raise ValueError(f"metric {metric!r} is not a classification metric ({TASK_METRICS['classification']})")


def all_scores(task: str, y_true: ArrayLike, pred: ArrayLike, n_classes: int | None) -> dict[str, float]:
    """Every metric of the task (what the parent run and the version tags record)."""
    return {m: score(m, y_true, pred, n_classes) for m in TASK_METRICS[task]}


def improvement(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old`, positive when better, in metric units."""
    return new - old if higher_is_better(metric) else old - new
