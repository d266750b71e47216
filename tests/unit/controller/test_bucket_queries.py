"""The bucket vectors a latency quantile's binomial test reads (issue 14): the adapter decodes Prometheus' `le`
vector and maps its failures like `query`'s; `run_analysis` asks for them within the reconcile's budget."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from modelops.adapters.prometheus import Prometheus
from modelops.api.types import Buckets, IsvcState, Sample
from modelops.controller.budget import Budget
from modelops.handlers import modeldeployment as md
from tests.unit.controller.fakes import make_runtime

pytestmark = pytest.mark.unit


def _vector(*series: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": m, "value": [1.0, v]} for m, v in series]}}


def _prom(status: int, body: Any) -> Prometheus:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Prometheus("http://p", transport=httpx.MockTransport(lambda req: httpx.Response(status, content=content)))


def test_a_bucket_vector_is_read_by_le_sorted_with_equal_bounds_merged() -> None:
    body = _vector(({"le": "+Inf"}, "120.4"), ({"le": "0.05"}, "119"), ({"le": "0.01"}, "100.5"),
                   ({"le": "1"}, "120"), ({"le": "1.0"}, "0.4"))
    got = _prom(200, body).query_buckets("sum by (le) (increase(x_bucket[30s]))")
    assert got.has_data and got.error is None
    assert got.counts == ((0.01, 100.5), (0.05, 119.0), (1.0, 120.4), (math.inf, 120.4))
    assert _prom(200, _vector()).query_buckets("q") == Buckets()  # empty vector: no data, not an error


@pytest.mark.parametrize(("status", "body", "reason", "words"), [
    (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}, "QueryFailed", "parse error"),
    (200, _vector(({"version": "3"}, "5")), "QueryFailed", "aggregate it by le"),
    (200, _vector(({"le": "0.1"}, "many")), "QueryFailed", "aggregate it by le"),
    (200, {"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}}, "QueryFailed", "scalar"),
    (200, b"<html>proxy</html>", "QueryFailed", "no JSON"),
    (200, {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"le": "1"}}]}},
     "QueryFailed", "unexpected document"),
])
def test_odd_answers_are_bucket_errors_with_the_reasons_of_query(status: int, body: Any, reason: str,
                                                                 words: str) -> None:
    got = _prom(status, body).query_buckets("q")
    assert got.error is not None and got.reason == reason and words in got.error, got
    assert not got.has_data


def test_an_unreachable_prometheus_is_a_bucket_error() -> None:
    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    got = Prometheus("http://p", transport=httpx.MockTransport(refuse)).query_buckets("q")
    assert got.reason == "PrometheusUnreachable" and got.error is not None and "refused" in got.error


class BucketPrometheus:
    """Point estimates and bucket vectors by version label; records what it was asked, and how."""

    def __init__(self, estimates: dict[str, float], vectors: dict[str, Buckets]) -> None:
        self.estimates, self.vectors = estimates, vectors
        self.asked: list[tuple[str, str]] = []

    def query(self, promql: str, timeout: float | None = None) -> Sample:
        self.asked.append(("query", promql))
        return next((Sample(v) for key, v in self.estimates.items() if f'version="{key}"' in promql), Sample())

    def query_buckets(self, promql: str, timeout: float | None = None) -> Buckets:
        self.asked.append(("buckets", promql))
        return next((b for key, b in self.vectors.items() if f'version="{key}"' in promql), Buckets())


SPEC = {"rollout": {"analysis": {"interval": "30s", "metrics": [
    {"name": "latency-p99", "builtin": "latency-p99", "thresholdRange": {"max": 0.05}, "baseline": {"maxRatio": 1.5}}]}}}
STATUS = {"canary": {"version": "3"}, "stable": {"version": "2"}}
#: 120 canary requests, 2 of them at 30-50 ms (estimate p99 0.0302, 2.9x the stable's); 360 stable ones
CANARY = Buckets(((0.01, 118.0), (0.025, 118.0), (0.0315, 119.0), (0.05, 120.0), (math.inf, 120.0)))
STABLE = Buckets(((0.01, 356.0), (0.0125, 358.0), (0.016, 360.0), (math.inf, 360.0)))


def test_run_analysis_reads_both_sides_buckets_and_passes_a_healthy_canary() -> None:
    prom = BucketPrometheus({"3": 0.0302, "2": 0.0105}, {"3": CANARY, "2": STABLE})
    rt, _, _, _ = make_runtime(prometheus=prom)  # type: ignore[arg-type]
    (check,) = md.run_analysis(rt, SPEC, "ns", "churn", IsvcState(), Budget(5), STATUS)
    assert check.result == "Pass", check
    assert check.value == 0.0302 and check.baseline == 0.0105
    assert "2 of 120 canary requests slower than maxRatio 1.5" in check.message
    kinds = [(kind, 'version="3"' in q) for kind, q in prom.asked]
    assert kinds == [("query", True), ("query", False), ("buckets", True), ("buckets", False)]
    assert all("modelops_serving_request_duration_seconds_bucket{" in q and " offset " in q
               for kind, q in prom.asked if kind == "buckets")


def test_bucket_queries_past_the_budget_are_errors_never_a_pass() -> None:
    """The two estimates spend the budget (3 s each of 5): the bucket queries are not sent, and the check is an
    Error, though the estimates alone would have been judged."""
    now = [0.0]

    class Slow(BucketPrometheus):
        def query(self, promql: str, timeout: float | None = None) -> Sample:
            now[0] += 3.0
            return super().query(promql, timeout)

    prom = Slow({"3": 0.0302, "2": 0.0105}, {"3": CANARY, "2": STABLE})
    rt, _, _, _ = make_runtime(prometheus=prom)  # type: ignore[arg-type]
    (check,) = md.run_analysis(rt, SPEC, "ns", "churn", IsvcState(), Budget(5, clock=lambda: now[0]), STATUS)
    assert check.result == "Error" and "reconcile time budget of 5s spent" in check.message
    assert [kind for kind, _ in prom.asked] == ["query", "query"]


def test_a_failed_bucket_query_is_an_analysis_error() -> None:
    down = Buckets(reason="PrometheusUnreachable", message="timeout", error="timeout")
    prom = BucketPrometheus({"3": 0.0302, "2": 0.0105}, {"3": down, "2": STABLE})
    rt, _, _, _ = make_runtime(prometheus=prom)  # type: ignore[arg-type]
    (check,) = md.run_analysis(rt, SPEC, "ns", "churn", IsvcState(), Budget(5), STATUS)
    assert check.result == "Error" and "canary bucket query failed: timeout" in check.message
