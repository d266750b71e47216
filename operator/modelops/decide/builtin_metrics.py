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
