"""Permutation importance: the encoded fast path gives the values of shuffling the raw columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelops_pipelines import families as fam
from modelops_pipelines.train import _columnwise_encoded, permutation_importance

pytestmark = pytest.mark.unit


class _RawOnly:
    """The same fitted pipeline, seen as an opaque model: forces the shuffle-the-raw-columns path."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.pipeline.predict(X))


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"c1": rng.choice(["a", "b", "c"], n).astype(object), "x1": rng.normal(size=n),
                      "x2": rng.normal(size=n), "c2": rng.choice(["u", "v"], n).astype(object)})
    X.loc[rng.random(n) < 0.05, "x1"] = np.nan
    X.loc[rng.random(n) < 0.05, "c1"] = np.nan
    y = ((X["x1"].fillna(0) + (X["c1"] == "a") * 1.5 + rng.normal(scale=0.5, size=n)) > 0.5).astype(int).to_numpy()
    return X, y


@pytest.mark.parametrize("family", ["xgboost", "random_forest"])
def test_encoded_path_equals_shuffling_raw_columns(family: str) -> None:
    X, y = _frame(600, 0)
    params = {"xgboost": {"n_estimators": 20, "max_depth": 3}, "random_forest": {"n_estimators": 10}}[family]
    pipe = fam.build_pipeline(family, "classification", params, numeric=["x1", "x2"], categorical=["c1", "c2"],
                              n_classes=2, n_jobs=1, seed=0)
    pipe.fit(X, y)
    assert _columnwise_encoded(pipe, X) is not None  # interleaved column order is mapped, not refused
    fast = permutation_importance(pipe, X, y, "auc", 2, "classification", seed=3, max_rows=400)
    slow = permutation_importance(_RawOnly(pipe), X, y, "auc", 2, "classification", seed=3, max_rows=400)
    assert list(fast) == list(slow) == ["c1", "x1", "x2", "c2"]
    assert fast == pytest.approx(slow, abs=1e-12)
    assert fast["x1"] > 0.05 and fast["c1"] > 0.05  # the informative columns matter


def test_one_hot_preprocessing_takes_the_raw_path() -> None:
    X, y = _frame(300, 1)
    pipe = fam.build_pipeline("linear", "classification", {"C": 1.0}, numeric=["x1", "x2"],
                              categorical=["c1", "c2"], n_classes=2, n_jobs=1, seed=0)
    pipe.fit(X, y)
    assert _columnwise_encoded(pipe, X) is None
    imp = permutation_importance(pipe, X, y, "auc", 2, "classification", seed=3)
    assert set(imp) == {"c1", "x1", "x2", "c2"} and imp["x1"] > 0.05
