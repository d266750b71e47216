"""Built-in canary analysis metrics by name (as Flagger's request-success-rate / request-duration), resolved
to PromQL over the one label convention of model-server series.

The label convention (written down once, here; the chart's PodMonitor sets it and `charts/modelops/README.md`
and the CRD's field descriptions repeat it):

- `namespace`  the model server Pod's namespace;
- `isvc`       its InferenceService (KServe's `serving.kserve.io/inferenceservice` Pod label), which is the
               ModelDeployment's name;
- `version`    what the model server serves: the registry version ("3"), or `uXXXXXXXX` for a plain storage
               URI (the operator passes it as MODELOPS_MODEL_VERSION; the model server puts it on its own
               series). It tells the two sides of a canary apart: the analysis renders {{version}} as the
               analysed side's version.

There is no `side` label on model-server series: KServe names every predictor Deployment
`<isvc>-<predictor>-predictor` (the stable one too), and a canary's Pods become the stable side on promotion
without being replaced, so nothing on a Pod says which side it is. A query says which side it reads through
{{version}} (or {{revision}}, the predictor name `vN`/`uXXXXXXXX`, on the `pod` label).

The series are the model server's own (operator/modelops/serving/metrics.py):
`modelops_serving_requests_total{status}` and `modelops_serving_request_duration_seconds` (every REST
request, the fast path included, and gRPC).

A metric with `builtin: <name>` needs no `query`; its thresholds (`thresholdRange`, `baseline`,
`minSamples`) are the author's, as for a custom query. The templates use the analysis placeholders
({{namespace}}, {{name}}, {{version}}, {{interval}}), so they render like any custom query.

What counts as a failed request: a 5xx, and a 422. The model server answers 422 to a well-formed request that
does not fit the served version's input schema (a missing or renamed feature, a value of the wrong type): when
the clients' requests fit the stable version and not the canary, the canary's input contract is broken and
Flagger's "non-5xx" would pass it while it refuses all of its traffic. Malformed requests (400, 413) are the
clients' fault and count as answered. A client that sends some 422-worthy rows to both sides lowers both
success rates: compare with the stable side (`baseline`) instead of an absolute `thresholdRange` then.

The latency quantiles (`latency-p50`, `latency-p90`, `latency-p99`) are judged by a significance test by
default (`quantileTest: {method: binomial, alpha: 0.05}`; decide/quantile_stats.py): their `max` and
`maxRatio` bounds are tested on the canary's request counts from the histogram's buckets over the window
(`bucket_query`), not by comparing two point estimates of a tail quantile, which on ~120 requests is decided by
one slow request. The check's value is still the canary's `histogram_quantile` (and its baseline the stable
side's), reported, and `min` / `minRatio` stay point comparisons. `quantileTest: {method: estimate}` compares
the point estimates, as every other metric does; a custom `query` has no histogram the operator knows, so
the test applies to these three built-ins only (`quantile_test_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The label selector of one side of one InferenceService (the label convention above).
SELECTOR = 'namespace="{{namespace}}",isvc="{{name}}",version="{{version}}"'
REQUESTS = "modelops_serving_requests_total"
DURATION = "modelops_serving_request_duration_seconds"


def _rate(metric: str, extra: str = "") -> str:
    return f"rate({metric}{{{SELECTOR}{extra}}}[{{{{interval}}}}])"


def _quantile(q: str) -> str:
    return f"histogram_quantile({q}, sum by (le) ({_rate(DURATION + '_bucket')}))"


#: The request-duration buckets of one side over the analysis window: (le -> requests), the counts the
#: quantile test reads (k slower than a bound, n in all: the +Inf bucket). Counted, not extrapolated: each
#: series' counter now minus the same counter one window ago (`increase()` would scale k and n alike by
#: window / sampled span, up to 2x with two scrapes per window, and overstate the evidence). A series born
#: within the window has no value a window ago: all of its count is in the window (`or` the series itself);
#: a counter that went down (the model server restarted) counts from its restart (`>= 0` drops the negative
#: difference, `or` takes the series' value). A Pod gone within the window is no longer counted: its last
#: requests are missing, never invented.
_B = f"{DURATION}_bucket{{{SELECTOR}}}"
BUCKETS = f"sum by (le) (({_B} - {_B} offset {{{{interval}}}}) >= 0 or {_B})"


#: the statuses that count as failed requests (5xx, and 422: the version refuses what its clients send)
_FAILED = ',status=~"5..|422"'
_NOT_FAILED = ',status!~"5..|422"'
#: name -> (PromQL template, what it measures). A ratio is NaN (no data, Inconclusive) without traffic.
BUILTINS: dict[str, tuple[str, str]] = {
    "success-rate": (f"(sum({_rate(REQUESTS, _NOT_FAILED)}) or vector(0)) / sum({_rate(REQUESTS)})",
                     "share of requests answered neither 5xx nor 422 (0..1)"),
    "error-rate": (f"(sum({_rate(REQUESTS, _FAILED)}) or vector(0)) / sum({_rate(REQUESTS)})",
                   "share of requests answered 5xx or 422 (0..1)"),
    "request-rate": (f"sum({_rate(REQUESTS)})", "requests per second"),
    "latency-p50": (_quantile("0.5"), "median server-side request latency in seconds"),
    "latency-p90": (_quantile("0.9"), "90th percentile server-side request latency in seconds"),
    "latency-p99": (_quantile("0.99"), "99th percentile server-side request latency in seconds"),
}
NAMES = tuple(BUILTINS)
#: the built-ins that are a quantile of the request-duration histogram, and which quantile
QUANTILES: dict[str, float] = {"latency-p50": 0.5, "latency-p90": 0.9, "latency-p99": 0.99}
#: `quantileTest.method` values: a significance test on the bucket counts, or the point estimates compared
METHODS = ("binomial", "estimate")
DEFAULT_ALPHA = 0.05


class UnknownBuiltin(ValueError):
    """A `builtin` this operator does not know (the CRD's enum rejects it; an older CRD might not)."""


def builtin_query(name: str) -> str:
    try:
        return BUILTINS[name][0]
    except KeyError:
        raise UnknownBuiltin(f"unknown built-in analysis metric {name!r} (known: {', '.join(NAMES)})") from None


def query_of(metric: Mapping[str, Any]) -> str:
    """The PromQL template of an analysis metric: its own `query`, else its `builtin`'s."""
    query = metric.get("query")
    if query:
        return str(query)
    if metric.get("builtin"):
        return builtin_query(str(metric["builtin"]))
    raise UnknownBuiltin(f"analysis metric {metric.get('name')!r} has neither query nor builtin")


def quantile_test_of(metric: Mapping[str, Any]) -> tuple[float, float] | None:
    """(q, alpha) when the metric's `max` / `maxRatio` bounds are judged by the binomial test: a built-in
    latency quantile (no custom `query` of its own) whose `quantileTest.method` is binomial or unset. None for
    `method: estimate` and for every other metric (their point estimates are compared)."""
    spec = metric.get("quantileTest") or {}
    builtin = str(metric.get("builtin") or "")
    if metric.get("query") or metric.get("quality") or builtin not in QUANTILES:
        return None
    if spec.get("method", "binomial") != "binomial":
        return None
    return QUANTILES[builtin], float(spec.get("alpha", DEFAULT_ALPHA))


def quantile_test_problems(metric: Mapping[str, Any]) -> list[str]:
    """What is wrong with a metric's `quantileTest` (the CRD's CEL rules say the same; an older CRD might not)."""
    spec = metric.get("quantileTest")
    if spec is None:
        return []
    field = f"spec.rollout.analysis.metrics[{metric.get('name')}].quantileTest"
    if not isinstance(spec, Mapping):
        return [f"{field}: must be an object (method, alpha)"]
    quantile = (not metric.get("query") and not metric.get("quality")
                and str(metric.get("builtin") or "") in QUANTILES)
    method = spec.get("method", "binomial" if quantile else "estimate")  # the default depends on the metric
    problems = []
    if method not in METHODS:
        problems.append(f"{field}.method: {method!r} is not one of {', '.join(METHODS)}")
    if method == "binomial" and not quantile:
        problems.append(f"{field}.method: binomial tests a latency quantile on its histogram buckets, so it applies "
                        f"to builtin {', '.join(QUANTILES)} only (a custom query or another metric has no histogram "
                        "the operator knows); use method estimate or remove quantileTest")
    if "alpha" in spec:
        alpha = spec["alpha"]
        if method != "binomial":
            problems.append(f"{field}.alpha: applies to method binomial only")
        elif isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 0.5:
            problems.append(f"{field}.alpha: {alpha!r} must be a number in (0, 0.5]")
    return problems
