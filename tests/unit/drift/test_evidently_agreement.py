"""Our per-column verdicts against Evidently's on the same data, over a grid of generated shifts.

Mapping (see modelops.drift.stats): we choose the test the way Evidently's default does
(``_get_default_stattest``) and use its default thresholds, but compute it from the reference *profile*
(bins, quantiles, category frequencies) instead of the raw training rows Evidently gets:
numeric > 5 values: normed Wasserstein >= 0.1 (reference > 1000 rows) or KS p < 0.05;
<= 5 values and categorical: Jensen-Shannon >= 0.1, or chi-square / z-test p < 0.05.
Disagreements can only come from the profile approximations, for scores right at a threshold.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from modelops.drift.stats import window_drift
from modelops_pipelines.profile import build_reference_profile

pytestmark = pytest.mark.unit

CATEGORICAL = ["color", "city"]


def generate(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    """Eight column kinds; `shift` moves each in its own way (mean, scale, mixture weight, frequencies)."""
    colors = np.array([0.4, 0.3, 0.2, 0.1]) * (1 - 0.4 * shift) + np.array([0, 0, 0, 0.4 * shift])
    cities = np.full(30, 1 / 30) * (1 - 0.3 * shift)
    cities[-1] += 0.3 * shift
    return pd.DataFrame({
        "normal": rng.normal(shift, 1, n),
        "lognormal": rng.lognormal(0, 0.5 + 0.3 * shift, n),
        "uniform": rng.uniform(0, 10 + 5 * shift, n),
        "bimodal": np.where(rng.random(n) < 0.3 + 0.2 * shift, rng.normal(-2, 0.5, n), rng.normal(2, 0.5, n)),
        "counts": rng.integers(0, 4, n) + (rng.random(n) < 0.3 * shift).astype(int),
        "binary": (rng.random(n) < 0.3 + 0.2 * shift).astype(int),
        "color": rng.choice(["red", "green", "blue", "black"], n, p=colors),
        "city": rng.choice([f"c{i}" for i in range(30)], n, p=cities),
    })


def evidently_verdicts(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, tuple[str, bool]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=[c for c in current if c not in CATEGORICAL],
                                categorical_columns=CATEGORICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(current, data_definition=definition),
                                                   Dataset.from_pandas(reference, data_definition=definition))
    out = {}
    for metric in snapshot.dict()["metrics"]:
        cfg = metric["config"]
        if cfg["type"].endswith("ValueDrift"):
            p_value = "p_value" in cfg["method"]
            value, threshold = metric["value"], cfg["threshold"]
            out[cfg["column"]] = (cfg["method"], bool(value < threshold if p_value else value >= threshold))
    return out


def test_per_column_verdicts_agree_with_evidently_on_95_percent_of_columns():
    rows = []
    for ref_rows in (5000, 800):  # both regimes: distances (> 1000 reference rows) and p-value tests
        for shift in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0):
            rng = np.random.default_rng(ref_rows + int(shift * 1000))
            reference = generate(rng, ref_rows, 0.0)
            current = generate(rng, 3000, shift)
            current.loc[current.sample(frac=0.05, random_state=1).index, "normal"] = np.nan
            profile = build_reference_profile(reference, task="regression", categorical=CATEGORICAL)
            columns = {c: current[c].to_numpy(dtype=object if c in CATEGORICAL else float) for c in current}
            ours = window_drift(profile, columns, len(current))
            theirs = evidently_verdicts(reference, current)
            for fd in ours.features:
                rows.append((ref_rows, shift, fd.name, fd.method, fd.score, fd.drifted, *theirs[fd.name]))
    agree = [r for r in rows if r[5] == r[7]]
    share = len(agree) / len(rows)
    disagreements = [r for r in rows if r[5] != r[7]]
    assert len(rows) == 2 * 7 * 8
    assert share >= 0.95, disagreements
    # the grid is not trivially one-sided: both verdicts occur often
    drifted = sum(1 for r in rows if r[7])
    assert 0.25 * len(rows) < drifted < 0.75 * len(rows)
