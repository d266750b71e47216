"""The built-in latency-p99's binomial test against a real Prometheus (issue 14): the model server's request-
duration histogram (its own bucket bounds) scraped by Prometheus, and the operator's `run_analysis` sending the
sample's check (`max: 0.05`, `maxRatio: 1.5`, unchanged) with its bucket queries through the real adapter.

A healthy canary with 2 slow requests among 120 passes, though its p99 estimate is ~3x the stable's (the point
comparison, `quantileTest: {method: estimate}`, fails the same data); a canary with 30% of its requests at 80 ms
fails. The counts are counted, not extrapolated (each counter now minus a window ago): exactly the requests
made, also for a series that appeared within the window (a canary Pod that just started).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, start_http_server

from modelops.adapters.prometheus import Prometheus as PromAdapter
from modelops.decide.analysis import render
from modelops.decide.builtin_metrics import BUCKETS
from modelops.handlers.modeldeployment import run_analysis
from modelops.serving.metrics import LATENCY_BUCKETS
from tests.fixtures.prometheus import Prometheus
from tests.unit.controller.fakes import FakeKube, budget

pytestmark = pytest.mark.integration
P99 = {"name": "latency-p99", "builtin": "latency-p99", "thresholdRange": {"max": 0.05}, "baseline": {"maxRatio": 1.5}}


def spread(n: int, lo: float, hi: float) -> list[float]:
    return [lo + (hi - lo) * (i + 0.5) / n for i in range(n)]


def spec(metric: dict[str, Any]) -> dict[str, Any]:
    return {"rollout": {"analysis": {"interval": "15s", "metrics": [metric]}}}


def test_the_sample_latency_check_tests_bucket_counts_from_a_real_prometheus(
        prometheus: Callable[..., Prometheus]) -> None:
    from modelops.controller.clients import Clients
    from modelops.controller.runtime import Runtime
    from modelops.settings import OperatorSettings

    registry = CollectorRegistry()
    latency = Histogram("modelops_serving_request_duration_seconds", "latency", ("namespace", "isvc", "version"),
                        buckets=LATENCY_BUCKETS, registry=registry)
    server, _ = start_http_server(0, "127.0.0.1", registry=registry)
    sides = {v: latency.labels("ml", "churn", v) for v in ("2", "3", "4")}  # zero-valued series from the start
    prom = prometheus([f"127.0.0.1:{server.server_port}"], scrape_interval="1s")
    kube = FakeKube()
    rt = Runtime(OperatorSettings(prometheus_url=prom.url), kube=kube,  # type: ignore[arg-type]
                 clients=Clients(kube))  # type: ignore[arg-type]
    try:
        count = 'sum(modelops_serving_request_duration_seconds_count{{isvc="churn",version="{v}"}})'
        # zero samples over the window before the requests, as for a canary that has served a while
        aged = 'count_over_time(modelops_serving_request_duration_seconds_count{isvc="churn",version="4"}[15s])'
        prom.wait_for(aged, lambda v: v is not None and v >= 12, 60)
        for x in [*spread(356, 0.004, 0.010), 0.011, 0.012, 0.013, 0.014]:  # stable v2: 360 requests, p99 ~10 ms
            sides["2"].observe(x)
        for x in [*spread(118, 0.004, 0.010), 0.030, 0.045]:  # healthy canary v3: 2 slow of 120
            sides["3"].observe(x)
        for x in [*spread(84, 0.004, 0.010), *[0.08] * 36]:  # bad canary v4: 30% at 80 ms
            sides["4"].observe(x)
        born = latency.labels("ml", "churn", "5")  # a series that appears within the window: no value a window ago
        for x in [*spread(118, 0.004, 0.010), 0.030, 0.045]:
            born.observe(x)
        prom.wait_for(count.format(v="4"), lambda v: v == 120, 30)
        prom.wait_for(count.format(v="2"), lambda v: v == 360, 30)
        prom.wait_for(count.format(v="5"), lambda v: v == 120, 30)

        # the adapter reads the bucket vector as Prometheus answers it (le "0.0001" ... "+Inf")
        ctx = {"namespace": "ml", "name": "churn", "version": "3", "interval": "15s"}
        vector = PromAdapter(prom.url).query_buckets(render(BUCKETS, ctx))
        assert vector.has_data, vector
        bounds = [b for b, _ in vector.counts]
        assert bounds[-1] == float("inf") and bounds[:-1] == sorted(LATENCY_BUCKETS)
        n = vector.counts[-1][1]
        assert n == 120, vector.counts  # the requests made: counted, not extrapolated as increase() would
        assert dict(vector.counts)[0.025] == 118
        born_vector = PromAdapter(prom.url).query_buckets(render(BUCKETS, {**ctx, "version": "5"}))
        assert born_vector.counts[-1][1] == 120 and dict(born_vector.counts)[0.025] == 118, born_vector.counts

        healthy = {"canary": {"version": "3"}, "stable": {"version": "2"}}
        (passed,) = run_analysis(rt, spec(P99), "ml", "churn", None, budget(), healthy)
        assert passed.result == "Pass", passed
        assert passed.value is not None and passed.baseline is not None and passed.value / passed.baseline > 1.5
        assert "canary requests slower than maxRatio 1.5 x stable p99" in passed.message, passed.message
        (point,) = run_analysis(rt, spec({**P99, "quantileTest": {"method": "estimate"}}), "ml", "churn", None,
                                budget(), healthy)
        assert point.result == "Fail" and "> maxRatio 1.5" in point.message, point

        bad = {"canary": {"version": "4"}, "stable": {"version": "2"}}
        (failed,) = run_analysis(rt, spec(P99), "ml", "churn", None, budget(), bad)
        assert failed.result == "Fail" and "slower than max 0.05 s" in failed.message, failed
        print(f"healthy, estimates: {point.message}\nhealthy, tested: {passed.message}\nbad: {failed.message}")

        nobody = {"canary": {"version": "9"}, "stable": {"version": "2"}}  # a canary without traffic
        (check,) = run_analysis(rt, spec(P99), "ml", "churn", None, budget(), nobody)
        assert check.result == "Inconclusive", check
    finally:
        server.shutdown()
        rt.pool.shutdown(wait=False)
