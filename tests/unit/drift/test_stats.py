import numpy as np
import pandas as pd
import pytest
from scipy import stats as sstats
from scipy.spatial import distance

from modelops.drift.stats import (
    DriftConfig,
    categorical_feature_drift,
    category_key,
    chi_square_p_value,
    jensenshannon,
    ks_from_quantiles,
    numeric_feature_drift,
    psi,
    quantile_grid,
    wasserstein_from_quantiles,
    window_drift,
)
from modelops_pipelines.profile import build_reference_profile, feature_profile

pytestmark = pytest.mark.unit
CFG = DriftConfig(min_rows=100, min_feature_rows=30)


def test_jensenshannon_matches_scipy():
    p = np.array([0.5, 0.3, 0.2, 0.0])
    q = np.array([0.1, 0.3, 0.3, 0.3])
    assert jensenshannon(p, q) == pytest.approx(distance.jensenshannon(p, q))
    assert jensenshannon(p, p) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_zero_for_equal_and_grows_with_shift():
    r = np.full(10, 0.1)
    assert psi(r, r) == 0.0
    assert 0 < psi(r, np.r_[np.full(5, 0.12), np.full(5, 0.08)]) < psi(r, np.r_[np.full(5, 0.18), np.full(5, 0.02)])


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_wasserstein_from_quantiles_is_close_to_scipy_on_raw_data(shift):
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, 20_000)
    cur = rng.normal(shift, 1, 5000)
    probs, q = quantile_grid(feature_profile(pd.Series(ref)))
    ours = wasserstein_from_quantiles(probs, q, np.sort(cur))
    assert ours == pytest.approx(sstats.wasserstein_distance(ref, cur), abs=0.006)


def test_ks_from_quantiles_is_close_to_scipy():
    rng = np.random.default_rng(2)
    ref = rng.normal(0, 1, 20_000)
    cur = rng.normal(0.1, 1, 2000)
    probs, q = quantile_grid(feature_profile(pd.Series(ref)))
    d, p = ks_from_quantiles(probs, q, np.sort(cur), len(ref))
    exact = sstats.ks_2samp(ref, cur)
    assert d == pytest.approx(exact.statistic, abs=0.01)
    assert (p < 0.05) == (exact.pvalue < 0.05)


def test_chi_square_matches_scipy_and_unseen_values_are_certain_drift():
    ref = np.array([0.5, 0.3, 0.2])
    cur = np.array([60.0, 25.0, 15.0])
    assert chi_square_p_value(ref, cur) == pytest.approx(sstats.chisquare(cur, ref * 100).pvalue)
    assert chi_square_p_value(np.array([0.5, 0.5, 0.0]), np.array([40.0, 40.0, 20.0])) == 0.0


def test_numeric_feature_no_drift_vs_shift_and_data_quality():
    rng = np.random.default_rng(3)
    ref = feature_profile(pd.Series(rng.normal(10, 2, 5000)))
    same = numeric_feature_drift("x", ref, rng.normal(10, 2, 2000), CFG)
    assert same.method == "wasserstein_norm" and same.drifted is False and same.psi < 0.1
    cur = rng.normal(11, 2, 2000)
    cur[:100] = np.nan
    cur[100:150] = 1000.0
    moved = numeric_feature_drift("x", ref, cur, CFG)
    assert moved.drifted is True and moved.score >= 0.1
    assert moved.missing_share == pytest.approx(0.05)
    assert moved.out_of_range_share >= 50 / 1900
    assert moved.psi > 0.1


def test_small_reference_uses_ks_and_low_cardinality_uses_value_tests():
    rng = np.random.default_rng(4)
    small = feature_profile(pd.Series(rng.normal(0, 1, 800)))
    assert numeric_feature_drift("x", small, rng.normal(0, 1, 500), CFG).method == "ks"
    ints = feature_profile(pd.Series(rng.integers(0, 4, 5000)))
    fd = numeric_feature_drift("i", ints, rng.integers(0, 4, 1000).astype(float), CFG)
    assert fd.method == "jensenshannon" and fd.drifted is False
    small_ints = feature_profile(pd.Series(rng.integers(0, 2, 500)))
    assert numeric_feature_drift("b", small_ints, rng.integers(0, 2, 500).astype(float), CFG).method == "z"


def test_categorical_unseen_categories_and_canonical_keys():
    rng = np.random.default_rng(5)
    ref = feature_profile(pd.Series(rng.choice(["a", "b", "c"], 5000)), categorical=True)
    cur = list(rng.choice(["a", "b", "c"], 900)) + ["new"] * 100
    fd = categorical_feature_drift("c", ref, cur, CFG)
    assert fd.method == "jensenshannon"
    assert fd.unseen_category_share == pytest.approx(0.1)
    labels = feature_profile(pd.Series(rng.integers(0, 3, 5000)), categorical=True)
    as_floats = categorical_feature_drift("p", labels, [float(v) for v in rng.integers(0, 3, 1000)], CFG)
    assert as_floats.unseen_category_share == 0.0 and as_floats.drifted is False
    assert category_key(1.0) == category_key(1) == category_key("1.0") == "1"
    assert category_key(None) is None and category_key(float("nan")) is None


def test_window_below_minimum_is_insufficient_not_zero():
    rng = np.random.default_rng(6)
    frame = pd.DataFrame({"a": rng.normal(0, 1, 3000), "b": rng.choice(["x", "y"], 3000)})
    profile = build_reference_profile(frame, task="regression")
    few = window_drift(profile, {"a": rng.normal(0, 1, 50), "b": np.array(["x"] * 50, dtype=object)}, 50,
                       cfg=CFG)
    assert few.status == "insufficient_data" and few.drift_share is None and few.features == []
    ok = window_drift(profile, {"a": rng.normal(3, 1, 500), "b": np.array(["x", "y"] * 250, dtype=object)},
                      500, cfg=CFG)
    assert ok.status == "ok" and ok.drifted_features == 1 and ok.drift_share == 0.5 and ok.dataset_drifted


def test_feature_with_mostly_missing_values_is_not_judged():
    rng = np.random.default_rng(7)
    profile = build_reference_profile(pd.DataFrame({"a": rng.normal(0, 1, 3000), "b": rng.normal(0, 1, 3000)}),
                                      task="regression")
    b = np.full(500, np.nan)
    b[:10] = 0.0
    res = window_drift(profile, {"a": rng.normal(0, 1, 500), "b": b}, 500, cfg=CFG)
    status = {f.name: f.status for f in res.features}
    assert status == {"a": "ok", "b": "insufficient_data"} and res.judged_features == 1
