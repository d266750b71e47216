"""Reference profile of a training set: what the drift exporter compares live traffic against.

Built here by `modelops train` from the training frame and written next to the model; read by
`modelops drift-exporter`. The file format (schema, version, file name, read/write) is the shared contract
in modelops.formats.reference_profile. Precomputed bins and quantiles make a live drift check a few numpy
operations per feature instead of a full two-sample comparison against the raw training data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from modelops.formats.reference_profile import PROFILE_VERSION

# Numeric features with at most this many distinct values also store their exact value frequencies.
MAX_DISCRETE_VALUES = 20
# Probabilities of the extra tail quantiles (between the first/last two points of the main grid).
TAIL_PROBS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.9925, 0.995, 0.997, 0.998, 0.999, 0.9995)


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
    distinct, distinct_counts = np.unique(finite, return_counts=True)
    discrete: dict[str, Any] = {}
    if len(distinct) <= MAX_DISCRETE_VALUES:
        discrete = {"values": [float(v) for v in distinct],
                    "value_probs": [float(c) / len(finite) for c in distinct_counts]}
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
        "n_unique": len(distinct),
        "tail_quantiles": {"probs": list(TAIL_PROBS),
                           "values": [float(q) for q in np.quantile(finite, TAIL_PROBS)]},
        **discrete,
    }


def _categorical_profile(values: pd.Series, max_categories: int) -> dict[str, Any]:
    total = len(values)
    present = values.dropna()
    missing_rate = float(1.0 - len(present) / total) if total else 0.0
    counts = present.astype(str).value_counts(sort=True)
    freq = counts / len(present) if len(present) else counts.astype(float)
    top = freq.iloc[:max_categories]
    # from counts, not 1 - sum(top): float rounding would leave a phantom "other" of 1e-16
    other = int(counts.iloc[max_categories:].sum())
    return {
        "type": "categorical",
        "count": len(present),
        "missing_rate": missing_rate,
        "categories": {str(k): float(v) for k, v in top.items()},
        "other_freq": other / len(present) if len(present) else 0.0,
        "n_unique": len(freq),
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
    sample_rows: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Profile every column of `frame` (the model's input features) and, if given, the predictions.

    `categorical` names the categorical columns; when omitted, non-numeric dtypes are categorical.
    Predictions of a classifier are profiled as categorical (class labels), of a regressor as numeric.
    `sample_rows` rows (0: none) are kept verbatim as a reference sample for HTML reports.
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
    pred = None
    if predictions is not None:
        pred = pd.Series(np.asarray(predictions).ravel())
        prediction = feature_profile(pred, categorical=(task == "classification"), n_bins=n_bins,
                                     n_quantiles=n_quantiles, max_categories=max_categories)
    sample = None
    if sample_rows > 0 and len(frame) > 0:
        idx = np.sort(np.random.default_rng(seed).choice(len(frame), min(sample_rows, len(frame)),
                                                         replace=False))
        sample = {
            "rows": len(idx),
            "features": {str(name): _sample_values(frame[name].iloc[idx], features[str(name)]["type"])
                         for name in frame.columns},
            "prediction": (_sample_values(pred.iloc[idx], prediction["type"])
                           if pred is not None and prediction is not None and len(pred) == len(frame)
                           else None),
        }
    return {"version": PROFILE_VERSION, "rows": len(frame), "task": task,
            "features": features, "prediction": prediction, "sample": sample}


def _sample_values(values: pd.Series, kind: str) -> list[Any]:
    """JSON-safe raw values: floats (NaN -> null) for numeric, strings (missing -> null) for categorical."""
    if kind == "numeric":
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        return [float(v) if np.isfinite(v) else None for v in x]
    return [None if pd.isna(v) else str(v) for v in values]
