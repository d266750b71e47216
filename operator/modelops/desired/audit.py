"""Audit records of decisions and `modelops history` (pure).

One record per approve / reject / promote / rollback / abort: who (the Kubernetes username), when, what,
which version, and the sha256 of the evidence they were shown. The same record is written three ways by
the adapters: a Kubernetes Event on the object (reason `Decision<Action>`, the record as JSON in the
message), MLflow version tags (`modelops.dev/decision.<action>.<kind>.<namespace>.<name>` = the record's JSON, so the registry keeps
the history after Events expire), and the object's `modelops.dev/last-decision` annotation.

`history` rebuilds, from the ModelDeployment's `status.history` (finished rollouts, newest first) and the
decision records, each version's serving intervals (from promotion until the next promotion) and the
decisions taken on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

ACTIONS = ("approve", "reject", "promote", "rollback", "abort")
#: MLflow version tag prefix; one tag per action so an approve and the later promote both stay
TAG_PREFIX = "modelops.dev/decision."
#: annotation holding the latest record on the object itself
ANN_LAST_DECISION = "modelops.dev/last-decision"
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


def records_from_event_messages(messages: Sequence[str]) -> list[Record]:
    """Records mirrored into Event messages (the JSON after the first ': {')."""
    out = []
    for m in messages:
        i = m.find(": {")
        if i >= 0:
            try:
                out.append(Record.from_json(m[i + 2:]))
            except (ValueError, TypeError):
                continue
    return out


def records_from_tags(tags: Mapping[str, str]) -> list[Record]:
    out = []
    for key, value in tags.items():
        if key.startswith(TAG_PREFIX):
            try:
                out.append(Record.from_json(value))
            except (ValueError, TypeError):
                continue
    return sorted(out, key=lambda r: r.time)


@dataclass
class VersionHistory:
    version: str
    #: [start, end) serving as the stable version; end "" while it still serves
    intervals: list[tuple[str, str]] = field(default_factory=list)
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[Record] = field(default_factory=list)


def history(status: Mapping[str, Any], records: Sequence[Record]) -> list[VersionHistory]:
    """Each version's serving intervals and decisions, oldest version first.

    A version serves 100% from the moment its rollout was promoted until the next promotion; the version
    the first recorded promotion replaced served before it (start unknown, shown as "")."""
    finished = sorted((dict(h) for h in status.get("history") or []), key=lambda h: str(h.get("finishedAt", "")))
    out: dict[str, VersionHistory] = {}

    def get(v: str) -> VersionHistory:
        return out.setdefault(v, VersionHistory(v))

    current: tuple[str, str] | None = None
    for h in finished:
        v = str(h.get("version", ""))
        get(v).rollouts.append(h)
        if h.get("result") == "Promoted":
            at = str(h.get("finishedAt", ""))
            prev = str(h.get("fromVersion") or "")
            if current is not None:
                get(current[0]).intervals.append((current[1], at))
            elif prev:
                get(prev).intervals.append(("", at))
            current = (v, at)
    stable = str((status.get("stable") or {}).get("version") or "")
    if current is not None:
        get(current[0]).intervals.append((current[1], ""))
    elif stable:
        get(stable).intervals.append(("", ""))
    for r in sorted(records, key=lambda r: r.time):
        get(r.version).decisions.append(r)

    def order(v: str) -> tuple[int, Any]:
        return (0, int(v)) if v.isdigit() else (1, v)

    return [out[v] for v in sorted(out, key=order)]


def format_history(model: str, versions: Sequence[VersionHistory]) -> str:
    lines = [f"model {model}"]
    for vh in versions:
        lines.append(f"version {vh.version}")
        for start, end in vh.intervals:
            lines.append(f"  served   {start or '(before history)'} -> {end or 'now'}")
        for h in vh.rollouts:
            lines.append(f"  rollout  {h.get('startedAt', '?')} -> {h.get('finishedAt', '?')}: "
                         f"{h.get('result')} ({h.get('reason')})")
        for r in vh.decisions:
            lines.append(f"  decision {r.time} {r.action} by {r.actor} via {r.via}"
                         + (f" evidence sha256 {r.evidence_sha256[:12]}" if r.evidence_sha256 else ""))
        if not (vh.intervals or vh.rollouts or vh.decisions):
            lines.append("  (no record)")
    return "\n".join(lines)
