import numpy as np
import pandas as pd
import pytest

from modelops.formats.reference_profile import read_profile, write_profile
from modelops_pipelines.profile import build_reference_profile

pytestmark = pytest.mark.unit


def test_profile_numeric_and_categorical(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "age": rng.normal(45, 8, 5000),
        "card": rng.choice(["Blue", "Silver", "Gold"], 5000, p=[0.8, 0.15, 0.05]),
        "count": rng.integers(1, 4, 5000),
    })
    frame.loc[:99, "age"] = np.nan
    prof = build_reference_profile(frame, task="classification", predictions=rng.integers(0, 2, 5000))
    age = prof["features"]["age"]
    assert age["type"] == "numeric"
    assert age["missing_rate"] == pytest.approx(0.02)
    assert sum(age["bin_probs"]) == pytest.approx(1.0)
    assert len(age["bin_probs"]) == len(age["bin_edges"]) + 1 == 10
    assert len(age["quantiles"]) == 101 and age["quantiles"][50] == pytest.approx(45, abs=0.5)
    card = prof["features"]["card"]
    assert card["type"] == "categorical" and card["categories"]["Blue"] == pytest.approx(0.8, abs=0.02)
    # discrete numeric feature: duplicate cut points collapse instead of producing empty bins
    assert len(prof["features"]["count"]["bin_edges"]) <= 3  # at most one cut per distinct value
    assert prof["prediction"]["type"] == "categorical"
    write_profile(prof, tmp_path)
    assert read_profile(tmp_path) == prof


def test_profile_rejects_unknown_task():
    with pytest.raises(ValueError, match="task"):
        build_reference_profile(pd.DataFrame({"a": [1.0]}), task="ranking")
