"""SLO gates (issue 14), purely: a ModelDeployment's `spec.slos` -> the burn-rate thresholds the operator
exports for the chart's multi-window multi-burn-rate rules, and the verdict of the fast-burn alert query.

The method is the Google SRE workbook's (chapter 5, "Alerting on SLOs"): with an error budget of
`1 - objective` over `window`, page when the error ratio over 1h *and* over 5m exceeds the rate that spends 2%
of the budget in 1h (14.4x the budget for a 30-day window), and open a ticket when the ratio over 6h and over
30m exceeds the rate that spends 5% in 6h (6x for 30 days). The long window says the burn is real, the short
one that it still goes on (the alert resets minutes after recovery).

The chart's PrometheusRule (`modelops.slo` group) records the error ratio per InferenceService and SLI
(`modelops:slo_errors:ratio_rate<w>{namespace,isvc,slo}`) over the model server's own series and fires
`ModelopsSLOFastBurn` / `ModelopsSLOSlowBurn` against `modelops_slo_burn_rate_threshold{namespace,isvc,slo,
burn}`, which the operator exports from these functions. The rollout controller does not start or advance a
canary while `ModelopsSLOFastBurn` fires for the deployment (condition BudgetExhausted), and resumes by itself
once it stops.

SLIs:
- availability: the share of requests answered with a 5xx status;
- latency: the share of requests slower than `latency.thresholdSeconds` (one of the model server's histogram
  buckets, so the ratio is exact).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelops.api.times import parse_duration

FAST_BURN_ALERT = "ModelopsSLOFastBurn"
SLOW_BURN_ALERT = "ModelopsSLOSlowBurn"
#: (share of the budget, long window in seconds) per alert: the workbook's page and ticket conditions
FAST = (0.02, 3600.0)
SLOW = (0.05, 6 * 3600.0)
DEFAULT_WINDOW = "720h"  # 30 days
#: The latency SLO thresholds a ModelDeployment may choose (the CRD's enum says so too): bucket bounds of the
#: model server's latency histogram (operator/modelops/serving/metrics.py LATENCY_BUCKETS, which has these and
#: finer ones between them), so that the burn-rate rules count good requests exactly with `le`.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Slo:
    name: str  # availability | latency
    objective: float  # percent, e.g. 99.9
    window_seconds: float
    threshold_seconds: float | None = None  # latency only

    @property
    def budget(self) -> float:
        """The error budget as a ratio of requests (1 - objective)."""
        return 1.0 - self.objective / 100.0

    def burn_thresholds(self) -> dict[str, float]:
        """The error ratio above which each burn alert fires: budget share x window / long window x budget."""
        return {burn: share * self.window_seconds / long * self.budget
                for burn, (share, long) in (("fast", FAST), ("slow", SLOW))}

    def burn_factors(self) -> dict[str, float]:
        """The same as multiples of the budget (14.4 and 6 for 30 days)."""
        return {burn: share * self.window_seconds / long for burn, (share, long) in (("fast", FAST), ("slow", SLOW))}


def slos_of(spec: Mapping[str, Any]) -> list[Slo]:
    out = []
    for s in spec.get("slos") or []:
        latency = s.get("latency") or {}
        out.append(Slo(str(s["name"]), float(s["objective"]),
                       parse_duration(str(s.get("window") or DEFAULT_WINDOW)),
                       float(latency["thresholdSeconds"]) if latency.get("thresholdSeconds") is not None else None))
    return out


def slo_problems(spec: Mapping[str, Any]) -> list[str]:
    """What the CRD's schema may not have caught (an older CRD): unknown SLIs, a latency SLO without a bucket."""
    problems = []
    for s in spec.get("slos") or []:
        name = s.get("name")
        if name not in ("availability", "latency"):
            problems.append(f"spec.slos[{name}].name: must be availability or latency")
        threshold = (s.get("latency") or {}).get("thresholdSeconds")
        if name == "latency" and (threshold is None or float(threshold) not in LATENCY_BUCKETS):
            problems.append(f"spec.slos[latency].latency.thresholdSeconds: must be one of the model server's "
                            f"latency buckets {list(LATENCY_BUCKETS)}")
    return problems


def fast_burn_query(namespace: str, isvc: str) -> str:
    """The firing fast-burn alerts of one deployment (Prometheus' ALERTS series): a value when one fires, no data
    when none does."""
    return (f'count(ALERTS{{alertname="{FAST_BURN_ALERT}",alertstate="firing",namespace="{namespace}",'
            f'isvc="{isvc}"}})')


@dataclass(frozen=True)
class BudgetState:
    """What the fast-burn query said: exhausted (the alert fires), ok (it does not) or unknown (no answer)."""

    state: str  # "ok" | "exhausted" | "unknown"
    message: str = ""


def budget_verdict(slos: Sequence[Slo], value: float | None, error: str | None) -> BudgetState:
    """`value`/`error` of `fast_burn_query`: no SLO -> ok; a query error -> unknown (never a pass: hold)."""
    if not slos:
        return BudgetState("ok")
    names = ", ".join(s.name for s in slos)
    if error is not None:
        return BudgetState("unknown", f"could not read the SLO burn alerts from Prometheus: {error}")
    if value is not None and value > 0:
        return BudgetState("exhausted", f"{FAST_BURN_ALERT} fires for this deployment ({names}): the error budget "
                                   "burns too fast to change traffic now; resumes once the alert stops")
    return BudgetState("ok", f"no fast burn ({names})")
