"""The reconcile tick, stepped with fakes: a simulated world of Jobs, the annotations, and a clock."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelops.api import ANNOTATION_APPROVE, ANNOTATION_REJECT, ANNOTATION_RETRAIN_REQUESTED
from modelops.decide.retrain import (
    JobView,
    Plan,
    TickInput,
    due_outbox,
    parse_result,
    record_outbox,
    tick,
)
from modelops.decide.triggers import DriftSample, format_time

pytestmark = pytest.mark.unit

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def rs(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "training": {"modelName": "churn", "dataset": {"uri": "/d.csv", "target": "y", "task": "classification"}},
        "concurrencyPolicy": "Forbid", "successfulRunsHistoryLimit": 3, "failedRunsHistoryLimit": 1,
    }
    base.update(spec)
    return {"apiVersion": "modelops.dev/v1alpha1", "kind": "RetrainSchedule",
            "metadata": {"name": "churn", "namespace": "ns", "uid": "u-1", "generation": 1,
                         "creationTimestamp": format_time(T0), "annotations": {}},
            "spec": base, "status": {}}


def result(status: str = "succeeded", version: int = 3, value: float = 0.91) -> str:
    return json.dumps({"status": status, "modelName": "churn", "version": version, "runId": "r123",
                       "metric": {"name": "auc", "value": value}, "champion": {"version": 2, "value": 0.9},
                       "verdict": "pass" if status != "gate_failed" else "fail", "message": f"{status} msg",
                       "trials": 4, "datasetUri": "/d.csv", "datasetHash": "abc"})


class World:
    """The object as the API server holds it plus its Jobs; `step` runs one tick and applies the plan."""

    def __init__(self, obj: dict[str, Any], now: datetime = T0) -> None:
        self.obj = obj
        self.now = now
        self.jobs: dict[str, JobView] = {}
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.events: list[tuple[str, str]] = []

    def step(self, seconds: float = 0, drift: DriftSample | None = None, problems: tuple[str, ...] = (),
             create: bool = True) -> Plan:
        self.now += timedelta(seconds=seconds)
        plan = tick(TickInput(copy.deepcopy(self.obj), dict(self.jobs), self.now, anchor=T0, problems=problems,
                              drift_sample=drift))
        self.obj["status"] = plan.status
        for run in plan.create:
            if create and run["job"] not in self.jobs:
                self.jobs[run["job"]] = JobView(run["job"], start_time=format_time(self.now))
                self.created.append(run["job"])
        for name in plan.delete:
            self.jobs.pop(name, None)
            self.deleted.append(name)
        self.events += [(e.reason, e.message) for e in plan.events]
        return plan

    def finish(self, job: str, message: str, ok: bool = True, **kw: Any) -> None:
        self.jobs[job] = JobView(job, finished="Complete" if ok else "Failed", start_time=format_time(T0),
                                 completion_time=format_time(self.now), termination_message=message, **kw)

    def annotate(self, key: str, value: str) -> None:
        self.obj["metadata"]["annotations"][key] = value

    @property
    def runs(self) -> list[dict[str, Any]]:
        return list(self.obj["status"].get("runs") or [])

    def cond(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.obj["status"]["conditions"] if c["type"] == type_)


def test_parse_result_takes_last_json_line() -> None:
    assert parse_result("log\n" + result() + "\n")["version"] == 3  # type: ignore[index]
    assert parse_result("not json\n{broken") is None
    assert parse_result("") is None
    assert parse_result('{"no": "status"}') is None


def test_manual_trigger_runs_once_and_outcome_lands() -> None:
    w = World(rs())
    w.step()
    assert w.runs == [] and w.cond("Ready")["status"] == "True" and w.cond("Scheduled")["reason"] == "NotConfigured"
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "2026-05-01T12:00:05Z")
    p = w.step(5)
    assert len(p.create) == 1 and w.runs[0]["state"] == "Pending" and w.runs[0]["trigger"] == "manual"
    job = w.runs[0]["job"]
    assert job.startswith("churn-manual-")
    assert ("Triggered", w.events[-1][1]) == w.events[-1]
    w.step(1)
    assert w.runs[0]["state"] == "Running" and w.obj["status"]["activeCount"] == 1
    assert w.cond("Training")["status"] == "True" and w.obj["status"]["phase"] == "Training"
    w.step(1)
    assert w.created == [job]  # the same request never starts a second run
    w.finish(job, result())
    w.step(1)
    run = w.runs[0]
    assert run["state"] == "Succeeded" and run["version"] == "3" and run["value"] == 0.91
    assert run["championVersion"] == "2" and run["runId"] == "r123" and run["trials"] == 4
    assert w.obj["status"]["lastRun"]["id"] == run["id"]
    assert w.cond("Training")["status"] == "False" and w.obj["status"]["phase"] == "Idle"
    assert "RunSucceeded" in [e[0] for e in w.events]


def test_pending_run_without_job_is_created_again_never_twice() -> None:
    w = World(rs())
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "x")
    p1 = w.step(create=False)  # the status was written, then the operator died before creating the Job
    p2 = w.step(1)
    assert [r["job"] for r in p1.create] == [r["job"] for r in p2.create]
    w.step(1)
    assert len(w.created) == 1 and len(w.runs) == 1


def test_running_run_whose_job_vanished_is_lost_and_not_recreated() -> None:
    w = World(rs())
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "x")
    w.step()
    w.step(1)
    w.jobs.clear()
    p = w.step(1)
    assert not p.create and w.runs[0]["state"] == "Lost"
    assert w.obj["status"]["phase"] == "Failed"


def test_cron_fires_on_time_and_once() -> None:
    w = World(rs(triggers={"schedule": {"cron": "*/5 * * * *", "timeZone": "UTC", "startingDeadlineSeconds": 60}}))
    w.step(0)
    assert w.runs == [] and w.obj["status"]["nextScheduleTime"] == format_time(T0 + timedelta(minutes=5))
    w.step(299)
    assert w.runs == []
    plan = w.step(1)
    assert [r["trigger"] for r in w.runs] == ["schedule"]
    assert w.runs[0]["firingKey"] == format_time(T0 + timedelta(minutes=5))
    assert plan.requeue_after == pytest.approx(300)
    w.step(1)
    assert len(w.created) == 1


def test_cron_missed_beyond_deadline_is_skipped() -> None:
    w = World(rs(triggers={"schedule": {"cron": "0 * * * *", "startingDeadlineSeconds": 60}}))
    w.step(0)
    w.step(3 * 3600 + 120)  # operator down for three hours
    assert w.runs == [] and "MissedSchedule" in [e[0] for e in w.events]
    assert w.obj["status"]["lastScheduleTime"] == format_time(T0 + timedelta(hours=3))
    w.step(3600 - 120)
    assert [r["trigger"] for r in w.runs] == ["schedule"]


def test_forbid_defers_cron_within_deadline_and_skips_manual() -> None:
    w = World(rs(triggers={"schedule": {"cron": "*/5 * * * *", "startingDeadlineSeconds": 120}}))
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "first")
    w.step()
    first = w.runs[0]["job"]
    w.step(300)  # the 12:05 firing while the manual run is still active
    assert len(w.runs) == 1 and "waits" in w.cond("Scheduled")["message"]
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "second")
    w.step(10)
    assert len(w.runs) == 1 and "ManualRunSkipped" in [e[0] for e in w.events]
    w.finish(first, result())
    w.step(10)  # 12:05:20: the deferred firing is still within its deadline
    assert [r["trigger"] for r in w.runs] == ["schedule", "manual"]
    assert w.runs[0]["firingKey"] == format_time(T0 + timedelta(minutes=5))


def test_forbid_deferred_cron_past_deadline_is_missed() -> None:
    w = World(rs(triggers={"schedule": {"cron": "*/5 * * * *", "startingDeadlineSeconds": 30}}))
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "first")
    w.step()
    w.step(300)
    w.finish(w.runs[0]["job"], result())
    w.step(60)
    assert len(w.runs) == 1 and "MissedSchedule" in [e[0] for e in w.events]


def test_replace_stops_the_running_job() -> None:
    w = World(rs(concurrencyPolicy="Replace"))
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "a")
    w.step()
    w.step(1)
    old = w.runs[0]["job"]
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "b")
    w.step(1)
    assert [r["state"] for r in w.runs] == ["Pending", "Replaced"]
    assert w.deleted == [old] and len(w.created) == 2


def test_allow_runs_side_by_side() -> None:
    w = World(rs(concurrencyPolicy="Allow"))
    for i in range(3):
        w.annotate(ANNOTATION_RETRAIN_REQUESTED, str(i))
        w.step(1)
    assert [r["state"] for r in w.runs] == ["Pending", "Running", "Running"]
    assert w.obj["status"]["activeCount"] == 3


def test_triggers_firing_together_start_one_run() -> None:
    w = World(rs(triggers={"schedule": {"cron": "*/5 * * * *"},
                           "drift": {"query": "q", "threshold": 0.3, "for": "0s", "cooldown": "1h"}}))
    w.step(0, drift=DriftSample(0.1))
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "now")
    w.step(300, drift=DriftSample(0.9))
    assert len(w.runs) == 1 and w.runs[0]["trigger"] == "manual" and w.runs[0]["coalesced"] == ["schedule", "drift"]
    assert w.obj["status"]["drift"]["lastFiredTime"]  # the drift firing was consumed by the run


def test_suspend_stops_triggers_and_cron_resumes_within_deadline() -> None:
    w = World(rs(suspend=True, triggers={"schedule": {"cron": "*/5 * * * *", "startingDeadlineSeconds": 60},
                                         "drift": {"query": "q", "threshold": 0.3, "for": "0s"}}))
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "x")
    w.step(300, drift=DriftSample(0.9))
    assert w.runs == [] and w.obj["status"]["phase"] == "Suspended"
    assert w.cond("Scheduled")["reason"] == "Suspended" and w.cond("DriftTrigger")["status"] == "Unknown"
    w.obj["spec"]["suspend"] = False
    w.step(30, drift=DriftSample(0.1))
    assert [r["trigger"] for r in w.runs] == ["schedule"]


def test_drift_unreachable_is_unknown_and_fires_nothing() -> None:
    w = World(rs(triggers={"drift": {"query": "q", "threshold": 0.3, "for": "0s"}}))
    w.step(0, drift=DriftSample(None, "PrometheusUnreachable", "connect to 127.0.0.1:1 refused"))
    c = w.cond("DriftTrigger")
    assert c["status"] == "Unknown" and c["reason"] == "PrometheusUnreachable" and "refused" in c["message"]
    assert w.runs == []


def test_failed_job_records_pod_reason_and_next_trigger_still_fires() -> None:
    w = World(rs())
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "a")
    w.step()
    w.finish(w.runs[0]["job"], "Traceback...\nMemoryError", ok=False, reason="BackoffLimitExceeded",
             job_message="Job has reached the specified backoff limit", pod_reason="OOMKilled", exit_code=137)
    w.step(1)
    run = w.runs[0]
    assert run["state"] == "Failed" and run["reason"] == "OOMKilled" and run["exitCode"] == 137
    assert "BackoffLimitExceeded" in run["message"] and "OOMKilled" in run["message"]
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "b")
    w.step(1)
    assert w.runs[0]["state"] == "Pending"


@pytest.mark.parametrize(("status", "state", "event"), [
    ("succeeded", "Succeeded", "RunSucceeded"), ("gate_failed", "GateFailed", "GateFailed"),
    ("awaiting_approval", "AwaitingApproval", "AwaitingApproval"), ("failed", "Failed", "RunFailed"),
])
def test_outcome_states_events_and_notifications(status: str, state: str, event: str) -> None:
    w = World(rs(notifications={"webhooks": [{"url": "http://hook", "format": "slack"},
                                             {"url": "http://other", "events": ["RunFailed"]}]}))
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "a")
    w.step()
    w.step(1)
    w.finish(w.runs[0]["job"], result(status))
    w.step(1)
    assert w.runs[0]["state"] == state and event in [e[0] for e in w.events]
    items = {(i["event"], i["webhook"]) for i in w.obj["status"]["outbox"]}
    assert ("RunStarted", 0) in items and (event, 0) in items
    assert ((event, 1) in items) is (event == "RunFailed") and ("RunStarted", 1) not in items


def test_approval_and_rejection() -> None:
    w = World(rs(concurrencyPolicy="Allow", successfulRunsHistoryLimit=5))
    jobs = []
    for v, req in ((3, "a"), (4, "b")):
        w.annotate(ANNOTATION_RETRAIN_REQUESTED, req)
        w.step(1)
        jobs.append((w.runs[0]["job"], v))
    for job, v in jobs:
        w.finish(job, result("awaiting_approval", version=v))
    w.step(1)
    assert w.cond("AwaitingApproval")["status"] == "True" and w.obj["status"]["phase"] == "AwaitingApproval"
    w.annotate(ANNOTATION_APPROVE, "4")
    w.annotate(ANNOTATION_REJECT, "3")
    w.step(1)
    states = {r["version"]: r["state"] for r in w.runs}
    assert states == {"4": "Approved", "3": "Rejected"}
    kinds = {(i["kind"], i.get("version")) for i in w.obj["status"]["outbox"]}
    assert ("approve", "4") in kinds and ("reject", "3") in kinds
    assert w.cond("RegistrySynced")["status"] == "Unknown" and w.cond("AwaitingApproval")["status"] == "False"
    w.annotate(ANNOTATION_APPROVE, "99")
    w.step(1)
    assert "DecisionIgnored" in [e[0] for e in w.events]
    n = len(w.events)
    w.step(1)
    assert len(w.events) == n  # a handled annotation value is not reconsidered


def test_outbox_retries_registry_forever_and_drops_notifications() -> None:
    w = World(rs(notifications={"webhooks": [{"url": "http://hook"}]}))
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "a")
    w.step()
    w.finish(w.runs[0]["job"], result("awaiting_approval"))
    w.step(1)
    w.annotate(ANNOTATION_APPROVE, "3")
    w.step(1)
    now = w.now
    status = w.obj["status"]
    for _attempt in range(8):
        due = due_outbox(status, now)
        status, events = record_outbox(status, {i["id"]: "connection refused" for i in due}, now)
        now += timedelta(seconds=400)
    kinds = [i["kind"] for i in status["outbox"]]
    assert kinds == ["approve"] and status["outbox"][0]["attempts"] == 8
    cond = next(c for c in status["conditions"] if c["type"] == "RegistrySynced")
    assert cond["status"] == "False" and "connection refused" in cond["message"]
    # a not-yet-due item is not attempted
    assert due_outbox(status, now - timedelta(seconds=399)) == []
    status, events = record_outbox(status, {status["outbox"][0]["id"]: None}, now)
    assert status["outbox"] == [] and [e.reason for e in events] == ["RegistryUpdated"]
    assert next(c for c in status["conditions"] if c["type"] == "RegistrySynced")["status"] == "True"


def test_history_limits_prune_runs_and_jobs() -> None:
    w = World(rs(concurrencyPolicy="Allow", successfulRunsHistoryLimit=2, failedRunsHistoryLimit=1))
    for i in range(6):
        w.annotate(ANNOTATION_RETRAIN_REQUESTED, str(i))
        w.step(1)
        w.finish(w.runs[0]["job"], result() if i % 2 == 0 else "boom", ok=i % 2 == 0)
        w.step(1)
    states = [r["state"] for r in w.runs]
    assert states == ["Failed", "Succeeded", "Succeeded"]
    assert len(w.deleted) == 3 and set(w.jobs) == {r["job"] for r in w.runs}


def test_awaiting_approval_is_never_pruned() -> None:
    w = World(rs(concurrencyPolicy="Allow", successfulRunsHistoryLimit=0))
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "a")
    w.step()
    w.finish(w.runs[0]["job"], result("awaiting_approval"))
    w.step(1)
    assert [r["state"] for r in w.runs] == ["AwaitingApproval"]
    w.annotate(ANNOTATION_APPROVE, "3")
    w.step(1)
    assert w.runs == [] and w.obj["status"]["lastRun"]["state"] == "Approved"
    assert [i["kind"] for i in w.obj["status"]["outbox"]] == ["approve"]  # the action outlives the run


def test_invalid_spec_evaluates_no_trigger() -> None:
    w = World(rs(triggers={"schedule": {"cron": "* * * * *"}}))
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "a")
    w.step(120, problems=("spec.triggers.schedule.timeZone: 'Mars' is not an IANA time zone",))
    assert w.runs == [] and w.cond("Accepted")["status"] == "False" and w.cond("Ready")["reason"] == "InvalidSpec"


def test_tick_is_idempotent() -> None:
    w = World(rs(triggers={"schedule": {"cron": "0 3 * * *"}}))
    w.step()
    before = copy.deepcopy(w.obj["status"])
    plan = w.step(1)
    assert plan.status == before and not plan.create and not plan.delete and not plan.events
