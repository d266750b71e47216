"""Estimator families: their search spaces, their preprocessing, and staged fitting for pruning.

Every model is a scikit-learn Pipeline `preprocess -> model`, so the served artifact applies exactly the
preprocessing training used. Tree families share one preprocessing (numeric passthrough with NaN handled
natively; categoricals ordinal-encoded, unknown and missing -> NaN); the linear family imputes, scales
and one-hot encodes. During the search the preprocessing is fitted once per kind and reused by all trials.

Staged fitting: the validation score is reported after a quarter of the boosting rounds / trees (and, for
XGBoost, whose callback makes checkpoints free, after each further quarter) and at the end, so Optuna's
pruner can stop a hopeless trial after a quarter of its work.

XGBoost in the search: the fit and validation rows are quantised once into QuantileDMatrix objects
(`XGBPrepared`) that every XGBoost trial trains on with the native `xgb.train`, stopped by the pruner
(a training callback) or by XGBoost's own early stopping on the validation loss. The saved model is still
an `XGBClassifier`/`XGBRegressor` (see `xgb_estimator_from_booster`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

#: how many intermediate scores an iterative family reports (pruning checkpoints)
STAGES = 4
#: categories above this many per column are grouped as "infrequent" (HistGradientBoosting allows <= 255)
MAX_TREE_CATEGORIES = 250
MAX_ONEHOT_CATEGORIES = 30
#: histogram bins of XGBoost (the quantised matrices of the search and of out-of-core training use the same)
XGB_MAX_BIN = 256
#: early stopping: stop when the validation loss has not improved for this share of the rounds (at least 10)
EARLY_STOPPING_SHARE = 0.1

OnStage = Callable[[int, np.ndarray], None]


def preprocess_kind(family: str) -> str:
    return "linear" if family == "linear" else "tree"


def build_preprocessor(kind: str, numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    """Column preprocessing; output columns are numeric first, then categorical."""
    if kind == "tree":
        cat: Any = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                  encoded_missing_value=np.nan, max_categories=MAX_TREE_CATEGORIES,
                                  dtype=np.float64)
        num: Any = "passthrough"
    else:
        cat = Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
            ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_ONEHOT_CATEGORIES,
                                     sparse_output=False)),
        ])
        num = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler())])
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("num", num, numeric))
    if categorical:
        transformers.append(("cat", cat, categorical))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False,
                             sparse_threshold=0.0)


def suggest_params(trial: Any, family: str, task: str) -> dict[str, Any]:
    """Sample one family's hyperparameters; names are prefixed so TPE keeps each family's space apart."""
    def f(name: str) -> str:
        return f"{family}.{name}"

    if family == "xgboost":
        return {
            "n_estimators": trial.suggest_int(f("n_estimators"), 50, 300, log=True),
            "max_depth": trial.suggest_int(f("max_depth"), 2, 10),
            "learning_rate": trial.suggest_float(f("learning_rate"), 0.01, 0.3, log=True),
            "subsample": trial.suggest_float(f("subsample"), 0.5, 1.0),
            "colsample_bytree": trial.suggest_float(f("colsample_bytree"), 0.5, 1.0),
            "min_child_weight": trial.suggest_float(f("min_child_weight"), 0.5, 20.0, log=True),
            "reg_lambda": trial.suggest_float(f("reg_lambda"), 1e-3, 10.0, log=True),
        }
    if family == "hist_gradient_boosting":
        return {
            "max_iter": trial.suggest_int(f("max_iter"), 50, 300, log=True),
            "learning_rate": trial.suggest_float(f("learning_rate"), 0.01, 0.3, log=True),
            "max_leaf_nodes": trial.suggest_int(f("max_leaf_nodes"), 8, 64, log=True),
            "min_samples_leaf": trial.suggest_int(f("min_samples_leaf"), 5, 100, log=True),
            "l2_regularization": trial.suggest_float(f("l2_regularization"), 1e-4, 10.0, log=True),
            "max_features": trial.suggest_float(f("max_features"), 0.5, 1.0),
        }
    if family == "random_forest":
        return {
            "n_estimators": trial.suggest_int(f("n_estimators"), 30, 150, log=True),
            "max_depth": trial.suggest_int(f("max_depth"), 4, 16),
            "min_samples_leaf": trial.suggest_int(f("min_samples_leaf"), 1, 30, log=True),
            "max_features": trial.suggest_float(f("max_features"), 0.2, 1.0),
            "max_samples": trial.suggest_float(f("max_samples"), 0.3, 0.9),
        }
    if family == "linear":
        if task == "classification":
            return {"C": trial.suggest_float(f("C"), 1e-3, 100.0, log=True)}
        return {"alpha": trial.suggest_float(f("alpha"), 1e-3, 1000.0, log=True)}
    raise ValueError(f"unknown family {family!r}")


def _size_param(family: str) -> str | None:
    return {"xgboost": "n_estimators", "hist_gradient_boosting": "max_iter", "random_forest": "n_estimators"}.get(family)


def stage_points(total: int, stages: int = STAGES) -> list[int]:
    """Cumulative sizes at which to score: e.g. 200 -> [50, 100, 150, 200]."""
    pts = sorted({max(1, math.ceil(total * (k + 1) / stages)) for k in range(stages)})
    return pts


def build_estimator(family: str, task: str, params: dict[str, Any], *, n_classes: int | None, n_jobs: int,
                    seed: int, n_categorical: int = 0, n_numeric: int = 0) -> Any:
    """A fresh, unfitted estimator (no callbacks, no warm start: the form that is saved)."""
    clf = task == "classification"
    if family == "xgboost":
        import xgboost as xgb

        common = dict(tree_method="hist", n_jobs=n_jobs, random_state=seed, max_bin=XGB_MAX_BIN, **params)
        if clf:
            return xgb.XGBClassifier(eval_metric="logloss", **common)
        return xgb.XGBRegressor(**common)
    if family == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cat_mask = [False] * n_numeric + [True] * n_categorical
        cls = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
        return cls(early_stopping=False, random_state=seed,
                   categorical_features=cat_mask if n_categorical else None, **params)
    if family == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls_rf = RandomForestClassifier if clf else RandomForestRegressor
        return cls_rf(n_jobs=n_jobs, random_state=seed, bootstrap=True, **params)
    if family == "linear":
        from sklearn.linear_model import LogisticRegression, Ridge

        if clf:
            return LogisticRegression(max_iter=2000, random_state=seed, **params)
        return Ridge(random_state=seed, **params)
    raise ValueError(f"unknown family {family!r}")


def predict_scores(model: Any, X: Any, task: str) -> np.ndarray:
    """Class probabilities (classification) or values (regression)."""
    if task == "classification":
        return np.asarray(model.predict_proba(X), dtype=float)
    return np.asarray(model.predict(X), dtype=float)


def staged_fit(family: str, task: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray, X_valid: np.ndarray,
               on_stage: OnStage, *, n_classes: int | None, n_jobs: int, seed: int, n_categorical: int,
               n_numeric: int) -> Any:
    """Fit with checkpoints, calling `on_stage(step, validation_predictions)` at each (steps 0..STAGES-1;
    the final model always reports step STAGES-1, so the pruner compares like with like across families).

    `on_stage` may raise (optuna.TrialPruned) to stop the fit. Returns the fitted estimator.
    """
    size_param = _size_param(family)
    kwargs: dict[str, Any] = dict(n_classes=n_classes, n_jobs=n_jobs, seed=seed, n_categorical=n_categorical,
                                  n_numeric=n_numeric)
    if size_param is None:
        est = build_estimator(family, task, params, **kwargs)
        est.fit(X, y)
        on_stage(STAGES - 1, predict_scores(est, X_valid, task))
        return est
    points = stage_points(int(params[size_param]))
    offset = STAGES - len(points)  # tiny sizes have fewer stages; the last is always step STAGES-1
    if family == "xgboost":
        import xgboost as xgb

        class _Stages(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                done = epoch + 1
                if done in points:
                    raw = model.inplace_predict(X_valid, iteration_range=(0, done))
                    pred = np.asarray(raw, dtype=float)
                    on_stage(offset + points.index(done), pred if task == "regression" else
                             _xgb_proba(pred, n_classes or 2))
                return False

        est = build_estimator(family, task, params, **kwargs)
        est.set_params(callbacks=[_Stages()])
        est.fit(X, y)
        est.set_params(callbacks=None)  # never pickle a callback that holds the trial
        return est
    # Warm-start families pay for every extra stage: each fit() call re-bins the data (HistGradientBoosting)
    # and recomputes the existing trees' predictions, and each score predicts with all trees so far. One
    # early checkpoint (a quarter of the trees, where most pruning happens) and the final one keep nearly all
    # of the pruning savings at a fraction of that overhead; they report as the first and the last stage.
    est = build_estimator(family, task, params, **kwargs)
    est.set_params(warm_start=True)
    checkpoints = [(0, points[0]), (STAGES - 1, points[-1])] if len(points) > 1 else [(STAGES - 1, points[-1])]
    for step, size in checkpoints:
        est.set_params(**{size_param: size})
        est.fit(X, y)
        on_stage(step, predict_scores(est, X_valid, task))
    est.set_params(warm_start=False)
    return est


class XGBPrepared:
    """The search's rows for XGBoost, quantised once and shared by every XGBoost trial."""

    def __init__(self, X: np.ndarray, y: np.ndarray, X_valid: np.ndarray, y_valid: np.ndarray, *,
                 n_jobs: int) -> None:
        import xgboost as xgb

        self.X_valid = np.ascontiguousarray(X_valid, dtype=np.float32)
        self.dtrain = xgb.QuantileDMatrix(np.ascontiguousarray(X, dtype=np.float32), label=y,
                                          max_bin=XGB_MAX_BIN, nthread=n_jobs)
        self.dvalid = xgb.QuantileDMatrix(self.X_valid, label=y_valid, ref=self.dtrain, nthread=n_jobs)


def xgb_native_params(task: str, params: dict[str, Any], *, n_classes: int | None, n_jobs: int,
                      seed: int) -> tuple[dict[str, Any], int]:
    """The `xgb.train` parameters and round count equal to what build_estimator's wrapper would fit."""
    est = build_estimator("xgboost", task, params, n_classes=n_classes, n_jobs=n_jobs, seed=seed)
    native = {k: v for k, v in est.get_xgb_params().items() if v is not None}
    if task == "classification" and (n_classes or 2) > 2:
        native.update(objective="multi:softprob", num_class=int(n_classes or 2))
    return native, int(params["n_estimators"])


def xgb_estimator_from_booster(booster: Any, task: str, params: dict[str, Any], *, n_classes: int | None,
                               n_jobs: int, seed: int) -> Any:
    """The scikit-learn wrapper (the saved form) around a booster trained with `xgb.train`."""
    est = build_estimator("xgboost", task, params, n_classes=n_classes, n_jobs=n_jobs, seed=seed)
    est.load_model(bytearray(booster.save_raw("json")))
    est.set_params(n_estimators=booster.num_boosted_rounds(), n_jobs=n_jobs)
    return est


def staged_fit_xgb(task: str, params: dict[str, Any], prepared: XGBPrepared, on_stage: OnStage, *,
                   n_classes: int | None, n_jobs: int, seed: int, early_stopping: bool = True) -> Any:
    """XGBoost on the prepared (quantised once) matrices, with the same staged reports as `staged_fit`.

    Two of XGBoost's own training callbacks stop a trial: the staged reports (which raise the pruner's
    exception) and, when `early_stopping`, EarlyStopping on the validation loss. Returns the booster cut at
    its best round; a trial stopped early reports its best round's predictions as the last stage.
    """
    import xgboost as xgb

    native, rounds = xgb_native_params(task, params, n_classes=n_classes, n_jobs=n_jobs, seed=seed)
    points = stage_points(rounds)
    offset = STAGES - len(points)
    reported: list[int] = []

    def report(step: int, booster: Any, upto: int) -> None:
        raw = booster.inplace_predict(prepared.X_valid, iteration_range=(0, upto))
        pred = np.asarray(raw, dtype=float)
        reported.append(step)
        on_stage(step, pred if task == "regression" else _xgb_proba(pred, n_classes or 2))

    class _Stages(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            done = epoch + 1
            if done in points:
                report(offset + points.index(done), model, done)
            return False

    callbacks: list[Any] = [_Stages()]
    if early_stopping:
        patience = max(10, math.ceil(rounds * EARLY_STOPPING_SHARE))
        callbacks.insert(0, xgb.callback.EarlyStopping(rounds=patience, save_best=True))
    booster = xgb.train(native, prepared.dtrain, num_boost_round=rounds, callbacks=callbacks,
                        evals=[(prepared.dvalid, "valid")] if early_stopping else (), verbose_eval=False)
    if not reported or reported[-1] != STAGES - 1:  # stopped early: the best round is the result
        report(STAGES - 1, booster, booster.num_boosted_rounds())
    return booster


def _xgb_proba(pred: np.ndarray, n_classes: int) -> np.ndarray:
    if pred.ndim == 1:
        return np.column_stack([1.0 - pred, pred])
    return pred


def build_pipeline(family: str, task: str, params: dict[str, Any], *, numeric: list[str], categorical: list[str],
                   n_classes: int | None, n_jobs: int, seed: int) -> Pipeline:
    """The unfitted serving pipeline for one configuration."""
    pre = build_preprocessor(preprocess_kind(family), numeric, categorical)
    est = build_estimator(family, task, params, n_classes=n_classes, n_jobs=n_jobs, seed=seed,
                          n_categorical=len(categorical), n_numeric=len(numeric))
    return Pipeline([("preprocess", pre), ("model", est)])


def strip_prefix(family: str, params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's prefixed names ('xgboost.max_depth') -> estimator names ('max_depth'), family dropped."""
    prefix = f"{family}."
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
