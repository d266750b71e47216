"""The operator's own Prometheus metrics (issue 14, review M10): what a reconcile of each kind records, the
bounded labels, the series a deleted object leaves behind (none), and /metrics over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from modelops.adapters.registry import RegistryError
from modelops.api.types import Sample
from modelops.controller.metrics import OperatorMetrics
from modelops.controller.runtime import Kind
from modelops.controller.scheduler import Scheduler
from modelops.decide.analysis import Check
from modelops.handlers import modeldeployment as md
from modelops.handlers import retrainschedule as rs
from tests.unit.controller.fakes import FakePrometheus, budget, make_runtime
from tests.unit.controller.test_modeldeployment_runtime import deployment, registry
from tests.unit.controller.test_retrainschedule_runtime import schedule

pytestmark = pytest.mark.unit
MDL = {"namespace": "ns", "modeldeployment": "churn"}


def value(m: OperatorMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def series(m: OperatorMetrics, name: str) -> list[dict[str, str]]:
    return [s.labels for fam in m.registry.collect() for s in fam.samples if s.name == name]


def test_rollout_phase_weight_step_checks_promotions_and_rollbacks() -> None:
    m = OperatorMetrics()
    progressing = {"rollout": {"state": "Progressing", "weight": 10, "stepStartedAt": "2030-01-01T12:00:00.000000Z"}}
    m.rollout("ns", "churn", progressing, [Check("success-rate", "Pass", 1.0), Check("latency-p99", "Fail", 0.2)],
              ["RolloutStarted"])
    assert value(m, "modelops_rollout_phase", **MDL, phase="Progressing") == 1
    assert value(m, "modelops_rollout_phase", **MDL, phase="Stable") == 0
    assert value(m, "modelops_rollout_canary_weight", **MDL) == 10
    assert value(m, "modelops_rollout_step_started_timestamp_seconds", **MDL) == 1893499200.0
    assert value(m, "modelops_rollout_analysis_checks_total", **MDL, check="success-rate", result="Pass") == 1
    assert value(m, "modelops_rollout_analysis_checks_total", **MDL, check="latency-p99", result="Fail") == 1
    # present at 0 before the first event, so increase() in the alert sees the first rollback
    assert value(m, "modelops_rollout_rollbacks_total", **MDL) == 0
    assert value(m, "modelops_rollout_step", **MDL) == 1
    m.rollout("ns", "churn", {"rollout": {"state": "RollingBack", "weight": 0}}, None, ["RolledBack"])
    m.rollout("ns", "churn", {}, None, ["Promoted"])
    assert value(m, "modelops_rollout_rollbacks_total", **MDL) == 1
    assert value(m, "modelops_rollout_promotions_total", **MDL) == 1
    assert value(m, "modelops_rollout_phase", **MDL, phase="Stable") == 1
    assert value(m, "modelops_rollout_phase", **MDL, phase="RollingBack") == 0
    assert value(m, "modelops_rollout_canary_weight", **MDL) == 0
    assert value(m, "modelops_rollout_step_started_timestamp_seconds", **MDL) == 0
    assert value(m, "modelops_rollout_step", **MDL) == 0


def test_labels_are_bounded_and_a_deleted_object_leaves_no_series() -> None:
    m = OperatorMetrics()
    m.rollout("ns", "churn", {"rollout": {"state": "SomethingNew", "weight": 5}}, [Check("x", "Weird")], [])
    assert value(m, "modelops_rollout_phase", **MDL, phase="Other") is None  # phases: a closed set
    assert all(s["phase"] in ("Stable", "Progressing", "Paused", "AwaitingApproval", "RollingBack")
               for s in series(m, "modelops_rollout_phase"))
    assert value(m, "modelops_rollout_analysis_checks_total", **MDL, check="x", result="Other") == 1
    m.rollout("ns", "other", {}, None, ["Promoted"])
    m.forget("ModelDeployment", "ns", "churn")
    names = {s.get("modeldeployment") for fam in m.registry.collect() for s in (x.labels for x in fam.samples)}
    assert "churn" not in names and "other" in names


def test_retrain_runs_by_trigger_and_outcome_count_each_transition_once() -> None:
    m = OperatorMetrics()
    rsl = {"namespace": "ns", "retrainschedule": "nightly"}
    pending = {"runs": [{"id": "a", "trigger": "schedule", "state": "Pending"}]}
    m.retrain("ns", "nightly", {}, pending)
    running = {"runs": [{"id": "a", "trigger": "schedule", "state": "Running"}]}
    m.retrain("ns", "nightly", pending, running)
    done = {"runs": [{"id": "a", "trigger": "schedule", "state": "Succeeded"},
                     {"id": "b", "trigger": "drift", "state": "Pending"}]}
    m.retrain("ns", "nightly", running, done)
    m.retrain("ns", "nightly", done, done)  # an unchanged status counts nothing
    assert value(m, "modelops_retrain_runs_started_total", **rsl, trigger="schedule") == 1
    assert value(m, "modelops_retrain_runs_started_total", **rsl, trigger="drift") == 1
    assert value(m, "modelops_retrain_runs_total", **rsl, trigger="schedule", outcome="Succeeded") == 1
    later = {"runs": [{"id": "a", "trigger": "schedule", "state": "Succeeded"},
                      {"id": "b", "trigger": "drift", "state": "Failed"}]}
    m.retrain("ns", "nightly", done, later)
    assert value(m, "modelops_retrain_runs_total", **rsl, trigger="drift", outcome="Failed") == 1
    assert value(m, "modelops_retrain_runs_total", **rsl, trigger="schedule", outcome="Succeeded") == 1


def test_a_modeldeployment_reconcile_records_its_phase_and_registry_errors() -> None:
    rt, kube, reg, _ = make_runtime(registry=registry())
    deployment(kube)
    md.reconcile(rt, "ns", "churn", budget())
    assert value(rt.metrics, "modelops_rollout_phase", **MDL, phase="Stable") == 1
    reg.fail["get_alias"] = RegistryError("RegistryUnreachable", "MLflow down")
    md.reconcile(rt, "ns", "churn", budget())
    assert value(rt.metrics, "modelops_adapter_errors_total", adapter="registry", reason="RegistryUnreachable") == 1


def test_a_failed_prometheus_query_is_an_adapter_error() -> None:
    class Down(FakePrometheus):
        def query(self, promql: str, timeout: float | None = None) -> Sample:
            return Sample(None, "PrometheusUnreachable", "connection refused", error="connection refused")

    rt, _, _, _ = make_runtime(registry=registry(), prometheus=Down())
    spec = {"rollout": {"analysis": {"metrics": [{"name": "e", "query": "up", "thresholdRange": {"max": 1}}]}}}
    checks = md.run_analysis(rt, spec, "ns", "churn", None, budget())
    assert [c.result for c in checks] == ["Error"]
    assert value(rt.metrics, "modelops_adapter_errors_total", adapter="prometheus",
                 reason="PrometheusUnreachable") == 1


def test_a_retrain_reconcile_records_started_and_failed_runs() -> None:
    from modelops.adapters.kube import KubeError

    rt, kube, _, _ = make_runtime()
    schedule(kube)
    kube.fail_create["Job"] = KubeError(422, "invalid")
    rs.reconcile(rt, "ns", "churn", budget())
    rs.reconcile(rt, "ns", "churn", budget())
    labels = {"namespace": "ns", "retrainschedule": "churn", "trigger": "manual"}
    assert value(rt.metrics, "modelops_retrain_runs_started_total", **labels) == 1
    assert value(rt.metrics, "modelops_retrain_runs_total", **labels, outcome="Failed") == 1


def test_the_runtime_counts_reconciles_by_result_and_forgets_a_gone_object() -> None:
    rt, _, _, _ = make_runtime(registry=registry())

    def boom(rt: Any, ns: str, name: str, b: Any) -> float | None:
        raise ValueError("bug")

    async def go() -> None:
        rt.metrics.rollout("ns", "gone", {}, None, [])
        ok = Kind("ModelDeployment", lambda *a: 1.0)
        gone = Kind("ModelDeployment", lambda *a: None)
        bad = Kind("RetrainSchedule", boom)
        await rt.reconcile_async(ok, "ns", "churn")
        await rt.reconcile_async(gone, "ns", "gone")
        await rt.reconcile_async(bad, "ns", "x")

    asyncio.run(go())
    m = rt.metrics
    assert value(m, "modelops_reconcile_total", kind="ModelDeployment", result="ok") == 1
    assert value(m, "modelops_reconcile_total", kind="ModelDeployment", result="gone") == 1
    assert value(m, "modelops_reconcile_total", kind="RetrainSchedule", result="error") == 1
    assert value(m, "modelops_reconcile_errors_total", kind="RetrainSchedule") == 1
    assert value(m, "modelops_reconcile_duration_seconds_count", kind="ModelDeployment") == 2
    assert not [s for s in series(m, "modelops_rollout_phase") if s["modeldeployment"] == "gone"]
    rt.pool.shutdown(wait=False)


def test_queue_depth_is_read_from_the_scheduler_at_scrape_time() -> None:
    async def go() -> tuple[float | None, float | None]:
        rt, _, _, _ = make_runtime()
        sched = rt.register(Kind("ModelDeployment", lambda *a: 1.0))
        assert isinstance(sched, Scheduler)
        for i in range(3):
            sched.touch(("ns", f"o{i}"))
        sched.touch(("ns", "later"), delay=3600)
        out = (value(rt.metrics, "modelops_reconcile_queue_depth", kind="ModelDeployment"),
               value(rt.metrics, "modelops_reconcile_known_objects", kind="ModelDeployment"))
        rt.pool.shutdown(wait=False)
        return out

    assert asyncio.run(go()) == (3, 4)


def test_metrics_are_served_over_http() -> None:
    m = OperatorMetrics()
    m.rollout("ns", "churn", {"rollout": {"state": "Progressing", "weight": 50}}, None, ["RolledBack"])
    port = m.serve(0, "127.0.0.1")
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        m.shutdown()
    assert 'modelops_rollout_canary_weight{modeldeployment="churn",namespace="ns"} 50.0' in text
    assert 'modelops_rollout_rollbacks_total{modeldeployment="churn",namespace="ns"} 1.0' in text
    assert "# TYPE modelops_reconcile_duration_seconds histogram" in text



def test_slo_thresholds_are_exported_per_deployment_and_removed_with_the_slo() -> None:
    from modelops.decide.slo import slos_of

    m = OperatorMetrics()
    slos = slos_of({"slos": [{"name": "availability", "objective": 99.9},
                             {"name": "latency", "objective": 99.0, "latency": {"thresholdSeconds": 0.1}}]})
    m.slos("ns", "churn", slos)
    isvc = {"namespace": "ns", "isvc": "churn"}
    assert value(m, "modelops_slo_burn_rate_threshold", **isvc, slo="availability", burn="fast") == \
        pytest.approx(0.0144)
    assert value(m, "modelops_slo_burn_rate_threshold", **isvc, slo="latency", burn="slow") == pytest.approx(0.06)
    assert value(m, "modelops_slo_objective_ratio", **isvc, slo="availability") == pytest.approx(0.999)
    assert value(m, "modelops_slo_latency_le", **isvc, le="0.1") == 1  # the model server's own le spelling
    m.slos("ns", "churn", slos[:1])
    assert value(m, "modelops_slo_latency_le", **isvc, le="0.1") is None
    assert value(m, "modelops_slo_burn_rate_threshold", **isvc, slo="latency", burn="slow") is None
    assert value(m, "modelops_slo_burn_rate_threshold", **isvc, slo="availability", burn="fast") is not None


@pytest.mark.parametrize(("fires", "state"), [(True, "True"), (False, "False")])
def test_a_reconcile_reads_the_fast_burn_alert_into_budget_exhausted(fires: bool, state: str) -> None:
    prom = FakePrometheus(1.0 if fires else None)
    rt, kube, _, _ = make_runtime(registry=registry(), prometheus=prom)
    deployment(kube, slos=[{"name": "availability", "objective": 99.9}])
    md.reconcile(rt, "ns", "churn", budget())
    conds = {c["type"]: c for c in kube.obj("modeldeployments", "ns", "churn")["status"]["conditions"]}
    assert conds["BudgetExhausted"]["status"] == state
    assert any("ModelopsSLOFastBurn" in q and 'isvc="churn"' in q for q in prom.queries)
    assert value(rt.metrics, "modelops_slo_burn_rate_threshold", namespace="ns", isvc="churn", slo="availability",
                 burn="fast") == pytest.approx(0.0144)


def test_a_replica_that_loses_the_lease_reports_no_object_series() -> None:
    rt, _, _, _ = make_runtime(leader_election=True, lease_namespace="ns")
    rt.metrics.rollout("ns", "churn", {"rollout": {"state": "Progressing", "weight": 10}}, None, [])
    rt.metrics.retrain("ns", "nightly", {}, {"runs": [{"id": "a", "trigger": "manual", "state": "Pending"}]})
    assert rt.elector is not None and rt.elector._on_stopped is not None
    rt.elector._on_stopped()  # what LeaderElector.run calls when the Lease is lost
    names = {s.name for fam in rt.metrics.registry.collect() for s in fam.samples}
    assert not {n for n in names if n.startswith(("modelops_rollout_", "modelops_retrain_"))}, names
    rt.pool.shutdown(wait=False)
