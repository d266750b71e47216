"""Audit records of decisions (one contract for the operator, the console and the CLI).

One record per approve / reject / promote / rollback / abort: who (the Kubernetes username, or the
operator itself for what it decides), when, what, which version, and the sha256 of the evidence shown. It
is written three ways: a Kubernetes Event on the object (reason `Decision<Action>`, the record as JSON in
the message), MLflow version tags (`modelops.dev/decision.<action>.<kind>.<namespace>.<name>` = the
record's JSON, so the registry keeps the history after Events expire), and on the object (the console's
`modelops.dev/last-decision` annotation; the operator's `decision` field of each `status.history` entry).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

ACTIONS = ("approve", "reject", "promote", "rollback", "abort")
#: MLflow version tag prefix; one tag per action so an approve and the later promote both stay
TAG_PREFIX = "modelops.dev/decision."
#: annotation holding the latest record on the object itself
ANN_LAST_DECISION = "modelops.dev/last-decision"
#: the actor of what the operator decides by itself (a promotion after a passing analysis, a rollback)
OPERATOR_ACTOR = "modelops-operator"
EVENT_REASONS = {"approve": "DecisionApproved", "reject": "DecisionRejected", "promote": "DecisionPromoted",
                 "rollback": "DecisionRolledBack", "abort": "DecisionAborted"}


@dataclass(frozen=True)
class Record:
    action: str
    actor: str
    time: str
    kind: str
    namespace: str
    name: str
    model: str
    version: str
    evidence_sha256: str = ""
    #: "console", "link" (a signed email / chat link), "cli", "operator"
    via: str = "console"
    comment: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {self.action!r}")
        if not self.actor:
            raise ValueError("actor must name who decided")
        if self.evidence_sha256 and (len(self.evidence_sha256) != 64
                                     or any(c not in "0123456789abcdef" for c in self.evidence_sha256)):
            raise ValueError("evidence_sha256 must be 64 lower-case hex digits")

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> Record:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a decision record is a JSON object")
        return Record(**{k: str(v) for k, v in data.items() if k in Record.__dataclass_fields__})

    def event(self) -> dict[str, str]:
        """Type, reason and message of the Kubernetes Event that mirrors the record."""
        return {"type": "Warning" if self.action in ("reject", "rollback", "abort") else "Normal",
                "reason": EVENT_REASONS[self.action],
                "message": f"{self.actor} {self.action} version {self.version} via {self.via} "
                           f"(evidence sha256 {self.evidence_sha256 or '-'}): {self.as_json()}"[:1024]}

    def mlflow_tags(self) -> dict[str, str]:
        """One tag per action and deciding object (a version served by several ModelDeployments keeps each
        one's decision): modelops.dev/decision.<action>.<kind>.<namespace>.<name>."""
        return {f"{TAG_PREFIX}{self.action}.{self.kind}.{self.namespace}.{self.name}"[:250]: self.as_json()}

    def status_entry(self) -> dict[str, str]:
        """The record as the `decision` field of a status.history entry (camelCase, empty fields left out)."""
        out = {"action": self.action, "actor": self.actor, "time": self.time, "via": self.via}
        if self.evidence_sha256:
            out["evidenceSha256"] = self.evidence_sha256
        if self.comment:
            out["comment"] = self.comment[:500]
        return out
