"""The reference profile: the file the trainer writes and the drift exporter reads.

A contract between two runtimes that otherwise never import each other: `modelops train`
(modelops_pipelines.profile builds it from the training frame) writes ``reference_profile.json`` next to the
model, and `modelops drift-exporter` (modelops.drift) reads it. Both import this module and nothing of each
other (import-linter contracts in pyproject.toml); it imports only the standard library, so every image can.

Schema (version 1)::

    {"version": 1, "rows": int, "task": "classification"|"regression",
     "features": {name: FeatureProfile, ...},       # in model input order
     "prediction": FeatureProfile | null,
     "sample": Sample | null}                       # optional (added later; absent in older profiles)

    numeric FeatureProfile:
      {"type": "numeric", "count": int, "missing_rate": float, "min": float, "max": float,
       "mean": float, "std": float,
       "bin_edges": [float, ...],   # inner cut points; bins are (-inf, e0], (e0, e1], ..., (e_k, inf)
       "bin_probs": [float, ...],   # len(bin_edges) + 1, sums to 1
       "quantiles": [float, ...],   # values at probabilities linspace(0, 1, n_quantiles)
       # optional, added later (readers must cope with their absence):
       "n_unique": int,             # distinct finite values
       "values": [float, ...],      # only when n_unique <= 20 (MAX_DISCRETE_VALUES): the distinct values
       "value_probs": [float, ...], #   and their frequencies (low-cardinality numerics are compared
                                    #   value by value, as Evidently does for <= 5 distinct values)
       "tail_quantiles": {"probs": [float, ...], "values": [float, ...]}}
                                    # extra quantiles inside the outer 1% on each side, where the
                                    # 101-point grid is too coarse for a Wasserstein distance

    categorical FeatureProfile:
      {"type": "categorical", "count": int, "missing_rate": float,
       "categories": {value: frequency, ...},   # the most frequent max_categories values, as strings
       "other_freq": float,                     # share of all remaining values
       "n_unique": int}                         # optional, added later: distinct values in total

    Sample (optional): a uniform random sample of the training rows, for human-facing reports
    (Evidently HTML) that need raw values; drift metrics never use it.
      {"rows": int, "features": {name: [value | null, ...]}, "prediction": [value | null, ...] | null}

Additions keep ``version`` at 1: every field of the first release is still there with the same meaning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROFILE_VERSION = 1
PROFILE_FILENAME = "reference_profile.json"


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
