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


# --- wired into the exporter: its estimated-quality series of a multi-class model -----------------------

def _exporter_for(profile: dict) -> tuple:
    from fastapi.testclient import TestClient

    from modelops.drift.app import create_app
    from modelops.drift.auth import Auth
    from modelops.drift.reference import ReferenceSpec, ReferenceStore
    from modelops.drift.service import Exporter, ExporterConfig
    from modelops.drift.stats import DriftConfig

    store = ReferenceStore([ReferenceSpec.parse("wine=mem")], loader=lambda source, uri: profile)
    ex = Exporter(store, ExporterConfig(drift=DriftConfig(min_rows=200, min_feature_rows=20), quality_min_labels=100))
    return ex, TestClient(create_app(ex, auth=Auth("s")))


def _series(client, name: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.labels["metric"]: s.value for fam in text_string_to_metric_families(client.get("/metrics").text)
            for s in fam.samples if s.name == name and s.labels.get("model") == "wine"}


def _multiclass_profile(rng: np.random.Generator, classes: list) -> dict:
    import pandas as pd

    from modelops.formats.quality import CALIBRATION_KEY
    from modelops_pipelines.profile import build_reference_profile

    held_p, held_pred, held_y = world(rng, 5000)
    profile = build_reference_profile(pd.DataFrame({"x": rng.normal(size=500)}), task="classification",
                                      predictions=np.asarray(classes)[held_pred[:500]], sample_rows=0)
    profile[CALIBRATION_KEY] = fit_multiclass(held_y, held_p, classes)
    return profile


@pytest.mark.parametrize("as_rows", [False, True], ids=["classes+probabilities", "probability rows"])
def test_the_exporter_publishes_multiclass_cbpe_for_a_multiclass_model(as_rows: bool) -> None:
    """A 3-class model whose profile carries the trainer's isotonic_ovr calibrator: the exporter's
    modelops_quality_estimated is cbpe_multiclass of exactly the served window, and close to the realised
    accuracy the labels then show (covariate shift, no concept shift)."""
    rng = np.random.default_rng(21)
    classes = ["a", "b", "c"]
    profile = _multiclass_profile(rng, classes)
    _, client = _exporter_for(profile)
    proba, pred, y = world(rng, 5000, shift=0.3)
    ids = [f"w{i}" for i in range(len(pred))]
    for lo in range(0, len(pred), 500):
        hi = lo + 500
        body = {"version": "1", "instances": [{"x": 0.0}] * (hi - lo), "ids": ids[lo:hi]}
        if as_rows:  # V1 answers of predict_proba: the classes are the argmax of each row
            body["predictions"] = proba[lo:hi].tolist()
        else:
            body["predictions"] = [classes[k] for k in pred[lo:hi]]
            body["probabilities"] = proba[lo:hi].tolist()
        r = client.post("/ingest/wine", json=body, headers={"Authorization": "Bearer s"})
        assert r.status_code == 200, r.text
    estimated = _series(client, "modelops_quality_estimated")
    want = estimate.cbpe_multiclass(profile["calibration"], proba, pred)
    assert set(estimated) == {"accuracy", "auc", "f1"}
    for m, v in want.items():
        assert estimated[m] == pytest.approx(v, abs=1e-12), m
    # the labels come: realised accuracy, and the estimate's error against it
    labels = [{"id": i, "label": classes[k]} for i, k in zip(ids, y, strict=True)]
    r = client.post("/feedback", json=labels, headers={"Authorization": "Bearer s"})
    assert r.json()["joined"] == len(ids), r.json()
    realised = _series(client, "modelops_quality_realised")
    assert realised["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    error = _series(client, "modelops_quality_estimate_abs_error")
    assert error["accuracy"] == pytest.approx(abs(want["accuracy"] - realised["accuracy"]), abs=1e-12)
    assert error["accuracy"] <= 0.02


def test_a_multiclass_model_without_probabilities_or_calibrator_gets_no_estimate() -> None:
    rng = np.random.default_rng(22)
    classes = [0, 1, 2]
    profile = _multiclass_profile(rng, classes)
    proba, pred, _ = world(rng, 1000)
    _, client = _exporter_for(profile)
    body = {"version": "1", "instances": [{"x": 0.0}] * 1000, "predictions": pred.tolist(),
            "ids": [f"n{i}" for i in range(1000)]}  # classes only: nothing to calibrate
    assert client.post("/ingest/wine", json=body, headers={"Authorization": "Bearer s"}).status_code == 200
    assert _series(client, "modelops_quality_estimated") == {}
    # a calibrator whose classes do not match its per-class calibrators is ignored
    broken = {**profile, "calibration": {**profile["calibration"], "classes": [0, 1]}}
    assert estimate.check(broken["calibration"]) is None
    _, client = _exporter_for(broken)
    body["probabilities"] = proba.tolist()
    assert client.post("/ingest/wine", json=body, headers={"Authorization": "Bearer s"}).status_code == 200
    assert _series(client, "modelops_quality_estimated") == {}


def test_the_trainer_fits_the_multiclass_calibrator() -> None:
    from types import SimpleNamespace

    from modelops_pipelines.train import fit_calibration

    rng = np.random.default_rng(23)
    held_p, _, held_y = world(rng, 2000)
    cal = fit_calibration(SimpleNamespace(classes=["a", "b", "c"], numeric=[]), None, held_y, held_p, 0)
    assert cal is not None and cal["method"] == "isotonic_ovr" and cal["classes"] == ["a", "b", "c"]
    assert estimate.check(cal) is cal
    binary = fit_calibration(SimpleNamespace(classes=[0, 1], numeric=[]), None, (held_y == 0).astype(int),
                             np.column_stack([1 - held_p[:, 0], held_p[:, 0]]), 0)
    assert binary is not None and binary["method"] == "isotonic"
