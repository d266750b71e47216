"""Label-free quality estimates from the calibrator in the reference profile (key ``calibration``).

CBPE (confidence-based performance estimation, classifiers): the training Job fits a calibrator of the
positive-class score on its held-out split. Under covariate shift without concept shift P(y | x) is
unchanged, so the calibrated probability p_i of each served row is the chance that its label is positive
and the expected confusion matrix of a window is a sum over its rows:
E[TP] = sum(yhat p), E[FP] = sum(yhat (1 - p)), E[FN] = sum((1 - yhat) p), E[TN] = sum((1 - yhat)(1 - p)).
Accuracy and F1 follow from it; AUC from the expected ROC curve (expected TPR and FPR at every distinct
score, trapezoids between them), as NannyML's CBPE does.

DLE (direct loss estimation, regressors): the training Job fits two small gradient-boosted tree models on
the held-out split, one of |residual| and one of residual², on the numeric features and the prediction;
the window's estimated MAE is the mean predicted |residual|, its RMSE the root of the mean predicted
residual². The trees are stored as plain arrays (never pickle) and evaluated level by level in numpy.

Calibration schema (profile["calibration"])::

    classification: {"kind": "classification", "method": "isotonic", "x": [...], "y": [...],
                     "positive_class": "1", "classes": ["0", "1"], "threshold": 0.5, "rows": n}
                    method "platt": {"coef": a, "intercept": b} instead of x/y (p = 1/(1+exp(-(a s + b))))
    regression:     {"kind": "regression", "method": "dle", "features": [numeric feature names...],
                     "fill": [value for a missing feature...],
                     "abs": Ensemble, "sq": Ensemble, "rows": n}
    Ensemble:       {"base": float, "learning_rate": float, "trees": [Tree, ...]}
    Tree:           {"feature": [int...], "threshold": [float...], "left": [int...], "right": [int...],
                     "value": [float...]}    # feature index len(features) = the prediction; left -1 = leaf
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]


class CalibrationError(ValueError):
    """A profile's calibration block that cannot be used (the exporter then publishes no estimates)."""


def calibrate(cal: Mapping[str, Any], score: F) -> F:
    method = cal.get("method")
    if method == "isotonic":
        x = np.asarray(cal["x"], dtype=float)
        y = np.asarray(cal["y"], dtype=float)
        if len(x) == 0 or len(x) != len(y):
            raise CalibrationError("isotonic calibration needs x and y of one non-zero length")
        clipped: F = np.clip(np.interp(score, x, y), 0.0, 1.0)
        return clipped
    if method == "platt":
        z = float(cal["coef"]) * score + float(cal["intercept"])
        out: F = 1.0 / (1.0 + np.exp(-z))
        return out
    raise CalibrationError(f"unknown calibration method {method!r}")


def cbpe(cal: Mapping[str, Any], score: F, pred: F) -> dict[str, float]:
    """Estimated accuracy, F1 and AUC of a window: ``score`` positive-class scores, ``pred`` 1/0 classes."""
    if len(score) == 0:
        return {}
    p = calibrate(cal, score)
    tp = float(np.sum(pred * p))
    fp = float(np.sum(pred * (1 - p)))
    fn = float(np.sum((1 - pred) * p))
    tn = float(np.sum((1 - pred) * (1 - p)))
    out = {"accuracy": (tp + tn) / len(p)}
    denom = 2 * tp + fp + fn
    out["f1"] = 2 * tp / denom if denom else 0.0
    a = expected_auc(score, p)
    if a is not None:
        out["auc"] = a
    return out


def expected_auc(score: F, p: F) -> float | None:
    """Area under the expected ROC curve: thresholds at the distinct scores, highest first."""
    order = np.argsort(-score, kind="mergesort")
    s, q = score[order], p[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last row of each run of equal scores
    tps = np.cumsum(q)[last]
    fps = np.cumsum(1 - q)[last]
    if tps[-1] <= 0 or fps[-1] <= 0:
        return None
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


# --- multi-class CBPE -------------------------------------------------------------------------------------
#
# A calibrator per class (one-vs-rest isotonic regression of "the label is class k" on the class-k score,
# fitted on the held-out split), the calibrated rows normalised to sum to 1: p[i, k] is the chance that row i
# is of class k. The expected confusion matrix of a window is then E[C[k, j]] = sum over rows predicted j of
# p[i, k]; accuracy is its trace over the rows, F1 the macro average of the per-class F1 of its one-vs-rest
# counts, AUC the macro average of each class's expected one-vs-rest ROC area (`expected_auc`), as NannyML's
# multi-class CBPE does.
#
#     {"kind": "classification", "method": "isotonic_ovr", "classes": [...],
#      "per_class": [{"x": [...], "y": [...]}, ...]}          # one per class, in the order of `classes`


MULTICLASS_METHOD = "isotonic_ovr"


def calibrate_multiclass(cal: Mapping[str, Any], proba: F) -> F:
    """Calibrated [N, C] class probabilities (rows sum to 1) of the served [N, C] probabilities."""
    per_class = cal.get("per_class")
    if cal.get("method") != MULTICLASS_METHOD or not isinstance(per_class, list):
        raise CalibrationError(f"unknown multi-class calibration method {cal.get('method')!r}")
    if proba.ndim != 2 or proba.shape[1] != len(per_class) or len(per_class) < 2:
        raise CalibrationError(f"{len(per_class)} class calibrators for probabilities of shape {proba.shape}")
    p = np.column_stack([calibrate({"method": "isotonic", **c}, proba[:, k]) for k, c in enumerate(per_class)])
    total = p.sum(axis=1, keepdims=True)
    # a row every calibrator puts at 0 keeps the served probabilities
    out: F = np.where(total > 0, p / np.where(total > 0, total, 1.0), proba)
    return out


def cbpe_multiclass(cal: Mapping[str, Any], proba: F, pred: npt.NDArray[np.int64]) -> dict[str, float]:
    """Estimated accuracy, macro F1 and macro one-vs-rest AUC of a window: ``proba`` the served [N, C] class
    probabilities, ``pred`` the served class indices (0..C-1)."""
    n = len(pred)
    if n == 0:
        return {}
    p = calibrate_multiclass(cal, np.asarray(proba, dtype=float))
    c = p.shape[1]
    served = np.zeros((n, c))
    served[np.arange(n), pred] = 1.0
    # expected confusion matrix: rows the (unknown) true class, columns the served one
    confusion = p.T @ served
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(c), where=denom > 0)
    out = {"accuracy": float(tp.sum() / n), "f1": float(f1.mean())}
    aucs = [expected_auc(np.asarray(proba[:, k], dtype=float), p[:, k]) for k in range(c)]
    if all(a is not None for a in aucs):
        out["auc"] = float(np.mean([a for a in aucs if a is not None]))
    return out


# --- DLE ------------------------------------------------------------------------------------------------

def tree_predict(tree: Mapping[str, Sequence[Any]], X: F) -> F:
    """Evaluate one stored tree on all rows at once, one level per step."""
    feature = np.asarray(tree["feature"], dtype=np.int64)
    threshold = np.asarray(tree["threshold"], dtype=float)
    left = np.asarray(tree["left"], dtype=np.int64)
    right = np.asarray(tree["right"], dtype=np.int64)
    value = np.asarray(tree["value"], dtype=float)
    node = np.zeros(len(X), dtype=np.int64)
    rows = np.arange(len(X))
    for _ in range(len(feature)):  # depth bound; stops as soon as every row is at a leaf
        inner = left[node] >= 0
        if not inner.any():
            break
        f = np.where(inner, feature[node], 0)
        x = X[rows, f]
        # missing values (NaN) go left, as scikit-learn's trees send them where training had none
        go_left = ~(x > threshold[node])
        node = np.where(inner, np.where(go_left, left[node], right[node]), node)
    out: F = value[node]
    return out


class Forest:
    """An ensemble's trees padded into [trees, nodes] arrays: every tree walks every row at once."""

    def __init__(self, ens: Mapping[str, Any]) -> None:
        trees = ens["trees"]
        self.base = float(ens["base"])
        self.rate = float(ens["learning_rate"])
        width = max((len(t["feature"]) for t in trees), default=1)
        shape = (len(trees), width)
        self.feature = np.zeros(shape, dtype=np.int64)
        self.threshold = np.zeros(shape)
        self.left = np.full(shape, -1, dtype=np.int64)
        self.right = np.full(shape, -1, dtype=np.int64)
        self.value = np.zeros(shape)
        for i, t in enumerate(trees):
            k = len(t["feature"])
            self.feature[i, :k] = np.maximum(np.asarray(t["feature"], dtype=np.int64), 0)
            self.threshold[i, :k] = t["threshold"]
            self.left[i, :k] = t["left"]
            self.right[i, :k] = t["right"]
            self.value[i, :k] = t["value"]
        self.depth = _depth(self.left, self.right)

    def predict(self, X: F) -> F:
        n, t = len(X), len(self.feature)
        if t == 0:
            return np.full(n, self.base)
        width = self.feature.shape[1]
        feature, threshold = self.feature.ravel(), self.threshold.ravel()
        left, right = self.left.ravel(), self.right.ravel()
        flat_x = np.ascontiguousarray(X, dtype=float).ravel()
        row_base = (np.arange(n) * X.shape[1])[:, None]
        node = np.broadcast_to((np.arange(t) * width)[None, :], (n, t)).copy()  # flat index of each root
        tree_base = node[0].copy()
        for _ in range(self.depth):
            lft = left.take(node)
            x = flat_x.take(row_base + feature.take(node))
            child = np.where(x > threshold.take(node), right.take(node), lft)
            node = np.where(lft >= 0, tree_base + child, node)
        out: F = self.base + self.rate * self.value.ravel().take(node).sum(axis=1)
        return out


def _depth(left: npt.NDArray[np.int64], right: npt.NDArray[np.int64]) -> int:
    """Longest root-to-leaf path over all trees (nodes come parent first, as scikit-learn stores them)."""
    depth = np.zeros(left.shape, dtype=np.int64)
    for j in range(left.shape[1]):
        for kids in (left[:, j], right[:, j]):
            has = kids >= 0
            depth[np.flatnonzero(has), kids[has]] = depth[has, j] + 1
    return int(depth.max())


def ensemble_predict(ens: Mapping[str, Any], X: F) -> F:
    return Forest(ens).predict(X)


_FORESTS: dict[int, tuple[Mapping[str, Any], Forest]] = {}


def forest(ens: Mapping[str, Any]) -> Forest:
    """The compiled ensemble of a calibration block (cached by identity: profiles are loaded once)."""
    hit = _FORESTS.get(id(ens))
    if hit is None or hit[0] is not ens:
        if len(_FORESTS) > 256:
            _FORESTS.clear()
        hit = _FORESTS[id(ens)] = (ens, Forest(ens))
    return hit[1]


def dle(cal: Mapping[str, Any], numeric: F, pred: F) -> dict[str, float]:
    """Estimated MAE and RMSE of a window: ``numeric`` rows x cal["features"] (NaN = missing), ``pred``."""
    if len(pred) == 0:
        return {}
    X = np.column_stack([numeric, pred]) if numeric.size else pred.reshape(-1, 1)
    fill = np.asarray(cal.get("fill", []), dtype=float)
    if len(fill):
        X[:, : len(fill)] = np.where(np.isnan(X[:, : len(fill)]), fill, X[:, : len(fill)])
    abs_err = np.maximum(forest(cal["abs"]).predict(X), 0.0)
    sq_err = np.maximum(forest(cal["sq"]).predict(X), 0.0)
    return {"mae": float(abs_err.mean()), "rmse": float(np.sqrt(sq_err.mean()))}


def check(cal: Any) -> dict[str, Any] | None:
    """The calibration block if usable, else None (old profiles have none; a broken one is ignored)."""
    if not isinstance(cal, dict):
        return None
    try:
        if cal.get("kind") == "classification" and cal.get("method") == MULTICLASS_METHOD:
            c = len(cal.get("per_class") or [])
            calibrate_multiclass(cal, np.full((3, c), 1.0 / max(c, 1)))
            if len(cal.get("classes") or []) != c:
                return None
            return cal
        if cal.get("kind") == "classification":
            calibrate(cal, np.asarray([0.0, 0.5, 1.0]))
            return cal
        if cal.get("kind") == "regression":
            width = len(cal.get("features", [])) + 1
            dle(cal, np.zeros((2, width - 1)), np.zeros(2))
            return cal
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return None
