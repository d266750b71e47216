"""Audit records of decisions and `modelops history` (pure).

The record itself (`Record`: who, when, what, which version, the evidence's sha256) and where it is
written are the contract in `modelops.api.audit`; this module reads records back and reconstructs history.

`history` rebuilds, from the ModelDeployment's `status.history` (finished rollouts, newest first) and the
decision records, each version's serving intervals (from promotion until the next promotion) and the
decisions taken on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelops.api.audit import TAG_PREFIX, Record


def records_from_event_messages(messages: Sequence[str]) -> list[Record]:
    """Records mirrored into Event messages (the JSON after the last ': {'; the record's JSON is compact, so
    it never contains ': {' itself)."""
    out = []
    for m in messages:
        i = m.rfind(": {")
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
