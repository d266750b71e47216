"""Canary analysis, purely: PromQL templates in, per-metric verdicts out.

A query is a template over {{namespace}}, {{name}}, {{side}}, {{revision}} and {{interval}}. Each metric
is queried for the canary side (and for the stable side when it has a baseline check). The adapter that
talks to Prometheus reports one `Sample` per query: a value, no data, or an error. Verdicts:

- Pass: every configured check holds.
- Fail: a threshold or baseline check does not hold.
- Inconclusive: no data (empty vector, NaN, a zero stable value under a ratio). Never a pass: the rollout
  holds its step until data arrives (issue 7: "no data = inconclusive (hold), never a pass").
- Error: Prometheus could not answer (unreachable, timeout, bad query). Never a pass either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from modelops.api.types import Sample

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
        out: dict[str, Any] = {"name": self.name, "result": self.result}
        if self.value is not None:
            out["value"] = self.value
        if self.baseline is not None:
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


def queries(metrics: Sequence[Mapping[str, Any]], context: Mapping[Side, Mapping[str, str]]) -> list[Query]:
    """The queries an analysis needs: the canary side of every metric, the stable side of baseline ones."""
    out: list[Query] = []
    for m in metrics:
        out.append(Query(m["name"], "canary", render(m["query"], context["canary"])))
        if m.get("baseline"):
            out.append(Query(m["name"], "stable", render(m["query"], context["stable"])))
    return out


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
        if ref == 0.0:
            if value == 0.0:
                return Check(name, "Pass", value, ref, "canary and stable are both 0")
            return Check(name, "Inconclusive", value, ref, "stable baseline is 0: the ratio is undefined")
        ratio = value / ref
        lo, hi = base.get("minRatio"), base.get("maxRatio")
        if lo is not None and ratio < float(lo):
            return Check(name, "Fail", value, ref, f"canary/stable {_fmt(ratio)} < minRatio {_fmt(float(lo))}")
        if hi is not None and ratio > float(hi):
            return Check(name, "Fail", value, ref, f"canary/stable {_fmt(ratio)} > maxRatio {_fmt(float(hi))}")
        return Check(name, "Pass", value, ref, f"canary/stable {_fmt(ratio)}")
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
    return [evaluate(m, samples.get((m["name"], "canary"), missing),
                     samples.get((m["name"], "stable"), missing) if m.get("baseline") else None)
            for m in metrics]
