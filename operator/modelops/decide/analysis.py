"""Canary analysis, purely: PromQL templates in, per-metric verdicts out.

A query is a template over {{namespace}}, {{name}}, {{side}}, {{revision}} and {{interval}}; a metric with
`builtin: <name>` uses the built-in template of that name (`decide.builtin_metrics`). Each metric
is queried for the canary side (and for the stable side when it has a baseline check). The adapter that
talks to Prometheus reports one `Sample` per query: a value, no data, or an error. Verdicts:

- Pass: every configured check holds.
- Fail: a threshold or baseline check does not hold.
- Inconclusive: no data (empty vector, NaN, a zero stable value under a ratio). Never a pass: the rollout
  holds its step until data arrives (issue 7: "no data = inconclusive (hold), never a pass").
- Non-finite values (issue 16, H1): `histogram_quantile` yields +Inf when the quantile lies above the top
  bucket. +Inf above a `max` (or -Inf below a `min`) is a definite Fail; a non-finite value that no bound
  rules out, a non-finite stable baseline or a non-finite ratio is Inconclusive, never a pass. A non-finite
  number never reaches status: `Check.as_status` leaves it out and says it in the message, because JSON has
  no Infinity and the API server refuses a body that contains one.
- Error: Prometheus could not answer (unreachable, timeout, bad query). Never a pass either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from modelops.api.types import Sample
from modelops.decide.builtin_metrics import query_of

Result = Literal["Pass", "Fail", "Inconclusive", "Error"]
Side = Literal["canary", "stable"]

#: Placeholders a query may use.
PLACEHOLDERS = ("namespace", "name", "side", "revision", "interval")


@dataclass(frozen=True)
class Query:
    """One PromQL query the adapter must run for metric `metric` on `side`."""

    metric: str
    side: Side
    promql: str


@dataclass(frozen=True)
class Check:
    name: str
    result: Result
    value: float | None = None
    baseline: float | None = None
    message: str = ""

    def as_status(self) -> dict[str, Any]:
        """The `status.rollout.lastChecks[]` entry: valid JSON always (non-finite numbers are left out)."""
        out: dict[str, Any] = {"name": self.name, "result": self.result}
        if self.value is not None and math.isfinite(self.value):
            out["value"] = self.value
        if self.baseline is not None and math.isfinite(self.baseline):
            out["baseline"] = self.baseline
        if self.message:
            out["message"] = self.message
        return out


def render(template: str, values: Mapping[str, str]) -> str:
    """Substitute `{{key}}` and `{{ key }}` placeholders; unknown ones are left for Prometheus to reject."""
    out = template
    for key in PLACEHOLDERS:
        if key in values:
            out = out.replace("{{" + key + "}}", values[key]).replace("{{ " + key + " }}", values[key])
    return out


def samples_key(name: str) -> str:
    """The query key of a metric's `minSamples` count (issue 16, L9)."""
    return f"{name}/minSamples"


def queries(metrics: Sequence[Mapping[str, Any]], context: Mapping[Side, Mapping[str, str]]) -> list[Query]:
    """The queries an analysis needs: the canary side of every metric, the stable side of baseline ones, and
    the canary's traffic count of metrics with `minSamples`."""
    out: list[Query] = []
    for m in metrics:
        template = query_of(m)  # its own query, or a built-in metric's (decide/builtin_metrics.py)
        out.append(Query(m["name"], "canary", render(template, context["canary"])))
        if m.get("baseline"):
            out.append(Query(m["name"], "stable", render(template, context["stable"])))
        if m.get("minSamples"):
            out.append(Query(samples_key(m["name"]), "canary", render(m["minSamples"]["query"], context["canary"])))
    return out


def _enough(metric: Mapping[str, Any], count: Sample | None) -> Check | None:
    """None when the metric has no `minSamples` or the canary had enough traffic; else the verdict.

    A count-style query (errors with a `max`) passes at zero traffic: without enough samples the check is
    Inconclusive, never a pass.
    """
    spec = metric.get("minSamples")
    if not spec:
        return None
    name, need = str(metric["name"]), float(spec.get("min", 1))
    if count is None or count.error is not None:
        return Check(name, "Error", message=f"minSamples query failed: {count.error if count else 'not queried'}")
    value = float(count.value) if count.has_value and count.value is not None else None
    if value is None or not math.isfinite(value) or value < need:
        got = "no data" if value is None else _fmt(value)
        return Check(name, "Inconclusive", message=f"canary traffic {got} < minSamples {_fmt(need)}: not judged")
    return None


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def evaluate(metric: Mapping[str, Any], canary: Sample, stable: Sample | None) -> Check:
    """The verdict of one metric given its samples."""
    name = str(metric["name"])
    for side, sample in (("canary", canary), ("stable", stable)):
        if sample is not None and sample.error is not None:
            return Check(name, "Error", message=f"{side} query failed: {sample.error}")
    if not canary.has_value:
        return Check(name, "Inconclusive", message="no data for the canary")
    value = float(canary.value)  # type: ignore[arg-type]
    rng = metric.get("thresholdRange")
    if rng:
        lo, hi = rng.get("min"), rng.get("max")
        if lo is not None and value < float(lo):
            return Check(name, "Fail", value, message=f"canary {_fmt(value)} < min {_fmt(float(lo))}")
        if hi is not None and value > float(hi):
            return Check(name, "Fail", value, message=f"canary {_fmt(value)} > max {_fmt(float(hi))}")
    base = metric.get("baseline")
    if base:
        if stable is None or not stable.has_value:
            return Check(name, "Inconclusive", value, message="no data for the stable baseline")
        ref = float(stable.value)  # type: ignore[arg-type]
        if not math.isfinite(ref):
            return Check(name, "Inconclusive", value, ref, f"stable baseline is {_fmt(ref)}: the ratio is undefined")
        if ref == 0.0:
            if value == 0.0:
                return Check(name, "Pass", value, ref, "canary and stable are both 0")
            return Check(name, "Inconclusive", value, ref, "stable baseline is 0: the ratio is undefined")
        ratio = value / ref
        lo, hi = base.get("minRatio"), base.get("maxRatio")
        if math.isnan(ratio):
            return Check(name, "Inconclusive", value, ref, f"canary/stable {_fmt(ratio)}: the ratio is undefined")
        if lo is not None and ratio < float(lo):
            return Check(name, "Fail", value, ref, f"canary/stable {_fmt(ratio)} < minRatio {_fmt(float(lo))}")
        if hi is not None and ratio > float(hi):
            return Check(name, "Fail", value, ref, f"canary/stable {_fmt(ratio)} > maxRatio {_fmt(float(hi))}")
        if not math.isfinite(ratio):
            return Check(name, "Inconclusive", value, ref, f"canary/stable {_fmt(ratio)} (canary {_fmt(value)}): "
                         "no bound rules it out, but a non-finite ratio is never a pass")
        return Check(name, "Pass", value, ref, f"canary/stable {_fmt(ratio)}")
    if not math.isfinite(value):
        return Check(name, "Inconclusive", value, message=f"canary {_fmt(value)}: no bound rules it out, but a "
                     "non-finite value is never a pass")
    return Check(name, "Pass", value)


def overall(checks: Sequence[Check]) -> Result:
    """Fail beats Error beats Inconclusive beats Pass: an analysis passes only when every check passed.

    A failed check is evidence against the canary even when another query errored, so it counts as a failure.
    """
    results = {c.result for c in checks}
    for r in ("Fail", "Error", "Inconclusive"):
        if r in results:
            return r
    return "Pass"


def evaluate_all(metrics: Sequence[Mapping[str, Any]], samples: Mapping[tuple[str, Side], Sample]) -> list[Check]:
    missing = Sample(error="not queried")
    out = []
    for m in metrics:
        check = evaluate(m, samples.get((m["name"], "canary"), missing),
                         samples.get((m["name"], "stable"), missing) if m.get("baseline") else None)
        if check.result != "Error":  # a failure to query says more than a low count
            # too little canary traffic: the value means nothing either way (a Fail on 2 requests included)
            low = _enough(m, samples.get((samples_key(m["name"]), "canary")))
            if low is not None:
                check = Check(check.name, low.result, check.value, check.baseline, low.message)
        out.append(check)
    return out
