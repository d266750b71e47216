"""The RetrainSchedule `performance` trigger (issue 17): pure evaluation and its place in the tick."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from modelops.adapters.prometheus import Prometheus
from modelops.api.types import Sample
from modelops.decide import quality as q
from modelops.decide.retrain import TickInput, quality_check_due, tick
from modelops.decide.triggers import format_time

pytestmark = pytest.mark.unit

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def cfg(**kw: Any) -> q.PerformanceConfig:
    base: dict[str, Any] = {"model": "churn", "namespace": "ns", "metric": "auc", "threshold": 0.8,
                            "min_labels": 100, "for_seconds": 60, "cooldown_seconds": 600,
                            "check_interval_seconds": 10}
    base.update(kw)
    return q.PerformanceConfig(**base)


def obs(value: float | None, labels: float | None = 500, version: str = "3") -> q.PerformanceObservation:
    return q.PerformanceObservation(version, Sample(1000.0, labels=(("version", version),)), Sample(value),
                                    Sample(labels))


def test_below_threshold_holds_for_then_fires_then_cools_down() -> None:
    c, st = cfg(), q.PerformanceState()
    d = q.evaluate_performance(st, c, obs(0.75), None, T0)
    assert (d.status, d.reason, d.fire) == ("True", "Pending", False) and "0.75 < threshold 0.8" in d.message
    d = q.evaluate_performance(d.state, c, obs(0.74), None, T0 + timedelta(seconds=59))
    assert d.reason == "Pending"
    d = q.evaluate_performance(d.state, c, obs(0.74), None, T0 + timedelta(seconds=60))
    assert d.fire and d.reason == "Fired" and d.key == format_time(T0 + timedelta(seconds=60))
    assert d.state.last_fired == T0 + timedelta(seconds=60)
    d = q.evaluate_performance(d.state, c, obs(0.74), None, T0 + timedelta(seconds=200))
    assert d.reason == "CoolingDown" and not d.fire
    d = q.evaluate_performance(d.state, c, obs(0.74), None, T0 + timedelta(seconds=661))
    assert d.fire and d.key == format_time(T0 + timedelta(seconds=660))


def test_too_few_labels_is_not_observed_and_clears_holding() -> None:
    c = cfg(min_labels=200)
    d = q.evaluate_performance(q.PerformanceState(), c, obs(0.5), None, T0)
    assert d.reason == "Pending"
    d = q.evaluate_performance(d.state, c, obs(0.5, labels=150), None, T0 + timedelta(seconds=30))
    assert (d.status, d.reason, d.fire) == ("Unknown", "NotEnoughLabels", False)
    assert "150 joined labels, fewer than minLabels 200" in d.message and d.state.holding_since is None
    assert d.state.joined_labels == 150
    # labels back: holding starts again from now, not from the first time
    d = q.evaluate_performance(d.state, c, obs(0.5), None, T0 + timedelta(seconds=70))
    assert d.reason == "Pending" and d.state.holding_since == T0 + timedelta(seconds=70)


@pytest.mark.parametrize(("o", "reason", "words"), [
    (q.PerformanceObservation("", Sample()), "NoData", "no predictions of model ns/churn"),
    (q.PerformanceObservation("", Sample(None, "PrometheusUnreachable", "refused", error="refused")),
     "PrometheusUnreachable", "refused"),
    (q.PerformanceObservation("3", Sample(1.0), Sample(), Sample(500)), "NoData", "no realised auc for version 3"),
    (q.PerformanceObservation("3", Sample(1.0), Sample(0.5), Sample(None, "QueryFailed", "bad", error="bad")),
     "QueryFailed", "joined labels of version 3"),
    (q.PerformanceObservation("3", Sample(1.0), Sample(float("nan")), Sample(500)), "NoData", "no realised"),
])
def test_unobserved_conditions_fire_nothing(o: q.PerformanceObservation, reason: str, words: str) -> None:
    held = q.PerformanceState(T0, "3", 0.5, 500, None, T0 - timedelta(hours=1), None, "")
    d = q.evaluate_performance(held, cfg(), o, None, T0 + timedelta(seconds=10))
    assert (d.status, d.reason, d.fire) == ("Unknown", reason, False) and words in d.message
    assert d.state.holding_since is None and "nothing fires" in d.message


def test_max_drop_against_the_training_metric() -> None:
    c = cfg(threshold=None, max_drop=0.03)
    d = q.evaluate_performance(q.PerformanceState(), c, obs(0.86), 0.91, T0)
    assert d.reason == "Pending" and "0.05 worse than its training 0.91" in d.message
    d = q.evaluate_performance(q.PerformanceState(), c, obs(0.89), 0.91, T0)
    assert (d.status, d.reason) == ("False", "QualityHealthy") and "drop 0.02 <= maxDrop 0.03" in d.message
    d = q.evaluate_performance(q.PerformanceState(), c, obs(0.5), None, T0)
    assert d.reason == "QualityHealthy" and "maxDrop not judged" in d.message


def test_lower_is_better_threshold_and_estimated_source_needs_no_labels() -> None:
    c = cfg(metric="mae", source="estimated", threshold=2.0)
    o = q.PerformanceObservation("3", Sample(10.0), Sample(2.5), None)
    d = q.evaluate_performance(q.PerformanceState(), c, o, None, T0)
    assert d.reason == "Pending" and "estimated mae 2.5 > threshold 2" in d.message
    o = q.PerformanceObservation("3", Sample(10.0), Sample(1.5), None)
    assert q.evaluate_performance(q.PerformanceState(), c, o, None, T0).reason == "QualityHealthy"


def test_another_version_restarts_holding() -> None:
    c = cfg()
    d = q.evaluate_performance(q.PerformanceState(), c, obs(0.7, version="3"), None, T0)
    d = q.evaluate_performance(d.state, c, obs(0.7, version="4"), None, T0 + timedelta(seconds=61))
    assert d.reason == "Pending" and d.state.holding_since == T0 + timedelta(seconds=61)


def test_blocked_consumes_nothing() -> None:
    c = cfg(for_seconds=0)
    d = q.evaluate_performance(q.PerformanceState(), c, obs(0.7), None, T0, blocked="concurrencyPolicy Forbid")
    assert d.reason == "Blocked" and not d.fire and d.state.last_fired is None


def test_training_value_is_the_runs_metric_for_that_version() -> None:
    runs = [{"version": "4", "metric": "auc", "value": 0.95}, {"version": "3", "metric": "logloss", "value": 0.3},
            {"version": "3", "metric": "auc", "value": 0.91}]
    assert q.training_value(runs, "3", "auc") == 0.91
    assert q.training_value(runs, "3", "log_loss") == 0.3  # the trainer spells it logloss
    assert q.training_value(runs, "5", "auc") is None and q.training_value(runs, "", "auc") is None


def test_status_round_trip() -> None:
    st = q.PerformanceState(T0, "3", 0.7, 250.0, 0.9, T0, T0, "m")
    assert q.performance_state({"performance": q.performance_status(st)}) == st
    assert "value" not in q.performance_status(q.PerformanceState(value=float("nan")))


# --- in the tick --------------------------------------------------------------------------------------------

def rs(**perf: Any) -> dict[str, Any]:
    p = {"model": "churn", "metric": "auc", "threshold": 0.8, "minLabels": 100, "for": "0s", "cooldown": "1h",
         "checkInterval": "30s", **perf}
    return {"metadata": {"name": "s", "namespace": "ns", "uid": "u", "generation": 1, "annotations": {}},
            "spec": {"training": {"modelName": "churn"}, "concurrencyPolicy": "Forbid",
                     "triggers": {"performance": p}},
            "status": {}}


def step(obj: dict[str, Any], now: datetime, o: q.PerformanceObservation | None) -> Any:
    plan = tick(TickInput(copy.deepcopy(obj), {}, now, anchor=T0, performance=o))
    obj["status"] = plan.status
    return plan


def cond(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "PerformanceTrigger")


def test_tick_reports_not_enough_labels_then_fires_a_performance_run() -> None:
    obj = rs()
    assert quality_check_due(obj, T0)
    plan = step(obj, T0, obs(0.6, labels=20))
    assert cond(obj)["reason"] == "NotEnoughLabels" and cond(obj)["status"] == "Unknown"
    assert [e.reason for e in plan.events] == ["PerformanceNotEnoughLabels"]
    assert obj["status"]["performance"]["joinedLabels"] == 20 and not obj["status"].get("runs")
    assert not quality_check_due(obj, T0 + timedelta(seconds=10)) and plan.requeue_after == 30
    plan = step(obj, T0 + timedelta(seconds=30), obs(0.6, labels=20))
    assert plan.events == []  # the same reason again: no second Event
    plan = step(obj, T0 + timedelta(seconds=60), obs(0.6))
    (run,) = obj["status"]["runs"]
    assert run["trigger"] == "performance" and run["job"].startswith("s-perf-") and len(plan.create) == 1
    assert cond(obj)["reason"] == "Fired" and "realised auc 0.6 < threshold 0.8" in run["message"]
    assert any(e.reason == "Triggered" and "performance trigger" in e.message for e in plan.events)


def test_tick_uses_the_versions_training_metric_from_its_run() -> None:
    obj = rs(threshold=None, maxDrop=0.02)
    obj["status"] = {"runs": [{"id": "cron-1", "trigger": "schedule", "job": "s-cron-1", "state": "Succeeded",
                               "version": "3", "metric": "auc", "value": 0.9, "completionTime": format_time(T0)}]}
    step(obj, T0, obs(0.85))
    assert obj["status"]["performance"]["trainingValue"] == 0.9
    assert [r["trigger"] for r in obj["status"]["runs"]] == ["performance", "schedule"]


def test_tick_without_the_trigger_or_suspended() -> None:
    obj = rs()
    obj["spec"]["triggers"] = {}
    step(obj, T0, None)
    assert cond(obj)["reason"] == "NotConfigured" and not quality_check_due(obj, T0)
    obj = rs()
    obj["spec"]["suspend"] = True
    assert not quality_check_due(obj, T0)
    step(obj, T0, None)
    assert cond(obj)["reason"] == "Suspended"


def test_prometheus_adapter_keeps_the_series_labels() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"version": "7"}, "value": [0, "1234"]}]}})

    prom = Prometheus("http://p", transport=httpx.MockTransport(handler))
    s = prom.query(q.busiest_version_promql("ns", "churn"))
    assert s.value == 1234 and s.label("version") == "7" and s.label("other") == ""
