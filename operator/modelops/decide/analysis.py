"""Canary analysis, purely: PromQL templates in, per-metric verdicts out.

A query is a template over {{namespace}}, {{name}}, {{side}}, {{revision}}, {{version}} (the side's MLflow
model version) and {{interval}}; a metric with `builtin: <name>` uses the built-in template of that name
(`decide.builtin_metrics`). Each metric is queried for the canary side (and for the stable side when it
has a baseline check). A `quality` metric has no query of its own: its PromQL is built from the drift
exporter's quality series (`decide.quality`) and judged by `evaluate_quality`. The adapter that
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
- Latency quantiles (issue 14): a built-in `latency-p50/p90/p99` judges its `thresholdRange.max` and
  `baseline.maxRatio` by a one-sided binomial test on the canary's request counts (`evaluate_quantile`,
  decide/quantile_stats.py) unless its `quantileTest.method` is `estimate`: the bound T is the `max`, or
  `maxRatio` x the stable side's quantile from its own buckets; k of the canary's n requests in the window
  are slower than T (read from its histogram buckets, a bucket vector per side the adapter reports as
  `Buckets`), and the check fails when P(X >= k | n, 1 - q) < alpha. Otherwise it passes with the point
  estimates as value and baseline. `min` / `minRatio` stay point comparisons; no buckets, or a canary without
  requests, is Inconclusive; a failed bucket query is an Error; a non-finite value is never a pass.
- Quality (issue 17): a realised-quality check whose canary (or, for `maxDrop`, stable) version has fewer
  joined labels than `minLabels` is Inconclusive, whatever its value; `maxDrop` fails when the canary is worse
  than the stable version's same series by more than it (worse: lower auc/accuracy/f1, higher
  log_loss/brier/rmse/mae); `thresholdRange` bounds the canary's value as for any metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from modelops.api.types import Buckets, ModelRef, Sample, serving_name
from modelops.decide import quality as q
from modelops.decide.builtin_metrics import BUCKETS, quantile_test_of, query_of
from modelops.decide.quantile_stats import histogram_quantile, quantile_in_inf_bucket, tail_test

Result = Literal["Pass", "Fail", "Inconclusive", "Error"]
Side = Literal["canary", "stable"]

#: Placeholders a query may use.
PLACEHOLDERS = ("namespace", "name", "side", "revision", "version", "interval")


@dataclass(frozen=True)
class Query:
    """One PromQL query the adapter must run for metric `metric` on `side`."""

    metric: str
    side: Side
    promql: str
    #: "value": one sample (`Prometheus.query`); "buckets": a histogram's `le` vector (`query_buckets`)
    kind: Literal["value", "buckets"] = "value"


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


def served_version(side: Mapping[str, Any] | None) -> str:
    """What {{version}} renders to for one side (`status.stable` / `status.canary`): the registry version, or
    for a plain storage URI the name it serves under (`uXXXXXXXX`); both are what the operator gives the model
    server as MODELOPS_MODEL_VERSION, so they match the `version` label of its series. "" without a side."""
    side = side or {}
    if side.get("version"):
        return str(side["version"])
    if side.get("storageUri"):
        return serving_name(ModelRef(storage_uri=str(side["storageUri"])))
    return ""


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


def buckets_key(name: str) -> str:
    """The query key of a latency metric's request-duration buckets (its quantile test)."""
    return f"{name}/buckets"


def bucket_sides(metric: Mapping[str, Any]) -> tuple[Side, ...]:
    """The sides whose buckets a metric's quantile test reads: the canary's when a `max` or `maxRatio` is tested,
    and the stable side's for `maxRatio` (its bound is maxRatio x the stable quantile); none without the test."""
    if quantile_test_of(metric) is None:
        return ()
    tested_max = (metric.get("thresholdRange") or {}).get("max") is not None
    tested_ratio = (metric.get("baseline") or {}).get("maxRatio") is not None
    sides: tuple[Side, ...] = ("canary",) if tested_max or tested_ratio else ()
    return sides + (("stable",) if tested_ratio else ())


def labels_key(name: str) -> str:
    """The query key of a quality metric's joined-label count."""
    return f"{name}/joinedLabels"


def _quality_queries(m: Mapping[str, Any], context: Mapping[Side, Mapping[str, str]]) -> list[Query]:
    spec = m["quality"]
    name = str(m["name"])
    sides: tuple[Side, ...] = ("canary", "stable") if spec.get("maxDrop") is not None else ("canary",)
    out = [Query(name, side, render(q.analysis_value_template(spec), context[side])) for side in sides]
    if q.min_labels(spec) is not None:
        out += [Query(labels_key(name), side, render(q.analysis_labels_template(), context[side])) for side in sides]
    return out


def queries(metrics: Sequence[Mapping[str, Any]], context: Mapping[Side, Mapping[str, str]]) -> list[Query]:
    """The queries an analysis needs: the canary side of every metric, the stable side of baseline ones, and
    the canary's traffic count of metrics with `minSamples`; the request-duration buckets of the sides a latency
    quantile's test reads (`bucket_sides`); for a quality metric its value (and the stable side's for
    `maxDrop`) and, when realised, the joined-label count of each side it reads."""
    out: list[Query] = []
    for m in metrics:
        if m.get("quality"):
            out += _quality_queries(m, context)
            continue
        template = query_of(m)  # its own query, or a built-in metric's (decide/builtin_metrics.py)
        out.append(Query(m["name"], "canary", render(template, context["canary"])))
        if m.get("baseline"):
            out.append(Query(m["name"], "stable", render(template, context["stable"])))
        out += [Query(buckets_key(m["name"]), side, render(BUCKETS, context[side]), "buckets")
                for side in bucket_sides(m)]
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


def _stable_baseline(name: str, value: float, stable: Sample | None) -> float | Check:
    """The stable side's value for a baseline check, or the Inconclusive verdict when it has none usable."""
    if stable is None or not stable.has_value:
        return Check(name, "Inconclusive", value, message="no data for the stable baseline")
    ref = float(stable.value)  # type: ignore[arg-type]
    if not math.isfinite(ref):
        return Check(name, "Inconclusive", value, ref, f"stable baseline is {_fmt(ref)}: the ratio is undefined")
    return ref


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
        ref = _stable_baseline(name, value, stable)
        if isinstance(ref, Check):
            return ref
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


def evaluate_quantile(metric: Mapping[str, Any], canary: Sample, stable: Sample | None, canary_buckets: Buckets,
                      stable_buckets: Buckets | None, q: float, alpha: float) -> Check:
    """The verdict of a latency quantile judged by the binomial test (module docstring; decide/quantile_stats).

    `canary` / `stable` are the point estimates (histogram_quantile): the check's value and baseline, and what
    `min` / `minRatio` compare. `max` and `maxRatio` are tested on `canary_buckets`: fail when significantly
    more than n(1 - q) of its n requests are slower than the bound (p < alpha), pass otherwise.
    """
    name, label = str(metric["name"]), f"p{q * 100:g}"
    for side, got in (("canary", canary), ("stable", stable), ("canary bucket", canary_buckets),
                      ("stable bucket", stable_buckets)):
        if got is not None and got.error is not None:
            return Check(name, "Error", message=f"{side} query failed: {got.error}")
    if not canary.has_value:
        return Check(name, "Inconclusive", message="no data for the canary")
    value = float(canary.value)  # type: ignore[arg-type]
    rng, base = metric.get("thresholdRange") or {}, metric.get("baseline") or {}
    lo, hi = rng.get("min"), rng.get("max")
    if lo is not None and value < float(lo):
        return Check(name, "Fail", value, message=f"canary {_fmt(value)} < min {_fmt(float(lo))}")
    head = f"canary {label} {_fmt(value)} s (estimate)"
    notes: list[str] = []
    if hi is not None:
        test = tail_test(float(hi), q, alpha, canary_buckets.counts)
        if test is None:
            return Check(name, "Inconclusive", value, message=f"{head}; no canary requests in the window's "
                         "request-duration buckets: the max is not tested")
        if test.rejected:
            return Check(name, "Fail", value, message=f"{head}; {test.describe('max')}")
        notes.append(test.describe("max"))
    ref: float | None = None
    if base:
        stable_ref = _stable_baseline(name, value, stable)
        if isinstance(stable_ref, Check):
            return stable_ref
        ref = stable_ref
        head += f", stable {_fmt(ref)} s"
        lo_ratio, hi_ratio = base.get("minRatio"), base.get("maxRatio")
        if lo_ratio is not None:
            if ref == 0.0 and value != 0.0:
                return Check(name, "Inconclusive", value, ref, "stable baseline is 0: the ratio is undefined")
            ratio = value / ref if ref != 0.0 else 1.0  # both 0: as fast as each other
            if math.isnan(ratio):
                return Check(name, "Inconclusive", value, ref, f"canary/stable {_fmt(ratio)}: the ratio is undefined")
            if ratio < float(lo_ratio):
                return Check(name, "Fail", value, ref, f"canary/stable {_fmt(ratio)} < minRatio {_fmt(float(lo_ratio))}")
        if hi_ratio is not None:
            counts = stable_buckets.counts if stable_buckets is not None else ()
            ref_q = histogram_quantile(q, counts)
            if math.isnan(ref_q):
                return Check(name, "Inconclusive", value, ref, f"{head}; no stable requests in the window's "
                             "request-duration buckets: the maxRatio bound is undefined")
            if quantile_in_inf_bucket(q, counts) or ref_q <= 0.0:
                return Check(name, "Inconclusive", value, ref, f"{head}; the stable {label} from its buckets is "
                             f"{'above the highest finite bucket' if ref_q > 0 else _fmt(ref_q)}: the maxRatio "
                             "bound is undefined")
            bound = float(hi_ratio) * ref_q
            test = tail_test(bound, q, alpha, canary_buckets.counts)
            if test is None:
                return Check(name, "Inconclusive", value, ref, f"{head}; no canary requests in the window's "
                             "request-duration buckets: the maxRatio is not tested")
            what = f"maxRatio {_fmt(float(hi_ratio))} x stable {label} {_fmt(ref_q)} ="
            if test.rejected:
                return Check(name, "Fail", value, ref, f"{head}; {test.describe(what)}")
            notes.append(test.describe(what))
    if not math.isfinite(value):
        return Check(name, "Inconclusive", value, ref, f"{head}: no test rules it out, but a non-finite value is "
                     "never a pass" + "".join(f"; {n}" for n in notes))
    return Check(name, "Pass", value, ref, "; ".join([head, *notes]))


def _labels_enough(name: str, side: Side, sample: Sample, need: int) -> Check | None:
    if sample.error is not None:
        return Check(name, "Error", message=f"joined-labels query of the {side} failed: {sample.error}")
    got = sample.value if sample.has_value else None
    if got is None or not math.isfinite(got) or got < need:
        shown = "no" if got is None else f"{got:.0f}"
        return Check(name, "Inconclusive", message=f"the {side} version has {shown} joined labels < minLabels "
                     f"{need}: not judged")
    return None


def evaluate_quality(metric: Mapping[str, Any], samples: Mapping[tuple[str, Side], Sample]) -> Check:
    """The verdict of a `quality` metric: realised or estimated quality of the canary version, bounded by
    `thresholdRange` and compared with the stable version's same series by `maxDrop`."""
    spec = metric["quality"]
    name, what = str(metric["name"]), f"{spec.get('source', 'realised')} {spec['metric']}"
    missing = Sample(error="not queried")
    max_drop = spec.get("maxDrop")
    sides: tuple[Side, ...] = ("canary", "stable") if max_drop is not None else ("canary",)
    values = {side: samples.get((name, side), missing) for side in sides}
    for side, sample in values.items():
        if sample.error is not None:
            return Check(name, "Error", message=f"{side} query failed: {sample.error}")
    need = q.min_labels(spec)
    if need is not None:  # too few labels: the value means nothing either way (a Fail included)
        for side in sides:
            low = _labels_enough(name, side, samples.get((labels_key(name), side), missing), need)
            if low is not None:
                return Check(name, low.result, values["canary"].value, message=low.message)
    canary = values["canary"]
    if not canary.has_value or canary.value is None:
        return Check(name, "Inconclusive", message=f"no {what} for the canary version yet")
    value = canary.value
    if not math.isfinite(value):
        return Check(name, "Inconclusive", value, message=f"canary {what} is {_fmt(value)}: never a pass")
    rng = metric.get("thresholdRange")
    if rng:
        lo, hi = rng.get("min"), rng.get("max")
        if lo is not None and value < float(lo):
            return Check(name, "Fail", value, message=f"canary {what} {_fmt(value)} < min {_fmt(float(lo))}")
        if hi is not None and value > float(hi):
            return Check(name, "Fail", value, message=f"canary {what} {_fmt(value)} > max {_fmt(float(hi))}")
    if max_drop is None:
        return Check(name, "Pass", value)
    stable = values["stable"]
    if not stable.has_value or stable.value is None or not math.isfinite(stable.value):
        return Check(name, "Inconclusive", value, message=f"no {what} for the stable version to compare with")
    ref = stable.value
    drop = q.worse_by(str(spec["metric"]), ref, value)
    if drop > float(max_drop):
        return Check(name, "Fail", value, ref, f"canary {what} {_fmt(value)} is {_fmt(drop)} worse than stable "
                     f"{_fmt(ref)} (maxDrop {_fmt(float(max_drop))})")
    return Check(name, "Pass", value, ref, f"canary {what} {_fmt(value)} vs stable {_fmt(ref)}")


def overall(checks: Sequence[Check]) -> Result:
    """Fail beats Error beats Inconclusive beats Pass: an analysis passes only when every check passed.

    A failed check is evidence against the canary even when another query errored, so it counts as a failure.
    """
    results = {c.result for c in checks}
    for r in ("Fail", "Error", "Inconclusive"):
        if r in results:
            return r
    return "Pass"


def evaluate_all(metrics: Sequence[Mapping[str, Any]], samples: Mapping[tuple[str, Side], Sample],
                 buckets: Mapping[tuple[str, Side], Buckets] | None = None) -> list[Check]:
    """Every metric's verdict from the samples (and the bucket vectors of `Query.kind` "buckets") by query key."""
    missing, no_buckets = Sample(error="not queried"), Buckets(error="not queried")
    buckets = buckets or {}
    out = []
    for m in metrics:
        if m.get("quality"):
            out.append(evaluate_quality(m, samples))
            continue
        canary = samples.get((m["name"], "canary"), missing)
        stable = samples.get((m["name"], "stable"), missing) if m.get("baseline") else None
        test, sides = quantile_test_of(m), bucket_sides(m)
        if test is not None and sides:
            key = buckets_key(m["name"])
            check = evaluate_quantile(m, canary, stable, buckets.get((key, "canary"), no_buckets),
                                      buckets.get((key, "stable"), no_buckets) if "stable" in sides else None, *test)
        else:
            check = evaluate(m, canary, stable)
        if check.result != "Error":  # a failure to query says more than a low count
            # too little canary traffic: the value means nothing either way (a Fail on 2 requests included)
            low = _enough(m, samples.get((samples_key(m["name"]), "canary")))
            if low is not None:
                check = Check(check.name, low.result, check.value, check.baseline, low.message)
        out.append(check)
    return out
