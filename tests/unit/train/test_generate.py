import pytest

from modelops_pipelines.generate import CATEGORICAL, TARGET, generate_churn, write_table

pytestmark = pytest.mark.unit


def test_deterministic_and_shaped_like_the_churn_table(tmp_path):
    a = generate_churn(2000, seed=7)
    b = generate_churn(2000, seed=7)
    assert a.equals(b)
    assert not a.equals(generate_churn(2000, seed=8))
    assert list(a.columns)[-1] == TARGET and set(CATEGORICAL) <= set(a.columns)
    assert 0.12 < a[TARGET].mean() < 0.21
    assert a["card_category"].value_counts(normalize=True)["Blue"] > 0.85
    p1, p2 = write_table(a, tmp_path / "a.csv"), write_table(b, tmp_path / "b.csv")
    assert p1.read_bytes() == p2.read_bytes()
    assert write_table(a, tmp_path / "a.parquet").stat().st_size > 0


def test_shift_moves_distributions_and_churn():
    base, shifted = generate_churn(20000, seed=1), generate_churn(20000, seed=1, shift=1.0)
    assert shifted["customer_age"].mean() > base["customer_age"].mean() + 4
    assert shifted["credit_limit"].mean() < base["credit_limit"].mean() * 0.8
    assert (shifted["total_revolving_bal"] == 0).mean() > (base["total_revolving_bal"] == 0).mean() + 0.1
    assert shifted[TARGET].mean() > base[TARGET].mean() + 0.1


def test_missing_rate_knob():
    f = generate_churn(5000, seed=3, missing_rate=0.1)
    assert 0.07 < f["credit_limit"].isna().mean() < 0.13 and f[TARGET].notna().all()
