"""Builds MLflow model directories like `modelops train` writes them (the trainer contract), for tests.

Small deterministic datasets with numeric (with missing values) and categorical string columns (with missing
values), several estimator families, binary / multi-class / regression, plus a bare XGBoost booster.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = [
    {"name": "age", "dtype": "float64", "categorical": False},
    {"name": "visits", "dtype": "int64", "categorical": False},
    {"name": "plan", "dtype": "object", "categorical": True},
    {"name": "region", "dtype": "object", "categorical": True},
]
PLANS = ["basic", "plus", "pro"]
REGIONS = ["north", "south", "east", "west"]
MULTI_CLASSES = ["bronze", "gold", "silver"]


def frame(rows: int, seed: int = 0, missing: bool = True, extra_numeric: tuple[str, ...] = ()) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.normal(40, 12, rows).round(1),
        "visits": rng.integers(0, 30, rows).astype("int64"),
        "plan": rng.choice(PLANS, rows).astype(object),
        "region": rng.choice(REGIONS, rows).astype(object),
    })
    if missing:
        df.loc[rng.random(rows) < 0.08, "age"] = np.nan
        df.loc[rng.random(rows) < 0.08, "plan"] = np.nan
    for col in extra_numeric:  # after the others, so that their values do not depend on the extras
        df[col] = rng.normal(0, 1, rows).round(3)
    return df


def _target(df: pd.DataFrame, task: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    score = (df["age"].fillna(40) - 40) / 12 + (df["visits"] - 15) / 8 \
        + df["plan"].map({"basic": -1.0, "plus": 0.2, "pro": 1.1}).fillna(0).to_numpy() \
        + df["region"].map({"north": 0.3, "south": -0.3, "east": 0.0, "west": 0.5}).to_numpy() \
        + rng.normal(0, 0.5, len(df))
    if task == "regression":
        return np.asarray(score * 100 + 1000)
    if task == "binary":
        return (score > 0).astype(int)
    return np.digitize(score, [-0.7, 0.7])  # 3 classes


def _pipeline(family: str, task: str, encoder: str = "onehot", strict: bool = False,
              unconvertible: bool = False, numeric: tuple[str, ...] = ("age", "visits")) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

    if strict:  # no imputers, unknown categories are errors: the server must learn both at load time
        strict_enc = OneHotEncoder(handle_unknown="error")
        num: Any = StandardScaler() if family == "linear" else "passthrough"
        pre = ColumnTransformer([("num", num, list(numeric)), ("cat", strict_enc, ["plan", "region"])])
        return Pipeline([("preprocess", pre), ("model", _estimator(family, task))])
    if encoder == "onehot":
        enc: Any = OneHotEncoder(handle_unknown="ignore")
    else:
        enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    cat = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")), ("encode", enc)])
    num_steps: list[Any] = [("impute", SimpleImputer(strategy="median"))]
    if family == "linear":
        num_steps.append(("scale", StandardScaler()))
    if unconvertible:  # a Python function skl2onnx cannot translate: the original must serve
        num_steps.append(("log", FunctionTransformer(np.log1p)))
    pre = ColumnTransformer([("num", Pipeline(num_steps), list(numeric)), ("cat", cat, ["plan", "region"])])
    return Pipeline([("preprocess", pre), ("model", _estimator(family, task))])


def _estimator(family: str, task: str) -> Any:
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
    from xgboost import XGBClassifier, XGBRegressor

    reg = task == "regression"
    est = {
        "xgboost": lambda: XGBRegressor(n_estimators=40, max_depth=4, n_jobs=1, random_state=0) if reg
        else XGBClassifier(n_estimators=40, max_depth=4, n_jobs=1, random_state=0),
        "hgb": lambda: HistGradientBoostingRegressor(max_iter=40, random_state=0) if reg
        else HistGradientBoostingClassifier(max_iter=40, random_state=0),
        "rf": lambda: RandomForestRegressor(n_estimators=25, max_depth=6, random_state=0, n_jobs=1) if reg
        else RandomForestClassifier(n_estimators=25, max_depth=6, random_state=0, n_jobs=1),
        "linear": lambda: Ridge() if reg else LogisticRegression(max_iter=1000),
    }[family]()
    return est


def build_sklearn(path: Path, family: str, task: str, *, rows: int = 400, seed: int = 0, encoder: str = "onehot",
                  version: str = "3", name: str = "churn", string_labels: bool = True,
                  serialization: str = "cloudpickle", strict: bool = False, unconvertible: bool = False,
                  extra_numeric: tuple[str, ...] = ()) -> Path:
    """task: binary | multiclass | regression. Multi-class labels are strings unless the family is xgboost.
    `extra_numeric`: more required float features besides FEATURES (a model whose inputs differ)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    df = frame(rows, seed, missing=not strict, extra_numeric=extra_numeric)
    y: Any = _target(df, task, seed)
    classes: list[Any] | None = None
    if task == "multiclass":
        if family == "xgboost" or not string_labels:
            classes = list(MULTI_CLASSES)  # xgboost needs 0..K-1; the contract names them
        else:
            y = np.asarray(MULTI_CLASSES, dtype=object)[y]
            classes = sorted(MULTI_CLASSES)
    elif task == "binary":
        classes = [0, 1]
    pipe = _pipeline(family, task, encoder, strict=strict, unconvertible=unconvertible,
                     numeric=("age", "visits", *extra_numeric))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(df, y)
        example = df.head(3)
        sig = infer_signature(df, pipe.predict(df.head(20)))
        # explicit requirements: MLflow's inference of them (uv export, pip) costs seconds per model
        extra: dict[str, Any] = {"serialization_format": serialization, "pip_requirements": ["scikit-learn"]}
        if serialization == "skops":
            import skops.io

            extra["skops_trusted_types"] = skops.io.get_untrusted_types(data=skops.io.dumps(pipe))
        mlflow.sklearn.save_model(pipe, str(path), signature=sig, input_example=example, **extra)
    features = FEATURES + [{"name": c, "dtype": "float64", "categorical": False} for c in extra_numeric]
    _write_contract(path, "classification" if task != "regression" else "regression", classes, family, version,
                    name, features)
    return path


def _write_contract(path: Path, task: str, classes: list[Any] | None, family: str, version: str, name: str,
                    features: list[dict[str, Any]] | None = None) -> None:
    (path / "modelops.json").write_text(json.dumps({
        "task": task, "target": "label", "features": features or FEATURES, "classes": classes,
        "metric": {"name": "roc_auc" if task == "classification" else "rmse", "value": 0.9},
        "family": family, "modelName": name, "version": version, "runId": f"run-{family}-{version}",
    }))
    (path / "reference_profile.json").write_text("{}")


def numeric_data(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    logit = x[:, 0] + x[:, 1] * x[:, 2] + np.sin(3 * x[:, 3]) + 0.5 * x[:, 4:].sum(axis=1) / np.sqrt(features)
    y = (logit + rng.normal(scale=0.5, size=rows) > 0).astype(np.int32)
    return x, y


def build_booster(path: Path, *, trees: int = 60, depth: int = 4, features: int = 10, rows: int = 2000,
                  seed: int = 0, version: str = "1", name: str = "booster", objective: str = "binary:logistic") -> Path:
    """A bare XGBoost booster in the mlflow.xgboost flavor (what the benchmark's 5 MB model is)."""
    import mlflow.xgboost
    import xgboost as xgb
    from mlflow.models import infer_signature

    x, y = numeric_data(rows, features, seed)
    names = [f"f{i}" for i in range(features)]
    params: dict[str, Any] = {"objective": objective, "max_depth": depth, "eta": 0.05, "tree_method": "hist",
                              "seed": seed, "nthread": 2}
    label = y.astype(np.float32) if objective.startswith("binary") else x[:, 0] * 10 + y
    booster = xgb.train(params, xgb.DMatrix(x, label=label, feature_names=names), num_boost_round=trees)
    frame_x = pd.DataFrame(x[:3].astype(np.float64), columns=names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sig = infer_signature(frame_x, np.zeros(3))
        mlflow.xgboost.save_model(booster, str(path), signature=sig, input_example=frame_x, model_format="ubj",
                                 pip_requirements=["xgboost"])
    task = "classification" if objective.startswith("binary") else "regression"
    _write_contract(path, task, [0, 1] if task == "classification" else None, "xgboost", version, name,
                    [{"name": n, "dtype": "float64", "categorical": False} for n in names])
    return path
