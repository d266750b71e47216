"""The SLO gate against a real Prometheus (issue 14): the chart's `modelops.slo` rules evaluated by Prometheus
over model-server series with 10% injected 5xx on the canary; the fast-burn alert fires, the operator's gate
query reads it and the rollout holds with BudgetExhausted; after the errors stop the alert clears and the
rollout advances by itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from modelops.controller.metrics import OperatorMetrics
from modelops.decide.rollout import tick
from modelops.decide.slo import slos_of
from modelops.handlers.modeldeployment import slo_budget
from tests.charts.chart import render
from tests.fixtures.prometheus import Prometheus
from tests.unit.controller.fakes import FakeKube, budget
from tests.unit.rollout.test_tick import PASS, T0, V2, cond, obs, rolling, spec

pytestmark = pytest.mark.integration
SLOS = [{"name": "availability", "objective": 99.9}]  # 30 days: the fast burn pages at 1.44% errors


class Traffic:
    """The model servers' request counters (label convention: namespace, isvc, side), 100 requests per tick,
    half on the canary; `errors` is the canary's share of 500s."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("modelops_serving_requests_total", "requests",
                                ("namespace", "isvc", "side", "status"), registry=self.registry)
        self.errors = 0.0
        self._stop = threading.Event()
        self.server, _ = start_http_server(0, "127.0.0.1", registry=self.registry)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            bad = round(50 * self.errors)
            self.requests.labels("ml", "churn", "stable", "200").inc(50)
            self.requests.labels("ml", "churn", "canary", "200").inc(50 - bad)
            self.requests.labels("ml", "churn", "canary", "500").inc(bad)

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()


@pytest.fixture
def traffic() -> Iterator[Traffic]:
    t = Traffic()
    yield t
    t.stop()


def test_injected_5xx_on_the_canary_exhausts_the_budget_holds_the_rollout_and_it_resumes(
        prometheus: Callable[..., Prometheus], traffic: Traffic) -> None:
    from modelops.controller.clients import Clients
    from modelops.controller.runtime import Runtime
    from modelops.settings import OperatorSettings

    operator = OperatorMetrics()
    operator.slos("ml", "churn", slos_of({"slos": SLOS}))
    op_port = operator.serve(0, "127.0.0.1")
    groups = [g for g in next(o for o in render(api_versions=["monitoring.coreos.com/v1"])
                              if o["kind"] == "PrometheusRule")["spec"]["groups"] if g["name"] == "modelops.slo"]
    prom = prometheus([f"127.0.0.1:{traffic.server.server_port}", f"127.0.0.1:{op_port}"], scrape_interval="1s",
                      rule_groups=groups, honor_labels=True)
    kube = FakeKube()
    rt = Runtime(OperatorSettings(prometheus_url=prom.url), kube=kube,  # type: ignore[arg-type]
                 clients=Clients(kube))  # type: ignore[arg-type]
    the_spec: dict[str, Any] = {**spec(), "slos": SLOS}
    firing = 'count(ALERTS{alertname="ModelopsSLOFastBurn",alertstate="firing",namespace="ml",isvc="churn"})'
    try:
        prom.wait_for('modelops:slo_errors:ratio_rate5m{slo="availability"}', lambda v: v is not None, 60)
        assert slo_budget(rt, the_spec, "ml", "churn", budget()).state == "ok"  # type: ignore[union-attr]

        traffic.errors = 0.10  # 10% of the canary's answers are 500 (5% of all: 3.5x the fast-burn threshold)
        prom.wait_for(firing, lambda v: v == 1, 90)
        state = slo_budget(rt, the_spec, "ml", "churn", budget())
        assert state is not None and state.state == "exhausted", state
        st = rolling(step=0, passed=1, lastResult="Pass")
        due = T0 + timedelta(seconds=30)
        held = tick(the_spec, st, obs(candidate=V2, checks=PASS, budget=state), due).status
        assert held["rollout"]["weight"] == 10 and cond(held, "Progressing")["reason"] == "BudgetExhausted"
        assert cond(held, "BudgetExhausted")["status"] == "True"

        traffic.errors = 0.0  # recovery: the short (5m) window falls below the threshold first
        t0 = time.monotonic()
        prom.wait_for(firing, lambda v: v is None, 240)
        recovered = time.monotonic() - t0
        state = slo_budget(rt, the_spec, "ml", "churn", budget())
        assert state is not None and state.state == "ok", state
        resumed = tick(the_spec, held, obs(candidate=V2, checks=PASS, budget=state), due + timedelta(seconds=5))
        assert resumed.status["rollout"]["weight"] == 50 and cond(resumed.status, "BudgetExhausted")["status"] == "False"
        print(f"fast burn cleared {recovered:.0f}s after the errors stopped")
    finally:
        operator.shutdown()
        rt.pool.shutdown(wait=False)
