"""Reference profile of a training set: what the drift exporter compares live traffic against.

Written by `modelops train` next to the model (``reference_profile.json`` in the model directory) and read
by `modelops drift-exporter`. Precomputed bins and quantiles make a live drift check a few numpy
operations per feature instead of a full two-sample comparison against the raw training data.

Schema (version 1)::

    {"version": 1, "rows": int, "task": "classification"|"regression",
     "features": {name: FeatureProfile, ...},       # in model input order
     "prediction": FeatureProfile | null}

    numeric FeatureProfile:
      {"type": "numeric", "count": int, "missing_rate": float, "min": float, "max": float,
       "mean": float, "std": float,
       "bin_edges": [float, ...],   # inner cut points; bins are (-inf, e0], (e0, e1], ..., (e_k, inf)
       "bin_probs": [float, ...],   # len(bin_edges) + 1, sums to 1
       "quantiles": [float, ...]}   # values at probabilities linspace(0, 1, n_quantiles)

    categorical FeatureProfile:
      {"type": "categorical", "count": int, "missing_rate": float,
       "categories": {value: frequency, ...},   # the most frequent max_categories values, as strings
       "other_freq": float}                     # share of all remaining values
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROFILE_VERSION = 1
PROFILE_FILENAME = "reference_profile.json"


def _numeric_profile(values: pd.Series, n_bins: int, n_quantiles: int) -> dict[str, Any]:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    finite = x[np.isfinite(x)]
    total = len(x)
    missing_rate = float(1.0 - len(finite) / total) if total else 0.0
    if len(finite) == 0:
        return {"type": "numeric", "count": 0, "missing_rate": missing_rate, "min": None, "max": None,
                "mean": None, "std": None, "bin_edges": [], "bin_probs": [1.0], "quantiles": []}
    # Quantile cut points give roughly equal-mass bins; duplicates (discrete features) collapse.
    inner = np.unique(np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(inner, finite, side="left"), minlength=len(inner) + 1)
    return {
        "type": "numeric",
        "count": len(finite),
        "missing_rate": missing_rate,
        "min": float(finite.min()),
        "max": float(finite.max()),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "bin_edges": [float(e) for e in inner],
        "bin_probs": [float(c) / len(finite) for c in counts],
        "quantiles": [float(q) for q in np.quantile(finite, np.linspace(0, 1, n_quantiles))],
    }


def _categorical_profile(values: pd.Series, max_categories: int) -> dict[str, Any]:
    total = len(values)
    present = values.dropna()
    missing_rate = float(1.0 - len(present) / total) if total else 0.0
    freq = present.astype(str).value_counts(normalize=True, sort=True)
    top = freq.iloc[:max_categories]
    return {
        "type": "categorical",
        "count": len(present),
        "missing_rate": missing_rate,
        "categories": {str(k): float(v) for k, v in top.items()},
        "other_freq": float(max(0.0, 1.0 - top.sum())) if len(present) else 0.0,
    }


def _is_categorical(series: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def feature_profile(series: pd.Series, *, categorical: bool | None = None, n_bins: int = 10,
                    n_quantiles: int = 101, max_categories: int = 50) -> dict[str, Any]:
    """Profile one column; `categorical=None` infers the type from the dtype."""
    is_cat = _is_categorical(series) if categorical is None else categorical
    if is_cat:
        return _categorical_profile(series, max_categories)
    return _numeric_profile(series, n_bins, n_quantiles)


def build_reference_profile(
    frame: pd.DataFrame,
    *,
    task: str,
    categorical: Iterable[str] | None = None,
    predictions: Any = None,
    n_bins: int = 10,
    n_quantiles: int = 101,
    max_categories: int = 50,
) -> dict[str, Any]:
    """Profile every column of `frame` (the model's input features) and, if given, the predictions.

    `categorical` names the categorical columns; when omitted, non-numeric dtypes are categorical.
    Predictions of a classifier are profiled as categorical (class labels), of a regressor as numeric.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', not {task!r}")
    cats = set(categorical) if categorical is not None else None
    features = {
        str(name): feature_profile(
            frame[name],
            categorical=(name in cats) if cats is not None else None,
            n_bins=n_bins, n_quantiles=n_quantiles, max_categories=max_categories,
        )
        for name in frame.columns
    }
    prediction = None
    if predictions is not None:
        pred = pd.Series(np.asarray(predictions).ravel())
        prediction = feature_profile(pred, categorical=(task == "classification"), n_bins=n_bins,
                                     n_quantiles=n_quantiles, max_categories=max_categories)
    return {"version": PROFILE_VERSION, "rows": len(frame), "task": task,
            "features": features, "prediction": prediction}


def write_profile(profile: dict[str, Any], directory: str | Path) -> Path:
    path = Path(directory) / PROFILE_FILENAME
    path.write_text(json.dumps(profile, indent=1, sort_keys=False))
    return path


def read_profile(path: str | Path) -> dict[str, Any]:
    """Read a profile from a file or from a model directory containing reference_profile.json."""
    p = Path(path)
    if p.is_dir():
        p = p / PROFILE_FILENAME
    data: dict[str, Any] = json.loads(p.read_text())
    if data.get("version") != PROFILE_VERSION:
        raise ValueError(f"{p}: unsupported reference profile version {data.get('version')!r}, "
                         f"expected {PROFILE_VERSION}")
    return data
