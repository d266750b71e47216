"""A deterministic credit-card churn table for the demo, with a knob that shifts its distributions.

Shaped like the public "BankChurners" credit-card customers table: demographics, card and relationship
facts, credit limit and revolving balance, and whether the customer churned (about 16% at shift 0).

`shift` (0 = reference, 1 = strongly drifted) moves the population older, poorer, with lower limits,
fewer products, more zero balances and more Blue cards (covariate drift the drift exporter sees), and
raises the churn propensity (concept drift, so a model retrained on shifted data is measurably better on
shifted data than the old champion). Same (rows, seed, shift, missing_rate) -> byte-identical output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: target column of the generated table
TARGET = "churn"
#: categorical columns of the generated table
CATEGORICAL = ("gender", "education_level", "marital_status", "income_category", "card_category")

_EDUCATION = (("Graduate", 0.31), ("High School", 0.20), ("Unknown", 0.15), ("Uneducated", 0.15),
              ("College", 0.10), ("Post-Graduate", 0.05), ("Doctorate", 0.04))
_MARITAL = (("Married", 0.46), ("Single", 0.39), ("Unknown", 0.08), ("Divorced", 0.07))
_INCOME = (("Less than $40K", 0.35), ("$40K - $60K", 0.18), ("$60K - $80K", 0.14), ("$80K - $120K", 0.15),
           ("$120K +", 0.07), ("Unknown", 0.11))
_INCOME_LEVEL = {"Less than $40K": 0.0, "$40K - $60K": 1.0, "$60K - $80K": 2.0, "$80K - $120K": 3.0,
                 "$120K +": 4.0, "Unknown": 1.2}
_CARDS = (("Blue", 0.93), ("Silver", 0.055), ("Gold", 0.012), ("Platinum", 0.003))
_CARD_LEVEL = {"Blue": 0.0, "Silver": 1.0, "Gold": 2.0, "Platinum": 3.0}
_BASE_CHURN_RATE = 0.16
#: intercept that gives ~16% churn at shift 0: _logit_offset(score, 0.16) on 200k rows, seed 0
_REFERENCE_OFFSET = -2.2882


def _choice(rng: np.random.Generator, table: tuple[tuple[str, float], ...], n: int,
            tilt: np.ndarray | None = None) -> np.ndarray:
    labels = np.array([t[0] for t in table], dtype=object)
    p = np.array([t[1] for t in table], dtype=float)
    if tilt is not None:
        p = p * tilt
    return rng.choice(labels, size=n, p=p / p.sum())


def _logit_offset(score: np.ndarray, rate: float) -> float:
    """The intercept that makes mean(sigmoid(score + b)) == rate (bisection; deterministic)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if float(np.mean(1.0 / (1.0 + np.exp(-(score + mid))))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def generate_churn(rows: int = 10_000, seed: int = 0, shift: float = 0.0, missing_rate: float = 0.0) -> pd.DataFrame:
    """The churn table; see the module docstring for the meaning of `shift`."""
    if rows < 1:
        raise ValueError("rows must be >= 1")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError("missing_rate must be in [0, 1)")
    rng = np.random.default_rng(seed)
    s = float(shift)
    n = rows

    age = np.clip(np.round(rng.normal(46 + 6 * s, 8, n)), 26, 73).astype(int)
    gender = rng.choice(np.array(["F", "M"], dtype=object), size=n, p=[0.53, 0.47])
    dependents = np.clip(rng.poisson(2.3, n), 0, 5)
    education = _choice(rng, _EDUCATION, n)
    marital = _choice(rng, _MARITAL, n)
    income_tilt = np.array([1 + 0.8 * s, 1.0, 1.0, 1 - 0.3 * s, 1 - 0.5 * s, 1.0]).clip(0.05)
    income = _choice(rng, _INCOME, n, income_tilt)
    # Men report higher incomes in the original table; keep that correlation.
    swap = (gender == "F") & (income == "$120K +") & (rng.random(n) < 0.8)
    income[swap] = "Less than $40K"
    card_tilt = np.array([1.0, 1 - 0.5 * s, 1 - 0.6 * s, 1 - 0.7 * s]).clip(0.05)
    card = _choice(rng, _CARDS, n, card_tilt)
    months = np.clip(np.round(36 + 0.5 * (age - 46) + rng.normal(0, 7, n)), 13, 56).astype(int)
    relationships = np.clip(np.round(rng.normal(3.8 - 0.9 * s, 1.5, n)), 1, 6).astype(int)

    inc_level = np.array([_INCOME_LEVEL[v] for v in income])
    card_level = np.array([_CARD_LEVEL[v] for v in card])
    log_limit = (np.log(2500) + 0.45 * inc_level + 0.6 * card_level + 0.25 * (gender == "M")
                 + rng.normal(0, 0.55, n) + np.log(1 - 0.3 * min(s, 2.0) / 2 - 0.15 * min(s, 1.0)))
    credit_limit = np.round(np.clip(np.exp(log_limit), 1438.3, 34516.0), 1)
    zero_balance = rng.random(n) < (0.24 + 0.15 * s)
    revolving = np.where(zero_balance, 0, np.clip(np.round(rng.normal(1150, 520, n)), 132, 2517)).astype(int)

    score = (1.7 * zero_balance - 0.0011 * revolving - 0.42 * (relationships - 3.8)
             + 0.018 * (age - 46) + 0.12 * (dependents - 2.3) + 0.2 * (gender == "F")
             + 0.3 * (income == "Less than $40K") - 0.25 * np.log(credit_limit / 8000)
             - 0.012 * (months - 36) + 0.35 * (marital == "Single")
             + 0.6 * s * (relationships <= 2))  # under drift, few-product customers leave much more
    # A fixed intercept (calibrated once on a large shift-0 sample, see _REFERENCE_OFFSET) keeps the
    # churn rate near 16% at shift 0 for every seed and lets the shift raise it; +0.4 logits per unit of
    # shift on top of the covariate changes is the concept drift.
    offset = _REFERENCE_OFFSET + 0.4 * s
    p = 1.0 / (1.0 + np.exp(-(score + offset)))
    churn = (rng.random(n) < p).astype(int)

    frame = pd.DataFrame({
        "customer_age": age,
        "gender": gender,
        "dependent_count": dependents,
        "education_level": education,
        "marital_status": marital,
        "income_category": income,
        "card_category": card,
        "months_on_book": months,
        "total_relationship_count": relationships,
        "credit_limit": credit_limit,
        "total_revolving_bal": revolving,
        TARGET: churn,
    })
    if missing_rate > 0:
        # Missing values in a few columns, as real extracts have; the target is never missing.
        for col in ("months_on_book", "credit_limit", "education_level"):
            mask = rng.random(n) < missing_rate
            frame[col] = frame[col].astype("float64" if col != "education_level" else object)
            frame.loc[mask, col] = np.nan
    return frame


def write_table(frame: pd.DataFrame, out: str | Path, fmt: str = "auto") -> Path:
    """Write CSV or Parquet (by `fmt`, or by the extension when `fmt` is 'auto')."""
    path = Path(out)
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        raise ValueError(f"format must be csv, parquet or auto, not {fmt!r}")
    return path
