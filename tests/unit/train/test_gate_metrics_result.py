import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from modelops_pipelines.gate import decide
from modelops_pipelines.metrics import all_scores, higher_is_better, score
from modelops_pipelines.result import base_result, encode, termination_log_path

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("metric, new, champ, margin, passed", [
    ("auc", 0.90, None, 0.0, True),          # no champion: first version passes
    ("auc", 0.90, 0.85, 0.01, True),
    ("auc", 0.855, 0.85, 0.01, False),       # better, but not by the margin
    ("auc", 0.85, 0.85, 0.0, False),         # a tie never passes
    ("auc", 0.80, 0.85, 0.0, False),
    ("rmse", 9.0, 10.0, 0.5, True),          # lower is better
    ("rmse", 10.5, 10.0, 0.0, False),
    ("logloss", 0.30, 0.31, 0.0, True),
    ("r2", 0.51, 0.50, 0.0, True),
])
def test_gate_is_direction_aware(metric, new, champ, margin, passed):
    d = decide(metric, new, champ, margin, champion_version=None if champ is None else "3")
    assert d.passed is passed and d.verdict == ("passed" if passed else "failed")
    if champ is not None:
        assert "v3" in d.reason and metric in d.reason


def test_gate_fails_closed_when_the_champion_cannot_be_scored():
    d = decide("auc", 0.99, None, 0.0, champion_version="2", champion_error="column 'x' missing")
    assert not d.passed and "column 'x' missing" in d.reason


def test_scores_match_sklearn_and_directions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.6 + rng.random(200) * 0.5, 0, 1)
    assert score("auc", y, p, 2) == pytest.approx(skm.roc_auc_score(y, p))
    assert score("logloss", y, p, 2) == pytest.approx(skm.log_loss(y, np.column_stack([1 - p, p])))
    assert score("accuracy", y, p, 2) == pytest.approx(np.mean((p > 0.5) == y))
    y3 = rng.integers(0, 3, 300)
    proba = rng.dirichlet([1, 1, 1], 300)
    proba[np.arange(300), y3] += 1.0
    proba /= proba.sum(axis=1, keepdims=True)
    assert score("auc", y3, proba, 3) == pytest.approx(skm.roc_auc_score(y3, proba, multi_class="ovr"))
    assert set(all_scores("classification", y3, proba, 3)) == {"auc", "accuracy", "f1", "logloss"}
    yr = rng.normal(size=100)
    assert score("rmse", yr, yr + 1, None) == pytest.approx(1.0)
    assert score("mae", yr, yr - 2, None) == pytest.approx(2.0)
    assert higher_is_better("auc") and higher_is_better("r2") and not higher_is_better("rmse")
    with pytest.raises(ValueError):
        score("rmse", y, p, 2)


def test_binary_auc_equals_sklearn_with_ties_and_defers_when_undefined():
    from modelops_pipelines.metrics import binary_auc

    rng = np.random.default_rng(1)
    for n in (2, 7, 500, 5000):
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        coarse = np.round(rng.random(n) * 0.3 + y * 0.2, 2)  # many ties, as float32 boosters produce
        for p in (coarse, rng.random(n), np.full(n, 0.5)):
            assert binary_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
            assert score("auc", y, p, 2) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert binary_auc(np.zeros(5, dtype=int), rng.random(5)) is None  # one class: scikit-learn's error
    assert binary_auc(np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3])) is None
    one_class = rng.random(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = skm.roc_auc_score(np.zeros(5, dtype=int), one_class)  # nan (or an error) by scikit-learn
        assert np.isnan(score("auc", np.zeros(5, dtype=int), one_class, 2)) == np.isnan(expected)


def test_result_fits_the_termination_message_limit():
    r = base_result("m", "s3://b/k.csv")
    r.update(message="x" * 10_000, timings={f"t{i}": 1.0 for i in range(50)}, metrics={"auc": 0.9})
    text = encode(r)
    assert len(text.encode()) <= 4096
    back = json.loads(text)
    assert back["status"] == "failed" and back["message"].endswith("[cut]") and "timings" not in back
    small = base_result("m", "u")
    assert json.loads(encode(small)) == small  # nothing dropped when it fits


def test_termination_log_path_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELOPS_TERMINATION_LOG", raising=False)
    assert termination_log_path(str(tmp_path / "a")) == tmp_path / "a"
    monkeypatch.setenv("MODELOPS_TERMINATION_LOG", str(tmp_path / "b"))
    assert termination_log_path(None) == tmp_path / "b"
    assert termination_log_path(str(tmp_path / "a")) == tmp_path / "a"
