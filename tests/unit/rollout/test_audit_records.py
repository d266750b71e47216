"""The operator's audit records (issue 18): one per promote / rollback / abort, in status.history, in the
Promoted / RolledBack Event's message and as an MLflow version tag; the person who asked is named when the
console or the CLI left its record, "unknown" for a bare annotation, the operator for its own decisions."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from modelops.api.audit import ANN_LAST_DECISION, OPERATOR_ACTOR, TAG_PREFIX, Record
from modelops.api.vocabulary import ANN_ABORT, ANN_APPROVE, ANN_REJECT
from modelops.decide.rollout import tick, with_record
from modelops.desired import audit
from tests.unit.rollout.test_tick import FAIL, PASS, SPEC, T0, V2, obs, rolling, spec

pytestmark = pytest.mark.unit

WHO = {"namespace": "ml", "name": "churn-md"}
EVIDENCE = "ab" * 32


def console_record(action: str, version: str = "2", actor: str = "alice") -> str:
    return Record(action=action, actor=actor, time="2026-01-01T11:59:00.000000Z", kind="modeldeployments",
                  namespace="ml", name="churn-md", model="churn", version=version, evidence_sha256=EVIDENCE,
                  via="console").as_json()


def decision_tags(status: dict) -> dict[str, Record]:
    out = {}
    for act in status.get("pendingActions") or []:
        if act["kind"] == "TagVersion":
            for key, value in act["tags"].items():
                if key.startswith(TAG_PREFIX):
                    out[key] = Record.from_json(value)
    return out


def event_records(decision) -> list[Record]:
    return audit.records_from_event_messages([e.message for e in decision.events])


def test_an_automatic_promotion_is_the_operators_record_everywhere() -> None:
    d = tick(SPEC, rolling(step=1, passed=1, lastResult="Pass"), obs(candidate=V2, **WHO), T0 + timedelta(seconds=11))
    entry = d.status["history"][0]
    assert entry["decision"] == {"action": "promote", "actor": OPERATOR_ACTOR, "via": "operator",
                                 "time": "2026-01-01T12:00:11.000000Z", "comment": "AnalysisPassed"}
    tags = decision_tags(d.status)
    assert list(tags) == [f"{TAG_PREFIX}promote.modeldeployments.ml.churn-md"]
    rec = tags[f"{TAG_PREFIX}promote.modeldeployments.ml.churn-md"]
    assert (rec.action, rec.actor, rec.version, rec.model) == ("promote", OPERATOR_ACTOR, "2", "churn")
    # the Promoted Event carries the same record (no second Event)
    assert [e.reason for e in d.events] == ["Promoted"]
    assert event_records(d) == [rec]


def test_a_promotion_after_an_approval_names_the_approver_and_the_evidence() -> None:
    s = spec(approval={"required": True})
    ann = {ANN_APPROVE: "2", ANN_LAST_DECISION: console_record("approve")}
    d = tick(s, rolling(step=1, passed=1, lastResult="Pass", state="AwaitingApproval"),
             obs(candidate=V2, ann=ann, **WHO), T0 + timedelta(seconds=11))
    assert d.status["stable"]["version"] == "2"
    dec = d.status["history"][0]["decision"]
    assert (dec["actor"], dec["via"], dec["evidenceSha256"]) == ("alice", "console", EVIDENCE)
    assert event_records(d)[0].actor == "alice"


def test_an_approval_record_of_another_version_is_not_credited() -> None:
    s = spec(approval={"required": True})
    ann = {ANN_APPROVE: "2", ANN_LAST_DECISION: console_record("approve", version="7")}
    d = tick(s, rolling(step=1, passed=1, lastResult="Pass", state="AwaitingApproval"),
             obs(candidate=V2, ann=ann, **WHO), T0 + timedelta(seconds=11))
    assert d.status["history"][0]["decision"]["actor"] == "unknown"
    assert d.status["history"][0]["decision"]["via"] == "annotation"


def test_a_failed_analysis_rollback_is_the_operators_record() -> None:
    d = tick(SPEC, rolling(failedChecks=1), obs(candidate=V2, checks=FAIL, **WHO), T0 + timedelta(seconds=6))
    assert d.status["rollout"]["state"] == "RollingBack"
    dec = d.status["history"][0]["decision"]
    assert (dec["action"], dec["actor"], dec["comment"]) == ("rollback", OPERATOR_ACTOR, "AnalysisFailed")
    assert [r.action for r in decision_tags(d.status).values()] == ["rollback"]
    assert [r.action for r in event_records(d)] == ["rollback"]


def test_a_rejection_from_the_console_names_the_person() -> None:
    ann = {ANN_REJECT: "2", ANN_LAST_DECISION: console_record("reject", actor="bob")}
    d = tick(SPEC, rolling(), obs(candidate=V2, ann=ann, **WHO), T0 + timedelta(seconds=1))
    dec = d.status["history"][0]["decision"]
    assert (dec["action"], dec["actor"], dec["via"]) == ("rollback", "bob", "console")


def test_an_abort_by_bare_annotation_says_who_is_unknown() -> None:
    d = tick(SPEC, rolling(), obs(candidate=V2, ann={ANN_ABORT: "2"}, **WHO), T0 + timedelta(seconds=1))
    assert d.status["history"][0]["result"] == "Aborted"
    dec = d.status["history"][0]["decision"]
    assert (dec["action"], dec["actor"], dec["via"]) == ("abort", "unknown", "annotation")
    assert [r.action for r in decision_tags(d.status).values()] == ["abort"]


def test_history_reconstructs_serving_intervals_from_the_operators_records() -> None:
    st = rolling()
    now = T0
    for _ in range(10):  # v2 is promoted; the records land in status.history and the tags
        now += timedelta(seconds=5)
        d = tick(SPEC, st, obs(candidate=V2, checks=PASS, **WHO), now)
        st = d.status
        if "rollout" not in st:
            break
    records = list(decision_tags(st).values())
    versions = audit.history(st, records)
    by = {v.version: v for v in versions}
    assert by["2"].intervals == [(st["history"][0]["finishedAt"], "")]
    assert [r.action for r in by["2"].decisions] == ["promote"]
    assert "promote by modelops-operator via operator" in audit.format_history("churn", versions)


def test_the_record_always_fits_the_event_message() -> None:
    rec = Record.from_json(console_record("reject"))
    msg = with_record("x" * 5000, rec)
    assert len(msg) <= 1024 and audit.records_from_event_messages([msg]) == [rec]
    assert json.loads(msg[msg.rfind(": {") + 2:])["actor"] == "alice"
