"""Reliability review findings of the RetrainSchedule controller (issue 16): H1, M4, L1, L5, L7, L10."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from modelops.api import ANNOTATION_APPROVE, ANNOTATION_RETRAIN_REQUESTED
from modelops.decide import outbox
from modelops.decide.finite import strict_json
from modelops.decide.retrain import due_outbox, parse_result, record_outbox, redact_uri
from modelops.decide.spec_checks import retrain_schedule_problems
from modelops.decide.triggers import DriftSample
from tests.unit.retrain.test_tick import World, result, rs

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------------------------------------- H1
@pytest.mark.parametrize("line", [
    '{"status":"succeeded","version":"7","metric":{"name":"auc","value":NaN}}',
    '{"status":"succeeded","version":"7","metric":{"name":"auc","value":Infinity}}',
    '{"status":"succeeded","version":"7","champion":{"value":-Infinity}}',
])
def test_parse_result_refuses_non_json_numbers(line: str) -> None:
    assert parse_result(line) is None


def test_non_finite_trainer_values_never_reach_status() -> None:
    w = World(rs())
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "a")
    w.step()
    msg = ('{"status":"succeeded","version":7,"metric":{"name":"auc","value":NaN},'
           '"champion":{"version":2,"value":Infinity}}')
    w.finish(w.runs[0]["job"], msg)
    w.step(1)
    strict_json(w.obj["status"])  # raises on NaN / Infinity
    assert "value" not in w.runs[0] and "championValue" not in w.runs[0]


def test_trainer_result_fields_are_coerced_to_the_crd_types() -> None:
    w = World(rs())
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "a")
    w.step()
    msg = json.dumps({"status": "succeeded", "version": 7, "trials": {"nested": 1}, "runId": ["list"], "verdict": 12,
                      "metric": {"name": "auc", "value": 0.9}, "datasetUri": "s3://user:pw@b/d.csv?X-Amz-Signature=s"})
    w.finish(w.runs[0]["job"], msg)
    w.step(1)
    run = w.runs[0]
    assert run["state"] == "Succeeded" and run["version"] == "7" and run["verdict"] == "12"
    assert "trials" not in run and "runId" not in run
    assert run["datasetUri"] == "s3://***@b/d.csv?***"
    w2 = World(rs())
    w2.annotate(ANNOTATION_RETRAIN_REQUESTED, "a")
    w2.step()
    w2.finish(w2.runs[0]["job"], json.dumps({"status": "succeeded", "version": 3, "trials": "20"}))
    w2.step(1)
    assert w2.runs[0]["trials"] == 20


def test_infinite_drift_sample_from_the_adapter_is_no_data() -> None:
    import httpx

    from modelops.adapters.prometheus import Prometheus

    body = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "+Inf"]}]}}
    prom = Prometheus("http://prom", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body)))
    sample = prom.query_value("q")  # what the drift trigger reads
    assert sample.value is None and sample.reason == "NoData"


# ---------------------------------------------------------------------------------------------- M4
def test_awaiting_approval_runs_are_bounded() -> None:
    """The review's reproduction, shortened: nightly runs awaiting approval and nobody answering."""
    w = World(rs(concurrencyPolicy="Allow", maxPendingApprovals=3, successfulRunsHistoryLimit=3))
    for night in range(40):
        w.annotate(ANNOTATION_RETRAIN_REQUESTED, f"n{night}")
        w.step(86400)
        w.finish(w.runs[0]["job"], result("awaiting_approval", version=night + 1))
        w.step(1)
        # the handler performs the registry actions (reject of the superseded versions)
        status = w.obj["status"]
        for _ in range(3):
            status, _events = record_outbox(status, {i["id"]: None for i in due_outbox(status, w.now)}, w.now)
        w.obj["status"] = status
    waiting = [r for r in w.runs if r["state"] == "AwaitingApproval"]
    assert [r["version"] for r in waiting] == ["40", "39", "38"]
    assert len(w.runs) <= 3 + 3 and len(w.jobs) <= 6
    assert len(json.dumps(w.obj["status"])) < 20_000
    assert "ApprovalSuperseded" in [e[0] for e in w.events]
    # the newest ones can still be approved
    w.annotate(ANNOTATION_APPROVE, "39")
    w.step(1)
    assert {r["version"]: r["state"] for r in w.runs}["39"] == "Approved"


# ---------------------------------------------------------------------------------------------- L1
def test_registry_decisions_run_in_order() -> None:
    """Approve v5 fails while MLflow is down and backs off; v6 is approved meanwhile: v6 must land last."""
    w = World(rs(concurrencyPolicy="Allow", successfulRunsHistoryLimit=5))
    for v in (5, 6):
        w.annotate(ANNOTATION_RETRAIN_REQUESTED, f"r{v}")
        w.step(1)
        w.finish(w.runs[0]["job"], result("awaiting_approval", version=v))
        w.step(1)
    w.annotate(ANNOTATION_APPROVE, "5")
    w.step(1)
    status, now = w.obj["status"], w.now
    applied: list[str] = []
    # what the one outbox attempts now (decide/outbox.runnable: registry writes in order, issue 15's runtime)
    for _ in range(4):
        due = outbox.runnable(status.get("outbox") or [], now)
        status, _ = record_outbox(status, {i["id"]: "down" for i in due if i["kind"] == "approve"}, now)
        now += timedelta(seconds=1)
    w.obj["status"] = status
    w.now = now
    w.annotate(ANNOTATION_APPROVE, "6")
    w.step(1)
    status, now = w.obj["status"], w.now
    for _ in range(200):
        due = [i for i in outbox.runnable(status.get("outbox") or [], now) if i["kind"] == "approve"]
        applied += [i["version"] for i in due]
        status, _ = record_outbox(status, {i["id"]: None for i in due}, now)
        now += timedelta(seconds=1)
    assert applied == ["5", "6"]


# ---------------------------------------------------------------------------------------------- L5, L7
def test_a_tz_directory_is_a_spec_problem_not_a_crash() -> None:
    problems = retrain_schedule_problems({"triggers": {"schedule": {"cron": "0 2 * * *", "timeZone": "America"}}})
    assert problems == ["spec.triggers.schedule.timeZone: 'America' is not an IANA time zone"]


def test_credentials_in_storage_options_are_refused_and_uris_redacted() -> None:
    spec = {"training": {"dataset": {"uri": "s3://b/d", "storageOptions": {"endpoint_url": "http://minio",
                                                                          "secret": "x"}}}}
    problems = retrain_schedule_problems(spec)
    assert len(problems) == 1 and "storageOptions.secret" in problems[0]
    assert redact_uri("https://u:p@host/p?sig=1") == "https://***@host/p?***"
    assert redact_uri("/local/d.csv") == "/local/d.csv"


# ---------------------------------------------------------------------------------------------- L10
def test_suspended_schedule_warns_about_no_missed_firing() -> None:
    w = World(rs(suspend=True, triggers={"schedule": {"cron": "0 * * * *"}}))
    w.step(1000, drift=DriftSample(None))
    for _ in range(6):
        w.step(3600, drift=DriftSample(None))  # each firing seen 1000 s late, past startingDeadlineSeconds
    assert "MissedSchedule" not in [e[0] for e in w.events]
    w.obj["spec"]["suspend"] = False
    w.step(3600)
    assert "MissedSchedule" in [e[0] for e in w.events]  # the same lateness unsuspended does warn


# ---------------------------------------------------------------------------------------------- L6
def test_hourly_cron_fires_in_both_occurrences_of_the_repeated_hour() -> None:
    """`0 * * * *` in America/New_York on 2030-11-03, ticking every minute: 01:00 EST was never run."""
    from datetime import UTC, datetime

    from modelops.decide.triggers import evaluate_cron

    start = datetime(2030, 11, 3, 3, 30, tzinfo=UTC)  # 23:30 EDT on Nov 2
    fired, since = [], start
    for minute in range(6 * 60):
        now = start + timedelta(minutes=minute)
        d = evaluate_cron("0 * * * *", "America/New_York", 300, since, now)
        if d.due is not None:
            fired.append(d.due)
            since = d.due
    hours = [f.strftime("%H:%M") for f in fired]  # UTC
    assert hours == ["04:00", "05:00", "06:00", "07:00", "08:00", "09:00"], hours  # 00 EDT, 01 EDT, 01 EST, 02 EST..


def test_daily_cron_in_the_repeated_hour_still_fires_once() -> None:
    from datetime import UTC, datetime

    from modelops.decide.triggers import evaluate_cron

    start = datetime(2030, 11, 3, 3, 0, tzinfo=UTC)
    fired, since = [], start
    for minute in range(8 * 60):
        now = start + timedelta(minutes=minute)
        d = evaluate_cron("30 1 * * *", "America/New_York", 300, since, now)
        if d.due is not None:
            fired.append(d.due)
            since = d.due
    assert len(fired) == 1, fired
