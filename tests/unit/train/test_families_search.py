import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine
from sklearn.preprocessing import StandardScaler

from modelops_pipelines import families as fam
from modelops_pipelines.data import validate_and_prepare
from modelops_pipelines.generate import generate_churn
from modelops_pipelines.search import SearchData, run_search
from modelops_pipelines.spec import ALL_FAMILIES, SearchSpec, TrainSpec

pytestmark = pytest.mark.unit

SMALL = {
    "xgboost": {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.2},
    "hist_gradient_boosting": {"max_iter": 20, "learning_rate": 0.2},
    "random_forest": {"n_estimators": 12, "max_depth": 6},
}


def _small(family, task):
    if family == "linear":
        return {"C": 1.0} if task == "classification" else {"alpha": 1.0}
    return SMALL[family]


def test_stage_points():
    assert fam.stage_points(200) == [50, 100, 150, 200]
    assert fam.stage_points(3) == [1, 2, 3]


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_every_family_trains_a_pipeline_that_handles_unseen_categories_and_missing_values(family):
    frame = generate_churn(600, seed=0, missing_rate=0.1)
    spec = TrainSpec.model_validate({"modelName": "m", "dataset": {"uri": "/u", "target": "churn",
                                                                   "task": "classification"}})
    data = validate_and_prepare(frame, spec)
    pipe = fam.build_pipeline(family, "classification", _small(family, "classification"), numeric=data.numeric,
                              categorical=data.categorical, n_classes=2, n_jobs=1, seed=0)
    pipe.fit(data.X, data.y)
    odd = data.X.head(3).copy()
    odd["card_category"] = ["Titanium", None, "Blue"]  # unseen and missing categories at serving time
    odd["credit_limit"] = [np.nan, 1e9, -5.0]
    proba = pipe.predict_proba(odd)
    assert proba.shape == (3, 2) and np.isfinite(proba).all()


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_staged_fit_reports_every_stage_and_can_be_stopped(family, task):
    if task == "classification":
        X, y = load_wine(return_X_y=True)
        n_classes = 3
    else:
        X, y = load_diabetes(return_X_y=True)
        n_classes = None
    order = np.random.default_rng(0).permutation(len(X))  # the datasets are sorted by class
    X, y = StandardScaler().fit_transform(X[order]), y[order]
    reported = []

    def on_stage(step, pred):
        reported.append((step, np.asarray(pred).shape))

    fam.staged_fit(family, task, _small(family, task), X[:120], y[:120], X[120:], on_stage, n_classes=n_classes,
                   n_jobs=1, seed=0, n_categorical=0, n_numeric=X.shape[1])
    steps = [s for s, _ in reported]
    assert steps[-1] == fam.STAGES - 1 and steps == sorted(steps)
    # xgboost reports every quarter; warm-start families the first quarter and the end; linear the end
    assert steps == {"xgboost": [0, 1, 2, 3], "linear": [3]}.get(family, [0, 3])
    expected = (len(X) - 120, 3) if task == "classification" else (len(X) - 120,)
    assert all(shape == expected for _, shape in reported)

    class Stop(Exception):
        pass

    def stop(step, pred):
        raise Stop

    with pytest.raises(Stop):
        fam.staged_fit(family, task, _small(family, task), X[:120], y[:120], X[120:], stop, n_classes=n_classes,
                       n_jobs=1, seed=0, n_categorical=0, n_numeric=X.shape[1])


def _search_data(seed=0):
    frame = generate_churn(1000, seed=seed)
    spec = TrainSpec.model_validate({"modelName": "m", "dataset": {"uri": "/u", "target": "churn",
                                                                   "task": "classification"}})
    data = validate_and_prepare(frame, spec)
    y = data.y.to_numpy()
    return SearchData(X_fit=data.X.iloc[:700], y_fit=y[:700], X_valid=data.X.iloc[700:], y_valid=y[700:],
                      numeric=data.numeric, categorical=data.categorical, task="classification", n_classes=2)


def test_search_is_deterministic_prunes_and_reports_progress():
    data = _search_data()
    spec = SearchSpec(trials=10, seed=3, timeout_seconds=None, families=["xgboost", "linear"])
    lines, records = [], []
    a = run_search(data, spec, "auc", n_jobs=1, on_trial=records.append, progress=lines.append)
    b = run_search(data, spec, "auc", n_jobs=1)
    assert (a.family, a.params, a.value, a.best_trial) == (b.family, b.params, b.value, b.best_trial)
    assert [t.value for t in a.trials] == [t.value for t in b.trials]
    assert len(records) == 10 and len(lines) == 10 and lines[0].startswith("trial 1/10")
    assert a.counts["complete"] + a.counts["pruned"] + a.counts["failed"] == 10
    assert a.counts["pruned"] >= 1  # the median pruner stops some trials early
    assert all(r.intermediate for r in records)


def test_time_budget_stops_the_search():
    data = _search_data()
    spec = SearchSpec(trials=500, timeout_seconds=1.0, seed=0, families=["linear"])
    res = run_search(data, spec, "logloss", n_jobs=1)
    assert res.stopped_by == "timeout" and 1 <= len(res.trials) < 500


@pytest.mark.filterwarnings("ignore:Only one class is present")
def test_search_fails_clearly_when_no_trial_completes():
    data = _search_data()
    data.X_valid = pd.DataFrame({c: data.X_valid[c] for c in data.X_valid})  # same data
    data.y_valid = np.zeros_like(data.y_valid)  # AUC undefined with one class -> every trial errors
    from modelops_pipelines.search import SearchError

    with pytest.raises(SearchError, match="no trial completed"):
        run_search(data, SearchSpec(trials=2, families=["linear"]), "auc", n_jobs=1)


def _prepared(task="classification", n=600):
    if task == "classification":
        X, y = load_wine(return_X_y=True)
        y = (y == 1).astype(int)
    else:
        X, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order], y[order]
    cut = int(len(X) * 0.7)
    return X, y, cut, fam.XGBPrepared(X[:cut], y[:cut], X[cut:], y[cut:], n_jobs=1)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_xgboost_on_the_shared_quantised_matrix_matches_the_saved_wrapper(task):
    X, y, cut, prepared = _prepared(task)
    params = {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.1}
    reported = []
    booster = fam.staged_fit_xgb(task, params, prepared, lambda s, p: reported.append((s, p)),
                                 n_classes=2 if task == "classification" else None, n_jobs=1, seed=0,
                                 early_stopping=False)
    assert [s for s, _ in reported] == [0, 1, 2, 3] and booster.num_boosted_rounds() == 40
    # the wrapper fitted on the same rows (what the refit and the saved pipeline use) predicts the same
    wrapper = fam.build_estimator("xgboost", task, params, n_classes=2, n_jobs=1, seed=0).fit(X[:cut], y[:cut])
    ours = fam.xgb_estimator_from_booster(booster, task, params, n_classes=2, n_jobs=1, seed=0)
    np.testing.assert_allclose(fam.predict_scores(ours, X[cut:], task), fam.predict_scores(wrapper, X[cut:], task),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reported[-1][1], fam.predict_scores(wrapper, X[cut:], task), rtol=1e-5, atol=1e-6)


def test_xgboost_early_stopping_keeps_the_best_round_and_reports_it_as_the_last_stage():
    X, _y, cut, prepared = _prepared()
    params = {"n_estimators": 300, "max_depth": 6, "learning_rate": 0.3}  # overfits a 125-row fit set fast
    reported = []
    booster = fam.staged_fit_xgb("classification", params, prepared, lambda s, p: reported.append((s, p)),
                                 n_classes=2, n_jobs=1, seed=0)
    kept = booster.num_boosted_rounds()
    assert kept < 300 and reported[-1][0] == fam.STAGES - 1
    np.testing.assert_allclose(reported[-1][1][:, 1], booster.inplace_predict(X[cut:]), rtol=1e-6)


def test_search_reuses_one_quantised_matrix_and_records_the_rounds_early_stopping_kept(monkeypatch):
    built = []
    original = fam.XGBPrepared.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(fam.XGBPrepared, "__init__", counting)
    data = _search_data()
    res = run_search(data, SearchSpec(trials=8, seed=1, timeout_seconds=None, families=["xgboost"]), "auc",
                     n_jobs=1)
    assert len(built) == 1  # binned once for all 8 trials
    complete = [t for t in res.trials if t.state == "COMPLETE"]
    assert complete and all(1 <= t.params["n_estimators"] <= 300 for t in complete)
    best = next(t for t in res.trials if t.number == res.best_trial)
    assert res.params == best.params  # the refit uses what the best trial actually fitted
