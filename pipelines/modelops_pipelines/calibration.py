"""The calibrator the training Job fits on its held-out split, for the exporter's label-free estimates.

Stored in the reference profile under ``modelops.formats.quality.CALIBRATION_KEY`` as plain numbers (the
schema is in modelops.drift.estimate, which applies it without scikit-learn):

- binary classifiers: an isotonic regression of "the label is the positive class" on the positive-class
  score (CBPE reads the calibrated probability of each served row);
- regressors (DLE): two small tree models (scikit-learn gradient boosting, DLE_TREES trees) of |residual| and
  residual² on the numeric features and the prediction, exported node by node.

- multi-class classifiers: one isotonic regression per class of "the label is this class" on that class's
  probability (``isotonic_ovr``; the exporter's multi-class CBPE normalises the calibrated rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

# Below this many held-out rows a calibrator is noise: the profile carries none.
MIN_ROWS = 50
# One tree of depth 6 per loss (64 leaves of at least 20 rows): the exporter walks it in 6 numpy steps, so
# DLE on a 10,000-row window costs about a millisecond (bench/quality_feedback.py); more trees cost linearly.
DLE_TREES = 1
DLE_DEPTH = 6
DLE_LEARNING_RATE = 1.0
DLE_MIN_LEAF = 20


def fit_classification(y: np.ndarray, proba: np.ndarray, classes: Sequence[Any]) -> dict[str, Any] | None:
    """``y`` class indices of the held-out rows, ``proba`` their [N, C] probabilities."""
    from sklearn.isotonic import IsotonicRegression

    if len(classes) != 2 or len(y) < MIN_ROWS or proba.ndim != 2 or proba.shape[1] != 2:
        return None
    score = np.asarray(proba[:, 1], dtype=float)
    truth = (np.asarray(y) == 1).astype(float)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score, truth)
    return {"kind": "classification", "method": "isotonic",
            "x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_],
            "positive_class": classes[1], "classes": list(classes), "threshold": 0.5, "rows": len(y)}


def fit_multiclass(y: np.ndarray, proba: np.ndarray, classes: Sequence[Any]) -> dict[str, Any] | None:
    """One-vs-rest isotonic calibrators of a multi-class classifier (modelops.drift.estimate's
    `isotonic_ovr` schema): ``y`` class indices of the held-out rows, ``proba`` their [N, C] probabilities."""
    from sklearn.isotonic import IsotonicRegression

    if len(classes) < 3 or len(y) < MIN_ROWS or proba.ndim != 2 or proba.shape[1] != len(classes):
        return None
    per_class = []
    for k in range(len(classes)):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            np.asarray(proba[:, k], dtype=float), (np.asarray(y) == k).astype(float))
        per_class.append({"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]})
    return {"kind": "classification", "method": "isotonic_ovr", "classes": list(classes), "per_class": per_class,
            "rows": len(y)}


def _ensemble(est: Any) -> dict[str, Any]:
    trees = []
    for stage in est.estimators_[:, 0]:
        t = stage.tree_
        trees.append({"feature": [int(v) for v in t.feature], "threshold": [float(v) for v in t.threshold],
                      "left": [int(v) for v in t.children_left], "right": [int(v) for v in t.children_right],
                      "value": [float(v) for v in t.value[:, 0, 0]]})
    return {"base": float(np.asarray(est.init_.constant_).ravel()[0]), "learning_rate": float(est.learning_rate),
            "trees": trees}


def dle_matrix(frame: pd.DataFrame, features: Sequence[str], fill: Sequence[float],
               prediction: np.ndarray) -> np.ndarray:
    cols = [pd.to_numeric(frame[f], errors="coerce").to_numpy(dtype=float) for f in features]
    X = np.column_stack([*cols, np.asarray(prediction, dtype=float)])
    for j, v in enumerate(fill):
        X[np.isnan(X[:, j]), j] = v
    return X


def dle_estimator(seed: int = 0) -> Any:
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(n_estimators=DLE_TREES, max_depth=DLE_DEPTH, learning_rate=DLE_LEARNING_RATE,
                                     min_samples_leaf=DLE_MIN_LEAF, random_state=seed)


def fit_regression(frame: pd.DataFrame, y: np.ndarray, prediction: np.ndarray, numeric: Sequence[str],
                   seed: int = 0) -> dict[str, Any] | None:
    """DLE models on the held-out rows: ``frame`` their features, ``prediction`` the model's values."""
    if len(y) < MIN_ROWS:
        return None
    features = [str(f) for f in numeric]
    fill = []
    for f in features:
        x = pd.to_numeric(frame[f], errors="coerce").to_numpy(dtype=float)
        med = np.nanmedian(x) if np.isfinite(x).any() else 0.0
        fill.append(float(med))
    X = dle_matrix(frame, features, fill, prediction)
    resid = np.asarray(y, dtype=float) - np.asarray(prediction, dtype=float)
    models = {}
    for name, target in (("abs", np.abs(resid)), ("sq", resid * resid)):
        est = dle_estimator(seed).fit(X, target)
        models[name] = _ensemble(est)
    return {"kind": "regression", "method": "dle", "features": features, "fill": fill, **models,
            "rows": len(y)}
