"""Multi-class CBPE (modelops.drift.estimate.cbpe_multiclass) against references computed independently:

- exact: the expected confusion matrix of a window is the confusion matrix of the window with every row
  repeated once per class, labelled that class and weighted by its calibrated probability; scikit-learn's
  accuracy, macro F1 and one-vs-rest ROC AUC with those sample weights (and scikit-learn's own isotonic
  regressions for the calibrated probabilities) are the expected metrics;
- statistical: on a 3-class problem with a miscalibrated model and covariate shift (no concept shift), the
  estimate of each 5,000-row window is within 0.02 accuracy and 0.03 AUC of the realised value in at least
  90% of the windows.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from modelops.drift import estimate
from modelops_pipelines.calibration import fit_multiclass

pytestmark = pytest.mark.unit

W = np.array([[2.0, -1.0, 0.0], [-1.0, 1.5, -0.5], [0.5, 0.5, 1.5]])  # features x classes


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def world(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(model probabilities, served classes, labels): labels from the true P(y|x); the model is overconfident
    (temperature 0.5), so its raw probabilities are not the chance of each class."""
    x = rng.normal(shift, 1.0, (n, 3))
    truth = softmax(x @ W)
    y = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)
    model = softmax(x @ W / 0.5)
    return model, model.argmax(axis=1), y


def test_exact_against_weighted_scikit_learn() -> None:
    rng = np.random.default_rng(5)
    held_p, _, held_y = world(rng, 3000)
    cal = fit_multiclass(held_y, held_p, ["a", "b", "c"])
    assert cal is not None and cal["method"] == "isotonic_ovr" and len(cal["per_class"]) == 3
    proba, pred, _ = world(rng, 4000, shift=0.4)
    got = estimate.cbpe_multiclass(cal, proba, pred)

    # the calibrated probabilities from scikit-learn's own isotonic regressions, normalised
    iso = [IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(held_p[:, k], held_y == k)
           for k in range(3)]
    p = np.column_stack([iso[k].predict(proba[:, k]) for k in range(3)])
    p = p / p.sum(axis=1, keepdims=True)
    n, c = len(pred), 3
    y_rep = np.tile(np.arange(c), n)  # row i repeated: labels 0, 1, 2 ...
    pred_rep = np.repeat(pred, c)
    w = p.reshape(-1)
    assert got["accuracy"] == pytest.approx(accuracy_score(y_rep, pred_rep, sample_weight=w), abs=1e-9)
    assert got["f1"] == pytest.approx(f1_score(y_rep, pred_rep, sample_weight=w, average="macro",
                                               labels=list(range(c))), abs=1e-9)
    aucs = [roc_auc_score(np.r_[np.ones(n), np.zeros(n)], np.r_[proba[:, k], proba[:, k]],
                          sample_weight=np.r_[p[:, k], 1 - p[:, k]]) for k in range(c)]
    assert got["auc"] == pytest.approx(float(np.mean(aucs)), abs=1e-9)


def test_estimates_follow_realised_quality_under_covariate_shift() -> None:
    rng = np.random.default_rng(11)
    held_p, _, held_y = world(rng, 5000)
    cal = fit_multiclass(held_y, held_p, [0, 1, 2])
    assert cal is not None
    acc_err, auc_err = [], []
    for window in range(20):
        proba, pred, y = world(rng, 5000, shift=0.05 * window)  # the inputs move; P(y|x) does not
        est = estimate.cbpe_multiclass(cal, proba, pred)
        acc_err.append(abs(est["accuracy"] - accuracy_score(y, pred)))
        auc_err.append(abs(est["auc"] - roc_auc_score(y, proba, multi_class="ovr", average="macro")))
    assert np.mean(np.array(acc_err) <= 0.02) >= 0.9, acc_err
    assert np.mean(np.array(auc_err) <= 0.03) >= 0.9, auc_err
    # the raw (uncalibrated) probabilities would say otherwise: the calibrator matters
    proba, pred, y = world(rng, 5000, shift=0.5)
    raw_accuracy = float(proba[np.arange(len(pred)), pred].mean())
    assert abs(raw_accuracy - accuracy_score(y, pred)) > 0.05


def test_bad_multiclass_calibration_is_refused() -> None:
    proba = np.full((4, 3), 1 / 3)
    with pytest.raises(estimate.CalibrationError):
        estimate.cbpe_multiclass({"method": "platt"}, proba, np.zeros(4, dtype=np.int64))
    with pytest.raises(estimate.CalibrationError):  # two calibrators for three classes
        estimate.cbpe_multiclass({"method": "isotonic_ovr", "per_class": [{"x": [0, 1], "y": [0, 1]}] * 2},
                                 proba, np.zeros(4, dtype=np.int64))
    assert estimate.cbpe_multiclass({"method": "isotonic_ovr", "per_class": []}, np.empty((0, 3)),
                                    np.empty(0, dtype=np.int64)) == {}
    assert fit_multiclass(np.zeros(10, dtype=int), np.full((10, 3), 1 / 3), [0, 1, 2]) is None  # too few rows
    assert fit_multiclass(np.zeros(100, dtype=int), np.full((100, 2), 0.5), [0, 1]) is None  # binary: not this
