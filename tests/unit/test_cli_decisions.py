"""`modelops approve|reject|abort` (issue 18): the target syntax, which versions a decision may name, and the
operator mirroring a CLI decision's audit record (the console's record shape, via "cli") into one Event and
one MLflow tag when it acts on it; console records are not mirrored twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer

from modelops.api import ANNOTATION_APPROVE, ANNOTATION_REJECT, ANNOTATION_RETRAIN_REQUESTED
from modelops.api.audit import ANN_LAST_DECISION, TAG_PREFIX, Record
from modelops.decide.rollout import tick
from modelops.desired import audit
from modelops.handlers.cli import parse_target, pending_versions
from tests.unit.retrain.test_tick import World, result, rs
from tests.unit.rollout.test_audit_records import WHO, decision_tags
from tests.unit.rollout.test_tick import T0, V2, obs, rolling, spec

pytestmark = pytest.mark.unit


def cli_record(action: str, version: str = "2", actor: str = "system:serviceaccount:people:alice",
               kind: str = "modeldeployments", name: str = "churn-md") -> str:
    return Record(action=action, actor=actor, time="2026-01-01T11:59:00.000000Z", kind=kind, namespace="ml",
                  name=name, model="churn", version=version, via="cli").as_json()


@pytest.mark.parametrize(("target", "want"), [
    ("churn", ("retrainschedules", "churn")), ("rs/churn", ("retrainschedules", "churn")),
    ("modeldeployment/churn", ("modeldeployments", "churn")), ("md/churn", ("modeldeployments", "churn")),
    ("ModelDeployments/churn", ("modeldeployments", "churn"))])
def test_targets(target: str, want: tuple[str, str]) -> None:
    assert parse_target(target) == want


@pytest.mark.parametrize("target", ["pod/churn", "md/", "x/y"])
def test_bad_targets_are_refused_with_the_syntax(target: str) -> None:
    with pytest.raises(typer.BadParameter, match="modeldeployment/NAME"):
        parse_target(target)


def test_pending_versions_per_action() -> None:
    md = {"metadata": {"namespace": "ml", "name": "m"},
          "status": {"canary": {"version": "3"}, "rollout": {"state": "Progressing", "startedAt": "t"}}}
    assert pending_versions("modeldeployments", md, "abort") == ["3"]
    assert pending_versions("modeldeployments", md, "approve") == []  # not held for approval yet
    md["status"]["rollout"]["state"] = "AwaitingApproval"
    assert pending_versions("modeldeployments", md, "approve") == ["3"]
    md["metadata"]["annotations"] = {ANNOTATION_APPROVE: "3"}  # already decided
    assert pending_versions("modeldeployments", md, "reject") == []
    assert pending_versions("modeldeployments", {"status": {}}, "abort") == []


def test_a_cli_approval_is_mirrored_once_when_the_operator_promotes() -> None:
    ann = {ANNOTATION_APPROVE: "2", ANN_LAST_DECISION: cli_record("approve")}
    d = tick(spec(approval={"required": True}), rolling(step=1, passed=1, lastResult="Pass", state="AwaitingApproval"),
             obs(candidate=V2, ann=ann, **WHO), T0 + timedelta(seconds=11))
    assert d.status["stable"]["version"] == "2"
    dec = d.status["history"][0]["decision"]
    assert (dec["action"], dec["actor"], dec["via"]) == ("promote", "system:serviceaccount:people:alice", "cli")
    tags = decision_tags(d.status)
    assert sorted(tags) == [f"{TAG_PREFIX}approve.modeldeployments.ml.churn-md",
                            f"{TAG_PREFIX}promote.modeldeployments.ml.churn-md"]
    assert tags[f"{TAG_PREFIX}approve.modeldeployments.ml.churn-md"] == Record.from_json(cli_record("approve"))
    assert sorted(e.reason for e in d.events) == ["DecisionApproved", "Promoted"]
    recs = audit.records_from_event_messages([e.message for e in d.events])
    assert sorted(r.action for r in recs) == ["approve", "promote"]
    # the mirror is an Event only, no webhook notification of its own
    assert not [a for a in d.status.get("pendingActions") or [] if a.get("event") == "DecisionApproved"]


def test_a_cli_rejection_is_mirrored_and_the_rollback_names_the_person() -> None:
    ann = {ANNOTATION_REJECT: "2", ANN_LAST_DECISION: cli_record("reject", actor="system:serviceaccount:people:carol")}
    d = tick(spec(), rolling(), obs(candidate=V2, ann=ann, **WHO), T0 + timedelta(seconds=1))
    assert d.status["history"][0]["decision"]["actor"] == "system:serviceaccount:people:carol"
    assert sorted(r.action for r in decision_tags(d.status).values()) == ["reject", "rollback"]
    assert sorted(e.reason for e in d.events) == ["DecisionRejected", "RolledBack"]


def test_a_cli_abort_is_one_record_and_a_console_approval_is_not_mirrored_again() -> None:
    from modelops.api.vocabulary import ANN_ABORT

    d = tick(spec(), rolling(), obs(candidate=V2, ann={ANN_ABORT: "2", ANN_LAST_DECISION: cli_record("abort")},
                                    **WHO), T0 + timedelta(seconds=1))
    assert [r.action for r in decision_tags(d.status).values()] == ["abort"]
    assert [e.reason for e in d.events] == ["RolledBack"]
    console = Record.from_json(cli_record("approve")).__dict__ | {"via": "console"}
    ann = {ANNOTATION_APPROVE: "2", ANN_LAST_DECISION: Record(**console).as_json()}
    d = tick(spec(approval={"required": True}), rolling(step=1, passed=1, lastResult="Pass", state="AwaitingApproval"),
             obs(candidate=V2, ann=ann, **WHO), T0 + timedelta(seconds=11))
    assert [r.action for r in decision_tags(d.status).values()] == ["promote"]


def _cli_approved_run(recorded_version: str) -> World:
    """A RetrainSchedule whose run (version 5) awaits approval, approved through the CLI whose record names
    `recorded_version`."""
    w = World(rs())
    w.annotate(ANNOTATION_RETRAIN_REQUESTED, "r1")
    w.step(1)
    w.finish(w.runs[0]["job"], result("awaiting_approval", version=5))
    w.step(1)
    w.annotate(ANN_LAST_DECISION, cli_record("approve", version=recorded_version, kind="retrainschedules",
                                             name="churn"))
    w.annotate(ANNOTATION_APPROVE, "5")
    w.step(1)
    return w


def test_a_cli_approval_of_a_training_run_is_mirrored_with_the_registry_write() -> None:
    w = _cli_approved_run("5")
    items = [i for i in w.obj["status"].get("outbox") or [] if i["kind"] == "approve"]
    assert len(items) == 1
    assert list(items[0]["tags"]) == [f"{TAG_PREFIX}approve.retrainschedules.ml.churn"]
    assert [r for r, _m in w.events].count("DecisionApproved") == 1
    # a bare annotation (no record of this version) is not credited to anyone
    w2 = _cli_approved_run("4")
    assert "tags" not in next(i for i in w2.obj["status"]["outbox"] if i["kind"] == "approve")
    assert "DecisionApproved" not in [r for r, _m in w2.events]
