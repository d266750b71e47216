"""Review M12: a dependency outage pauses work instead of hammering the dependency (a circuit breaker per
MLflow, Prometheus and webhook host), and the pause is visible in a status condition."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from modelops.adapters.breaker import Breaker, CircuitOpen, dependency_of
from modelops.adapters.notify import Notifier, NotifyError
from modelops.adapters.prometheus import Prometheus
from modelops.adapters.registry import MlflowRegistry, RegistryError
from modelops.controller.budget import Budget
from modelops.controller.clients import DEPENDENCIES_CONDITION
from modelops.decide.kserve_status import IsvcState
from modelops.handlers import modeldeployment as md
from tests.unit.controller.fakes import FakeKube, make_runtime

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Down:
    """A transport that counts requests and refuses them while `down` (or answers `status`)."""

    def __init__(self, status: int | None = None) -> None:
        self.requests = 0
        self.down = True
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.down:
            if self.status is not None:
                return httpx.Response(self.status, text="unavailable")
            raise httpx.ConnectError("connection refused", request=request)
        if "mlflow" in str(request.url):
            return httpx.Response(200, json={"model_version": {"name": "churn", "version": "1"}})
        return httpx.Response(200, json={"status": "success",
                                         "data": {"resultType": "vector", "result": [{"value": [0, "0.5"]}]}})


def test_breaker_opens_after_consecutive_outages_lets_one_trial_through_and_backs_off() -> None:
    clock = Clock()
    b = Breaker(threshold=3, cooldown=10, max_cooldown=40, clock=clock)
    for _ in range(2):
        b.before("http://p:9090")
        b.failure("http://p:9090")
    b.success("http://p:9090")  # an answer resets the count
    for _ in range(3):
        b.before("http://p:9090")
        b.failure("http://p:9090")
    with pytest.raises(CircuitOpen) as err:
        b.before("http://p:9090")
    assert "circuit open" in str(err.value) and b.open_circuits() == ["http://p:9090"]
    b.before("http://other:9090")  # per dependency
    clock.t += 10
    b.before("http://p:9090")  # half-open: one trial
    with pytest.raises(CircuitOpen):
        b.before("http://p:9090")  # ... and only one
    b.failure("http://p:9090")  # the trial failed: open for twice as long
    clock.t += 19
    with pytest.raises(CircuitOpen):
        b.before("http://p:9090")
    clock.t += 1
    b.before("http://p:9090")
    b.success("http://p:9090")
    assert b.open_circuits() == []
    b.before("http://p:9090")


def test_dependency_key_never_carries_a_path_or_credentials() -> None:
    assert dependency_of("https://hooks.slack.com/services/T0/B0/SECRET") == "https://hooks.slack.com"
    assert dependency_of("http://user:pw@mlflow.mlops.svc:5000/x?token=1") == "http://mlflow.mlops.svc:5000"


def test_an_unreachable_prometheus_is_asked_three_times_not_forty() -> None:
    """20 metrics x 2 sides against a refusing Prometheus: old code made 40 requests every analysis (each up
    to the timeout against a black hole); now the breaker opens after 3 and the rest are errors at once,
    so the analysis holds (Error), never passes."""
    down = Down()
    rt, _, _, _ = make_runtime()
    prom = Prometheus("http://prometheus.mon.svc:9090", transport=httpx.MockTransport(down), breaker=rt.clients.breaker)
    rt.clients.prometheis.put("http://prometheus.mon.svc:9090", prom)
    metrics = [{"name": f"m{i}", "query": f"q{i}", "thresholdRange": {"max": 1}} for i in range(20)]
    spec = {"rollout": {"analysis": {"metrics": metrics, "interval": "30s",
                                     "prometheusUrl": "http://prometheus.mon.svc:9090"}}}
    checks = md.run_analysis(rt, spec, "ns", "churn", IsvcState(), Budget(30))
    assert down.requests == 3
    assert len(checks) == 20 and all(c.result == "Error" for c in checks)
    assert all("unreachable" in c.message for c in checks) and "circuit open" in checks[-1].message
    again = md.run_analysis(rt, spec, "ns", "churn", IsvcState(), Budget(30))
    assert down.requests == 3 and all(c.result == "Error" for c in again)  # the next pass does not hammer it


def test_an_mlflow_answering_5xx_opens_its_breaker_and_a_4xx_does_not() -> None:
    clock = Clock()
    breaker = Breaker(clock=clock)
    down = Down(status=503)
    reg = MlflowRegistry("http://mlflow.mlops.svc:5000", transport=httpx.MockTransport(down), breaker=breaker)
    for _ in range(3):
        with pytest.raises(RegistryError):
            reg.get_version("churn", "1")
    with pytest.raises(RegistryError) as err:
        reg.get_version("churn", "1")
    assert err.value.reason == "RegistryUnreachable" and "circuit open" in str(err.value) and down.requests == 3
    clock.t += breaker.cooldown
    down.down = False
    assert reg.get_version("churn", "1") is not None and not breaker.is_open(reg.dependency)
    bad_request = Down(status=400)  # a refused request is an answer: the server is up
    reg2 = MlflowRegistry("http://mlflow2.mlops.svc:5000", transport=httpx.MockTransport(bad_request), breaker=breaker)
    for _ in range(5):
        with pytest.raises(RegistryError) as err:
            reg2.get_version("churn", "1")
        assert err.value.reason == "RegistryError"
    assert bad_request.requests == 5


def test_a_failing_webhook_host_is_not_posted_to_while_open_and_the_error_names_no_host() -> None:
    down = Down()
    n = Notifier(transport=httpx.MockTransport(down), breaker=Breaker())
    url = "https://hooks.slack.com/services/T000/B000/SECRETTOKEN"
    for _ in range(6):
        with pytest.raises(NotifyError) as err:
            n.post_json(url, {"text": "x"})
    assert down.requests == 3
    assert "circuit open" in str(err.value) and "slack" not in str(err.value) and "SECRET" not in str(err.value)


def _deployment(kube: FakeKube, **spec: Any) -> None:
    kube.put("modeldeployments", {"apiVersion": "modelops.dev/v1alpha1", "kind": "ModelDeployment",
                                  "metadata": {"name": "churn", "namespace": "ns", "generation": 1},
                                  "spec": {"model": {"name": "churn"}, **spec}, "status": {}})


def test_an_mlflow_outage_pauses_the_object_with_a_condition_and_clears_when_it_answers() -> None:
    clock = Clock()
    down = Down()
    tracking = "http://mlflow.mlops.svc:5000"
    made: list[MlflowRegistry] = []
    rt, kube, _, _ = make_runtime()
    rt.clients.breaker = Breaker(clock=clock)

    def factory(uri: str, **kw: Any) -> MlflowRegistry:
        made.append(MlflowRegistry(uri, transport=httpx.MockTransport(down), breaker=kw["breaker"]))
        return made[-1]

    rt.clients._registry_factory = factory
    _deployment(kube, registry={"trackingUri": tracking})
    for _ in range(4):
        md.reconcile(rt, "ns", "churn", Budget(30))
    st = kube.obj("modeldeployments", "ns", "churn")["status"]
    cond = next(c for c in st["conditions"] if c["type"] == DEPENDENCIES_CONDITION)
    assert (cond["status"], cond["reason"]) == ("False", "CircuitOpen")
    assert tracking in cond["message"] and "stable" not in st  # nothing guessed, nothing served
    asked = down.requests
    assert asked == 3  # the fourth reconcile did not ask a dead MLflow
    clock.t += rt.clients.breaker.cooldown
    down.down = False
    md.reconcile(rt, "ns", "churn", Budget(30))
    st = kube.obj("modeldeployments", "ns", "churn")["status"]
    cond = next(c for c in st["conditions"] if c["type"] == DEPENDENCIES_CONDITION)
    assert (cond["status"], cond["reason"]) == ("True", "Available")


def test_no_condition_while_every_dependency_answers() -> None:
    rt, kube, _, _ = make_runtime()
    _deployment(kube)
    md.reconcile(rt, "ns", "churn", Budget(30))
    st = kube.obj("modeldeployments", "ns", "churn")["status"]
    assert all(c["type"] != DEPENDENCIES_CONDITION for c in st.get("conditions") or [])


def test_a_restarted_operator_keeps_an_outage_it_has_not_seen_end() -> None:
    """CI stop 23: a status written before a SIGKILL said MLflow's breaker was open; the restarted process
    (fresh breaker, MLflow still down but asked fewer than `threshold` times) flipped the condition to True and
    back. It now keeps False until MLflow answers this process."""
    clock = Clock()
    down = Down()
    tracking = "http://mlflow.mlops.svc:5000"

    def runtime() -> tuple[Any, FakeKube]:
        rt, kube, _, _ = make_runtime()
        rt.clients.breaker = Breaker(clock=clock)
        rt.clients._registry_factory = lambda uri, **kw: MlflowRegistry(uri, transport=httpx.MockTransport(down),
                                                                         breaker=kw["breaker"])
        return rt, kube

    rt, kube = runtime()
    _deployment(kube, registry={"trackingUri": tracking})
    for _ in range(4):
        md.reconcile(rt, "ns", "churn", Budget(30))
    before = next(c for c in kube.obj("modeldeployments", "ns", "churn")["status"]["conditions"]
                  if c["type"] == DEPENDENCIES_CONDITION)
    assert before["status"] == "False"
    rt2, kube2 = runtime()  # the restart: a new process, the same stored object
    kube2.put("modeldeployments", kube.obj("modeldeployments", "ns", "churn"))
    md.reconcile(rt2, "ns", "churn", Budget(30))  # one more failure: below the threshold, breaker closed
    after = next(c for c in kube2.obj("modeldeployments", "ns", "churn")["status"]["conditions"]
                 if c["type"] == DEPENDENCIES_CONDITION)
    assert after == before
    down.down = False
    md.reconcile(rt2, "ns", "churn", Budget(30))
    cond = next(c for c in kube2.obj("modeldeployments", "ns", "churn")["status"]["conditions"]
                if c["type"] == DEPENDENCIES_CONDITION)
    assert (cond["status"], cond["reason"]) == ("True", "Available")
