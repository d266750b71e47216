"""Realised model quality of a window of joined (prediction, label) rows: vectorised numpy, no scikit-learn.

The drift exporter's runtime does not ship scikit-learn (import-linter contract), so the metrics are written
here; tests/unit/drift/test_quality.py holds them to scikit-learn's within 1e-9 on the same rows:

- ``auc``: ``roc_auc_score`` (the Mann-Whitney U statistic with average ranks for ties; absent when the
  window holds one class only),
- ``accuracy``: ``accuracy_score`` of the served class against the label,
- ``f1``: ``f1_score`` of the positive class (0 when it is never predicted nor true, as ``zero_division=0``),
- ``log_loss``: ``log_loss`` of the positive-class score, clipped to [eps, 1 - eps] with float64's eps,
- ``brier``: ``brier_score_loss`` of the positive-class score,
- ``rmse`` / ``mae``: ``root_mean_squared_error`` / ``mean_absolute_error``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]

EPS = float(np.finfo(np.float64).eps)


def average_ranks(values: F) -> F:
    """1-based ranks, ties get the mean of their ranks (scipy.stats.rankdata 'average')."""
    n = len(values)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], n]  # exclusive
    mean_rank = (starts + ends + 1) / 2.0  # mean of start+1 .. end
    group = np.repeat(np.arange(len(starts)), ends - starts)
    ranks = np.empty(n)
    ranks[order] = mean_rank[group]
    return ranks


def auc(y: F, score: F) -> float | None:
    """ROC AUC of binary labels (1 positive) against scores; None with a single class."""
    pos = y == 1
    n1 = int(pos.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return None
    ranks = average_ranks(score)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def binary_f1(y: F, pred: F) -> float:
    tp = float(np.count_nonzero((pred == 1) & (y == 1)))
    fp = float(np.count_nonzero((pred == 1) & (y != 1)))
    fn = float(np.count_nonzero((pred != 1) & (y == 1)))
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


def classification_metrics(y: F, pred: F, score: F | None, binary: bool = True) -> dict[str, float]:
    """Realised metrics of a classifier window.

    ``y`` and ``pred`` are class codes (binary: 1 = positive class, 0 = other); ``score`` is the
    positive-class probability (None when the responses carry no probabilities: then only accuracy/F1).
    Multi-class windows (``binary=False``) get accuracy only.
    """
    out: dict[str, float] = {}
    if len(y) == 0:
        return out
    out["accuracy"] = float(np.count_nonzero(pred == y) / len(y))
    if not binary:
        return out
    out["f1"] = binary_f1(y, pred)
    if score is not None and np.isfinite(score).all():
        a = auc(y, score)
        if a is not None:
            out["auc"] = a
        p = np.clip(score, EPS, 1 - EPS)
        out["log_loss"] = float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))
        out["brier"] = float(np.mean((y - score) ** 2))
    return out


def regression_metrics(y: F, pred: F) -> dict[str, float]:
    if len(y) == 0:
        return {}
    err = y - pred
    return {"rmse": float(np.sqrt(np.mean(err * err))), "mae": float(np.mean(np.abs(err)))}
