"""Drift of a live window against a reference profile: the pure math (numpy and scipy only).

The reference is the profile ``modelops train`` writes (see ``modelops_pipelines.profile``): bins,
quantiles and category frequencies instead of raw training rows, so one window costs a sort and a few
vector operations per feature.

Which test decides "drifted" (the same rule as Evidently's default, ``_get_default_stattest`` in
``evidently.legacy.calculations.stattests.registry``, so our verdicts and an Evidently report agree):

=====================  =====================================  ==========================================
column                 reference > 1000 rows                  reference <= 1000 rows
=====================  =====================================  ==========================================
numeric, > 5 values    Wasserstein distance / reference std   Kolmogorov-Smirnov p-value < 0.05
                       >= 0.1 (``wasserstein_norm``)          (``ks``)
numeric, <= 5 values   Jensen-Shannon distance over the       chi-square p-value < 0.05 (``chi2``);
                       values >= 0.1 (``jensenshannon``)      two values: z-test p-value < 0.05 (``z``)
categorical            Jensen-Shannon distance >= 0.1         chi-square / z-test p-value < 0.05
=====================  =====================================  ==========================================

"values" counts distinct non-missing values of reference and window together. Every feature also gets a
PSI (population stability index) against the reference bins (numeric) or categories (categorical); it is
reported, not used for the verdict (rule of thumb: < 0.1 stable, 0.1-0.2 moderate, > 0.2 major shift).

Approximations, and why they are small: the reference quantile function is the linear interpolation of the
stored quantiles (101 by default), so Wasserstein and KS differ from the raw-data values by roughly the
mass in the extreme 1% tails; categorical references keep the top 50 categories and lump the rest into one
"other" bucket (exact for Jensen-Shannon when the reference had no more categories than that, because all
categories unseen in the reference contribute linearly).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as sstats

FloatArray = npt.NDArray[np.float64]

# Evidently switches from p-value tests to distances above this many reference rows.
LARGE_REFERENCE_ROWS = 1000
# Numeric columns with at most this many distinct values are compared value by value.
MAX_DISCRETE_VALUES_FOR_CATEGORICAL_TEST = 5
# Probabilities are clipped to this before PSI's logarithm (an empty bin would be infinite).
PSI_EPSILON = 1e-4

Method = Literal["wasserstein_norm", "jensenshannon", "ks", "chi2", "z"]
P_VALUE_METHODS: frozenset[str] = frozenset({"ks", "chi2", "z"})
Status = Literal["ok", "insufficient_data", "no_reference_data"]


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds; the defaults are Evidently's defaults."""

    min_rows: int = 200  # below this many rows in the window: "insufficient data", no drift verdicts
    min_feature_rows: int = 50  # a feature with fewer non-missing values is not judged
    wasserstein_threshold: float = 0.1  # normed Wasserstein distance >= this: drift
    jensenshannon_threshold: float = 0.1  # Jensen-Shannon distance (natural log) >= this: drift
    p_value_threshold: float = 0.05  # KS / chi-square / z-test p-value < this: drift
    psi_threshold: float = 0.2  # PSI above this is flagged in reports (not a verdict)
    drift_share: float = 0.5  # dataset drift when at least this share of judged features drifted


@dataclass
class FeatureDrift:
    name: str
    kind: Literal["numeric", "categorical"]
    status: Status
    rows: int  # non-missing values in the window
    missing_share: float
    method: Method | None = None  # the test that decided
    score: float | None = None  # that test's statistic (a distance, or a p-value for ks/chi2/z)
    threshold: float | None = None
    drifted: bool | None = None
    psi: float | None = None
    wasserstein_norm: float | None = None
    jensenshannon: float | None = None
    p_value: float | None = None
    out_of_range_share: float | None = None  # numeric: outside the reference [min, max]
    unseen_category_share: float | None = None  # categorical: values not among the reference categories
    reference_missing_share: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class WindowDrift:
    status: Status
    rows: int
    min_rows: int
    features: list[FeatureDrift] = field(default_factory=list)
    prediction: FeatureDrift | None = None
    drift_share: float | None = None  # drifted / judged features
    drifted_features: int | None = None
    judged_features: int | None = None
    dataset_drifted: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("features", "prediction")}
        out["features"] = [f.as_dict() for f in self.features]
        out["prediction"] = self.prediction.as_dict() if self.prediction else None
        return out


# --- small statistics -----------------------------------------------------------------------------------

def psi(reference: FloatArray, current: FloatArray, eps: float = PSI_EPSILON) -> float:
    """Population stability index of two probability vectors over the same bins."""
    r = np.clip(reference, eps, None)
    c = np.clip(current, eps, None)
    return float(np.sum((c - r) * np.log(c / r)))


def jensenshannon(p: FloatArray, q: FloatArray) -> float:
    """Jensen-Shannon distance (natural log), as ``scipy.spatial.distance.jensenshannon``."""
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return float(math.sqrt(max(0.0, 0.5 * (kl_p + kl_q))))


def chi_square_p_value(ref_probs: FloatArray, cur_counts: FloatArray) -> float:
    """Goodness of fit of window counts to the reference frequencies (Evidently's ``chi2`` test)."""
    n = cur_counts.sum()
    expected = ref_probs * n
    if np.any((expected == 0) & (cur_counts > 0)):
        return 0.0  # a value the reference never had: infinitely unlikely under the reference
    keep = expected > 0
    stat = float(np.sum((cur_counts[keep] - expected[keep]) ** 2 / expected[keep]))
    dof = int(keep.sum()) - 1
    if dof < 1:
        return 1.0
    return float(sstats.chi2.sf(stat, dof))


def z_test_p_value(ref_share: float, ref_n: int, cur_share: float, cur_n: int) -> float:
    """Two-proportion z-test (Evidently's ``z`` test for two-valued columns)."""
    pooled = (ref_share * ref_n + cur_share * cur_n) / (ref_n + cur_n)
    denom = math.sqrt(pooled * (1 - pooled) * (1.0 / ref_n + 1.0 / cur_n))
    if denom == 0:
        return 1.0 if ref_share == cur_share else 0.0
    z = (ref_share - cur_share) / denom
    return float(2 * sstats.norm.sf(abs(z)))


def quantile_grid(ref: Mapping[str, Any]) -> tuple[FloatArray, FloatArray]:
    """(probabilities, values) of a numeric reference: the main grid merged with the tail quantiles."""
    values = np.asarray(ref["quantiles"], dtype=float)
    probs = np.linspace(0.0, 1.0, len(values))
    tail = ref.get("tail_quantiles")
    if tail and tail.get("probs"):
        probs = np.concatenate([probs, np.asarray(tail["probs"], dtype=float)])
        values = np.concatenate([values, np.asarray(tail["values"], dtype=float)])
        order = np.argsort(probs, kind="stable")
        probs, values = probs[order], np.maximum.accumulate(values[order])
    return probs, values


def wasserstein_from_quantiles(probs: FloatArray, quantiles: FloatArray, current_sorted: FloatArray) -> float:
    """W1 = integral over u of |Q_ref(u) - Q_cur(u)|: interpolated reference vs exact empirical window."""
    n = len(current_sorted)
    grid = max(n, 1024)
    u = (np.arange(grid) + 0.5) / grid
    q_cur = current_sorted[np.minimum((u * n).astype(np.int64), n - 1)]
    return float(np.mean(np.abs(np.interp(u, probs, quantiles) - q_cur)))


def ks_two_sample(reference: FloatArray, current: FloatArray) -> tuple[float, float]:
    """Exact two-sample KS test (what Evidently runs), for references small enough to keep whole."""
    res = sstats.ks_2samp(reference, current)
    return float(res.statistic), float(res.pvalue)


def ks_from_quantiles(probs: FloatArray, quantiles: FloatArray, current_sorted: FloatArray,
                      ref_n: int) -> tuple[float, float]:
    """Two-sample KS statistic and p-value with the reference CDF interpolated from its quantiles."""
    n = len(current_sorted)
    # the largest gap sits at a jump of either CDF: window points (both sides of the jump) and ref quantiles
    f_ref_at_cur = np.interp(current_sorted, quantiles, probs, left=0.0, right=1.0)
    above = np.arange(1, n + 1) / n
    below = np.arange(0, n) / n
    d_cur = max(float(np.max(np.abs(f_ref_at_cur - above))), float(np.max(np.abs(f_ref_at_cur - below))))
    f_cur_at_q = np.searchsorted(current_sorted, quantiles, side="right") / n
    d_ref = float(np.max(np.abs(f_cur_at_q - probs)))
    d = max(d_cur, d_ref)
    en = max(1, round(n * ref_n / (n + ref_n)))
    return d, float(sstats.kstwo.sf(d, en))


# --- categorical keys -----------------------------------------------------------------------------------

def category_key(value: Any) -> str | None:
    """Canonical string of a categorical value; None for missing. 1, 1.0 and "1.0" are the same key."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else str(float(value))
    s = str(value)
    try:
        f = float(s)
    except ValueError:
        return s
    if not math.isfinite(f):
        return s
    return str(int(f)) if f.is_integer() else str(f)


# --- per feature ----------------------------------------------------------------------------------------

def _fill_judgement(fd: FeatureDrift, method: Method, score: float, cfg: DriftConfig) -> None:
    fd.method = method
    fd.score = score
    if method in P_VALUE_METHODS:
        fd.threshold = cfg.p_value_threshold
        fd.drifted = score < cfg.p_value_threshold
        fd.p_value = score
    else:
        fd.threshold = cfg.wasserstein_threshold if method == "wasserstein_norm" else cfg.jensenshannon_threshold
        fd.drifted = score >= fd.threshold


def _discrete_judgement(fd: FeatureDrift, ref_probs: FloatArray, cur_counts: FloatArray, ref_n: int,
                        n_values: int, cfg: DriftConfig) -> None:
    """Value-by-value comparison; the last entry of both vectors may hold unseen / "other" values."""
    cur_probs = cur_counts / max(1.0, float(cur_counts.sum()))
    fd.jensenshannon = jensenshannon(ref_probs, cur_probs)
    if ref_n > LARGE_REFERENCE_ROWS:
        _fill_judgement(fd, "jensenshannon", fd.jensenshannon, cfg)
    elif n_values <= 2:
        # Evidently compares the share of the first value (sorted) with the share of everything else
        _fill_judgement(fd, "z", z_test_p_value(float(ref_probs[0]), ref_n, float(cur_probs[0]),
                                                int(cur_counts.sum())), cfg)
    else:
        _fill_judgement(fd, "chi2", chi_square_p_value(ref_probs, cur_counts), cfg)


def numeric_feature_drift(name: str, ref: Mapping[str, Any], values: FloatArray, cfg: DriftConfig,
                          *, reference_values: FloatArray | None = None) -> FeatureDrift:
    """Drift of one numeric window column (NaN = missing) against its reference profile.

    ``reference_values``: the complete reference column, when the profile kept it (small training sets);
    the KS test then runs on it exactly instead of on the interpolated quantiles.
    """
    total = len(values)
    finite = values[np.isfinite(values)]
    n = len(finite)
    fd = FeatureDrift(name=name, kind="numeric", status="ok", rows=n,
                      missing_share=(1.0 - n / total) if total else 0.0,
                      reference_missing_share=float(ref.get("missing_rate", 0.0)))
    ref_n = int(ref.get("count") or 0)
    if ref_n == 0 or not ref.get("quantiles"):
        fd.status = "no_reference_data"
        return fd
    if n < cfg.min_feature_rows:
        fd.status = "insufficient_data"
        return fd
    current_sorted = np.sort(finite)
    fd.out_of_range_share = float(
        (np.searchsorted(current_sorted, float(ref["min"]), side="left")
         + (n - np.searchsorted(current_sorted, float(ref["max"]), side="right"))) / n)
    edges = np.asarray(ref["bin_edges"], dtype=float)
    bin_counts = np.diff(np.searchsorted(current_sorted, edges, side="right"), prepend=0, append=n)
    fd.psi = psi(np.asarray(ref["bin_probs"], dtype=float), bin_counts / n)
    probs, quantiles = quantile_grid(ref)
    std = max(float(ref.get("std") or 0.0), 0.001)
    fd.wasserstein_norm = wasserstein_from_quantiles(probs, quantiles, current_sorted) / std

    ref_values = ref.get("values")
    n_ref_unique = int(ref.get("n_unique", MAX_DISCRETE_VALUES_FOR_CATEGORICAL_TEST + 1))
    if ref_values is not None and n_ref_unique <= MAX_DISCRETE_VALUES_FOR_CATEGORICAL_TEST:
        ref_vals = np.asarray(ref_values, dtype=float)
        cur_unique, cur_counts = np.unique(current_sorted, return_counts=True)
        union = np.union1d(ref_vals, cur_unique)
        if len(union) <= MAX_DISCRETE_VALUES_FOR_CATEGORICAL_TEST:
            ref_p = np.zeros(len(union))
            ref_p[np.searchsorted(union, ref_vals)] = np.asarray(ref["value_probs"], dtype=float)
            cur_c = np.zeros(len(union))
            cur_c[np.searchsorted(union, cur_unique)] = cur_counts
            _discrete_judgement(fd, ref_p, cur_c, ref_n, len(union), cfg)
            return fd
    if ref_n > LARGE_REFERENCE_ROWS:
        _fill_judgement(fd, "wasserstein_norm", fd.wasserstein_norm, cfg)
    else:
        if reference_values is not None:
            ref_finite = reference_values[np.isfinite(reference_values)]
            _, p = ks_two_sample(ref_finite, current_sorted)
        else:
            _, p = ks_from_quantiles(probs, quantiles, current_sorted, ref_n)
        _fill_judgement(fd, "ks", p, cfg)
    return fd


def categorical_feature_drift(name: str, ref: Mapping[str, Any], values: Sequence[Any] | npt.NDArray[Any],
                              cfg: DriftConfig, *, canonical: bool = False) -> FeatureDrift:
    """Drift of one categorical window column (None = missing) against its reference profile.

    ``canonical=True`` promises the values already went through ``category_key`` (the window stores
    them that way), which skips a Python call per value.
    """
    total = len(values)
    counts = Counter(values if canonical else (category_key(v) for v in values))
    counts.pop(None, None)
    n = sum(counts.values())
    fd = FeatureDrift(name=name, kind="categorical", status="ok", rows=n,
                      missing_share=(1.0 - n / total) if total else 0.0,
                      reference_missing_share=float(ref.get("missing_rate", 0.0)))
    ref_n = int(ref.get("count") or 0)
    if ref_n == 0:
        fd.status = "no_reference_data"
        return fd
    if n < cfg.min_feature_rows:
        fd.status = "insufficient_data"
        return fd
    ref_freq: dict[str, float] = {}
    for k, p in ref["categories"].items():
        key = category_key(k)
        if key is not None:
            ref_freq[key] = ref_freq.get(key, 0.0) + float(p)
    keys = sorted(ref_freq)
    other = float(ref.get("other_freq", 0.0))
    if other < 1e-9:  # older profiles computed 1 - sum(top) and could leave rounding dust here
        other = 0.0
    cur_c = np.array([counts.get(k, 0) for k in keys] + [n - sum(counts.get(k, 0) for k in keys)], dtype=float)
    ref_p = np.array([ref_freq[k] for k in keys] + [other], dtype=float)
    fd.unseen_category_share = float(cur_c[-1] / n)
    fd.psi = psi(ref_p / ref_p.sum(), cur_c / n)
    unseen_keys = sum(1 for k in counts if k not in ref_freq)
    n_values = len(keys) + unseen_keys
    if cur_c[-1] == 0 and other == 0:  # no "other" bucket on either side: drop it
        ref_p, cur_c = ref_p[:-1], cur_c[:-1]
    _discrete_judgement(fd, ref_p, cur_c, ref_n, n_values, cfg)
    return fd


def feature_drift(name: str, ref: Mapping[str, Any], values: Any, cfg: DriftConfig,
                  *, canonical: bool = False, reference_values: Any = None) -> FeatureDrift:
    if ref.get("type") == "categorical":
        return categorical_feature_drift(name, ref, values, cfg, canonical=canonical)
    full = None if reference_values is None else np.asarray(
        [np.nan if v is None else v for v in reference_values], dtype=float)
    return numeric_feature_drift(name, ref, np.asarray(values, dtype=float), cfg, reference_values=full)


def complete_reference_sample(profile: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The profile's sample when it holds every training row (so exact tests can use it), else None."""
    sample: Mapping[str, Any] | None = profile.get("sample")
    if sample and int(sample.get("rows", -1)) == int(profile.get("rows", -2)):
        return sample
    return None


# --- per window -----------------------------------------------------------------------------------------

def window_drift(profile: Mapping[str, Any], columns: Mapping[str, Any], rows: int,
                 predictions: Any = None, cfg: DriftConfig | None = None,
                 *, canonical: bool = False) -> WindowDrift:
    """Every profiled feature of the window (``columns``: name -> values in window order) and, when the
    profile has a prediction distribution and the window has predictions, the prediction drift.
    ``canonical``: categorical values are already ``category_key`` strings."""
    cfg = cfg or DriftConfig()
    if rows < cfg.min_rows:
        return WindowDrift(status="insufficient_data", rows=rows, min_rows=cfg.min_rows)
    out = WindowDrift(status="ok", rows=rows, min_rows=cfg.min_rows)
    full = complete_reference_sample(profile)
    full_features = full["features"] if full else {}
    for name, ref in profile["features"].items():
        if name in columns:
            out.features.append(feature_drift(name, ref, columns[name], cfg, canonical=canonical,
                                              reference_values=full_features.get(name)))
    judged = [f for f in out.features if f.status == "ok"]
    drifted = sum(1 for f in judged if f.drifted)
    out.judged_features = len(judged)
    out.drifted_features = drifted
    if judged:
        out.drift_share = drifted / len(judged)
        out.dataset_drifted = out.drift_share >= cfg.drift_share
    pref = profile.get("prediction")
    if pref and predictions is not None and len(predictions):
        out.prediction = feature_drift("prediction", pref, predictions, cfg, canonical=canonical)
    return out
