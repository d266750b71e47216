"""Audit records and the serving history rebuilt from status.history and the records."""

from __future__ import annotations

import pytest

from modelops.api.audit import Record
from modelops.desired import audit

pytestmark = pytest.mark.unit
SHA = "a" * 64


def rec(action: str, version: str, time: str, actor: str = "alice") -> Record:
    return Record(action=action, actor=actor, time=time, kind="modeldeployments", namespace="ml",
                        name="churn", model="churn", version=version, evidence_sha256=SHA)


def test_record_validation_and_mirrors() -> None:
    with pytest.raises(ValueError, match="action"):
        rec("delete", "1", "t")
    with pytest.raises(ValueError, match="actor"):
        rec("approve", "1", "t", actor="")
    with pytest.raises(ValueError, match="64"):
        Record("approve", "a", "t", "k", "n", "m", "x", "1", evidence_sha256="xyz")
    r = rec("approve", "2", "2026-01-01T00:00:00Z")
    assert Record.from_json(r.as_json()) == r
    ev = r.event()
    assert ev["reason"] == "DecisionApproved" and ev["type"] == "Normal" and "alice" in ev["message"]
    assert audit.records_from_event_messages([ev["message"], "unrelated"]) == [r]
    assert audit.records_from_tags({**r.mlflow_tags(), "other": "x"}) == [r]
    assert rec("rollback", "2", "t").event()["type"] == "Warning"


def test_history_serving_intervals() -> None:
    status = {"stable": {"version": "3"}, "history": [  # newest first, as the operator writes it
        {"version": "3", "fromVersion": "2", "result": "Promoted", "reason": "AnalysisPassed",
         "startedAt": "2026-01-03T00:00:00Z", "finishedAt": "2026-01-03T01:00:00Z"},
        {"version": "4", "fromVersion": "2", "result": "RolledBack", "reason": "AnalysisFailed",
         "startedAt": "2026-01-02T10:00:00Z", "finishedAt": "2026-01-02T11:00:00Z"},
        {"version": "2", "fromVersion": "1", "result": "Promoted", "reason": "AnalysisPassed",
         "startedAt": "2026-01-02T00:00:00Z", "finishedAt": "2026-01-02T01:00:00Z"}]}
    records = [rec("approve", "3", "2026-01-03T00:59:00Z"), rec("reject", "4", "2026-01-02T10:30:00Z", "bob")]
    hist = {h.version: h for h in audit.history(status, records)}
    assert hist["1"].intervals == [("", "2026-01-02T01:00:00Z")]
    assert hist["2"].intervals == [("2026-01-02T01:00:00Z", "2026-01-03T01:00:00Z")]
    assert hist["3"].intervals == [("2026-01-03T01:00:00Z", "")]
    assert hist["4"].intervals == [] and hist["4"].rollouts[0]["result"] == "RolledBack"
    assert [d.actor for d in hist["4"].decisions] == ["bob"]
    text = audit.format_history("churn", list(hist.values()))
    assert "served   2026-01-03T01:00:00Z -> now" in text and "reject by bob" in text


def test_history_without_rollouts() -> None:
    hist = audit.history({"stable": {"version": "1"}}, [])
    assert [(h.version, h.intervals) for h in hist] == [("1", [("", "")])]
