"""Datasets and specs for the trainer integration tests (sklearn's bundled data: no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from modelops_pipelines.spec import TrainSpec

#: small budgets keep the tier fast on a shared 2-core machine
FAST_SEARCH = {"trials": 6, "timeoutSeconds": 300, "families": ["hist_gradient_boosting", "xgboost", "linear"],
               "seed": 7}


def write_dataset(name: str, directory: Path, fmt: str = "csv") -> tuple[Path, str]:
    """Write one of sklearn's datasets; returns (path, target column)."""
    loader = {"breast_cancer": load_breast_cancer, "wine": load_wine, "diabetes": load_diabetes}[name]
    frame: pd.DataFrame = loader(as_frame=True).frame
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    path = directory / f"{name}.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path, "target"


def spec(model_name: str, uri: str | Path, target: str, task: str, **sections: Any) -> TrainSpec:
    body: dict[str, Any] = {"modelName": model_name,
                            "dataset": {"uri": str(uri), "target": target, "task": task},
                            "search": dict(FAST_SEARCH), "mlflow": {"experiment": f"it-{model_name}"}}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return TrainSpec.model_validate(body)
