"""Adapters never crash a reconcile on odd answers (audit M5), MLflow credentials expire and are evicted on
401 (L2), webhook URLs stay out of errors (L3), the scheduler acts only through its gate (L8), and one
reconcile is bounded by its budget (M12)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from modelops.adapters.notify import Notifier, NotifyError, Webhook
from modelops.adapters.prometheus import Prometheus
from modelops.adapters.registry import MlflowRegistry, RegistryError
from modelops.api.types import IsvcState, Sample
from modelops.controller.budget import Budget
from modelops.controller.clients import Clients, Lru
from modelops.controller.scheduler import Scheduler
from modelops.handlers import modeldeployment as md
from tests.unit.controller.fakes import FakeKube, make_runtime

pytestmark = pytest.mark.unit


def _registry(handler: Any) -> MlflowRegistry:
    return MlflowRegistry("http://mlflow", transport=httpx.MockTransport(handler))


def test_registry_answers_that_are_not_mlflow_json_are_registry_errors() -> None:
    html = _registry(lambda req: httpx.Response(200, text="<html>login</html>",
                                                headers={"content-type": "text/html"}))
    with pytest.raises(RegistryError) as err:
        html.get_alias("churn", "champion")
    assert err.value.reason == "RegistryBadAnswer"
    for body in ({"model_version": "v1"}, {"model_version": {"tags": "x"}}, [1, 2]):
        odd = _registry(lambda req, b=body: httpx.Response(200, json=b))
        with pytest.raises(RegistryError):
            odd.get_version("churn", "1")


def test_prometheus_answers_of_any_shape_become_samples_with_errors() -> None:
    answers: dict[str, Any] = {
        "novalue": {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
        "text": {"status": "success", "data": {"resultType": "vector", "result": [{"value": [0, "abc"]}]}},
        "list": [1, 2, 3],
        "scalar": {"status": "success", "data": {"resultType": "scalar", "result": "x"}},
    }

    def handler(req: httpx.Request) -> httpx.Response:
        q = req.url.params["query"]
        if q == "html":
            return httpx.Response(200, text="<html/>")
        return httpx.Response(200, json=answers[q])

    prom = Prometheus("http://p", transport=httpx.MockTransport(handler))
    for q in ("novalue", "text", "list", "scalar", "html"):
        sample = prom.query(q)
        assert sample.error and sample.reason == "QueryFailed" and not sample.has_value, (q, sample)
    assert prom.query_value("novalue").reason == "QueryFailed"


def test_webhook_errors_never_contain_the_url() -> None:
    url = "https://hooks.slack.com/services/T000/B000/SECRETTOKEN"
    n = Notifier(transport=httpx.MockTransport(lambda req: httpx.Response(404)))
    with pytest.raises(NotifyError) as err:
        n.send([Webhook(url)], "Promoted", "m", {})
    assert "SECRETTOKEN" not in str(err.value) and "hooks.slack.com" not in str(err.value)

    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {req.url}", request=req)

    with pytest.raises(NotifyError) as err:
        Notifier(transport=httpx.MockTransport(refuse)).post_json(url, {})
    assert "SECRETTOKEN" not in str(err.value)


def test_mlflow_credentials_expire_and_a_401_evicts_the_client() -> None:
    kube = FakeKube()
    kube.put("secrets", {"metadata": {"name": "creds", "namespace": "ns"},
                         "data": {"MLFLOW_TRACKING_USERNAME": "u1", "MLFLOW_TRACKING_PASSWORD": "p"}})
    made: list[str | None] = []

    def factory(uri: str, **kw: Any) -> Any:
        made.append(kw["username"])
        return object()

    clients = Clients(kube, registry_factory=factory)  # type: ignore[arg-type]
    first = clients.registry("http://mlflow", "ns", "creds")
    assert clients.registry("http://mlflow", "ns", "creds") is first and made == ["u1"]
    kube.objects[("secrets", "ns", "creds")]["data"]["MLFLOW_TRACKING_USERNAME"] = "u2"  # rotated
    clients.registry_failed("http://mlflow", "ns", "creds", RegistryError("RegistryUnreachable", "down"))
    assert clients.registry("http://mlflow", "ns", "creds") is first  # only an auth failure evicts
    clients.registry_failed("http://mlflow", "ns", "creds", RegistryError("RegistryUnauthorized", "401"))
    assert clients.registry("http://mlflow", "ns", "creds") is not first and made == ["u1", "u2"]

    now = [0.0]
    lru: Lru[str, int] = Lru(limit=2, ttl=300, clock=lambda: now[0])
    lru.put("a", 1)
    now[0] = 299
    assert lru.get("a") == 1
    now[0] = 301
    assert lru.get("a") is None  # expired: the Secret is read again
    for key in "abc":
        lru.put(key, 0)
    assert len(lru) == 2  # bounded


def test_the_scheduler_starts_nothing_while_its_gate_is_closed() -> None:
    runs: list[str] = []
    leader = [False]

    async def run(ns: str, name: str) -> float:
        runs.append(name)
        return 3600.0

    async def main() -> None:
        s = Scheduler(run, concurrency=4, gate=lambda: leader[0])
        task = asyncio.create_task(s.run_forever())
        s.touch(("ns", "a"))
        await asyncio.sleep(0.2)
        assert runs == []  # not the leader: due, but not run
        leader[0] = True
        s.open_gate()
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(main())
    assert runs == ["a"]


def test_one_reconciles_analysis_is_bounded_by_its_budget() -> None:
    class SlowPrometheus:
        def __init__(self) -> None:
            self.timeouts: list[float] = []

        def query(self, promql: str, timeout: float | None = None) -> Sample:
            self.timeouts.append(timeout or 0)
            time.sleep(min(timeout or 5.0, 0.2))  # a black-holed Prometheus answers nothing within the timeout
            return Sample(None, "PrometheusUnreachable", "timeout", error="timeout")

    slow = SlowPrometheus()
    rt, _, _, _ = make_runtime(prometheus=slow)  # type: ignore[arg-type]
    metrics = [{"name": f"m{i}", "query": f"q{i}", "thresholdRange": {"max": 1}} for i in range(20)]
    spec = {"rollout": {"analysis": {"metrics": metrics, "interval": "30s"}}}
    started = time.monotonic()
    checks = md.run_analysis(rt, spec, "ns", "churn", IsvcState(), Budget(0.5))
    elapsed = time.monotonic() - started
    assert elapsed < 1.2, elapsed  # old code: 40 queries x 5 s
    assert len(checks) == 20 and all(c.result == "Error" for c in checks)
    assert len(slow.timeouts) < 10 and all(t <= 0.5 for t in slow.timeouts)


def test_a_failed_reconcile_is_reported_in_status_and_cleared_when_it_works_again() -> None:
    from modelops.controller.runtime import Kind

    rt, kube, _, _ = make_runtime()
    kube.put("modeldeployments", {"apiVersion": "modelops.dev/v1alpha1", "kind": "ModelDeployment",
                                  "metadata": {"name": "m", "namespace": "ns"}, "spec": {}, "status": {}})
    fail = [True]

    def reconcile(_rt: Any, ns: str, name: str, _b: Budget) -> float:
        if fail[0]:
            raise ValueError("a bug met an odd object")
        return 30.0

    kind = Kind("ModelDeployment", reconcile, md.report_error)

    def reconciled() -> dict[str, Any]:
        conds = kube.obj("modeldeployments", "ns", "m")["status"].get("conditions") or []
        return next((c for c in conds if c["type"] == "Reconciled"), {})

    async def once() -> float | None:
        result = await rt.reconcile_async(kind, "ns", "m")
        await asyncio.sleep(0.1)  # the report runs on the pool
        return result

    assert asyncio.run(once()) == 10.0
    rt.pool.shutdown(wait=True)
    rt.pool = __import__("concurrent.futures").futures.ThreadPoolExecutor(2)
    assert reconciled()["status"] == "False" and "odd object" in reconciled()["message"]
    fail[0] = False
    assert asyncio.run(once()) == 30.0
    rt.pool.shutdown(wait=True)
    assert reconciled()["status"] == "True"
    assert rt.counters["reconcile_errors"] == rt.counters["errors_reported"] == 1


class RecordingPrometheus:
    """Answers each query from a table (by substring) and records the PromQL it was asked."""

    def __init__(self, answers: dict[str, Sample]) -> None:
        self.answers, self.asked = answers, []  # type: ignore[var-annotated]

    def query(self, promql: str, timeout: float | None = None) -> Sample:
        self.asked.append(promql)
        return next((s for key, s in self.answers.items() if key in promql), Sample())


def test_quality_analysis_queries_each_sides_mlflow_version() -> None:
    prom = RecordingPrometheus({'realised{model_namespace="ns",model="churn",version="7"': Sample(0.8),
                                'realised{model_namespace="ns",model="churn",version="6"': Sample(0.9),
                                "joined_labels": Sample(500)})
    rt, _, _, _ = make_runtime(prometheus=prom)  # type: ignore[arg-type]
    spec = {"rollout": {"analysis": {"interval": "30s", "metrics": [
        {"name": "auc", "quality": {"metric": "auc", "minLabels": 100, "maxDrop": 0.02}}]}}}
    status = {"canary": {"version": "7"}, "stable": {"version": "6"}}
    (check,) = md.run_analysis(rt, spec, "ns", "churn", IsvcState(), Budget(5), status)
    assert check.result == "Fail" and check.value == 0.8 and check.baseline == 0.9
    assert sum('version="7"' in p for p in prom.asked) == 2 and sum('version="6"' in p for p in prom.asked) == 2


def test_performance_trigger_observes_the_busiest_version() -> None:
    from modelops.handlers import retrainschedule as rs

    prom = RecordingPrometheus({"topk": Sample(900.0, labels=(("version", "4"),)),
                                'realised{model_namespace="team",model="churn",version="4"': Sample(0.7),
                                'joined_labels{model_namespace="team",model="churn",version="4"': Sample(300)})
    rt, _, _, _ = make_runtime(prometheus=prom)  # type: ignore[arg-type]
    spec = {"triggers": {"performance": {"model": "churn", "namespace": "team", "metric": "auc", "threshold": 0.8}}}
    o = rs.observe_quality(rt, spec, "ns", Budget(5))
    assert (o.version, o.quality.value if o.quality else None, o.labels.value if o.labels else None) == ("4", 0.7, 300)
    assert len(prom.asked) == 3
    pinned = {"triggers": {"performance": {**spec["triggers"]["performance"], "version": "2", "source": "estimated",
                                           "metric": "accuracy"}}}
    prom.asked.clear()
    o = rs.observe_quality(rt, pinned, "ns", Budget(5))
    assert o.version == "2" and o.labels is None
    assert prom.asked == ['max(modelops_quality_estimated{model_namespace="team",model="churn",version="2",'
                          'metric="accuracy"})']
