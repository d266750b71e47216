"""Kubernetes-style status conditions, computed purely.

Conventions (Kubernetes API conventions): `type` is PascalCase and names an observed state; `status` is
True/False/Unknown; `reason` one CamelCase word; `message` a sentence with specifics. lastTransitionTime
only moves when `status` flips, so re-applying the same condition (after an operator restart, say) is a
no-op. Code never branches on a phase string; phases are derived for display only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from modelops.api.times import format_time

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str


def _ts(now: datetime) -> str:
    return format_time(now)


def merge_conditions(current: Sequence[Mapping[str, Any]] | None, updates: Iterable[Condition],
                     generation: int | None, now: datetime) -> list[dict[str, Any]]:
    """Return `current` with each update applied, keeping order and lastTransitionTime where status holds."""
    out: list[dict[str, Any]] = [dict(c) for c in (current or []) if "type" in c]
    index = {c["type"]: i for i, c in enumerate(out)}
    for up in updates:
        new: dict[str, Any] = {"type": up.type, "status": up.status, "reason": up.reason,
                               "message": up.message, "observedGeneration": generation}
        if generation is None:
            del new["observedGeneration"]
        if up.type in index:
            old = out[index[up.type]]
            same_status = old.get("status") == up.status and "lastTransitionTime" in old
            new["lastTransitionTime"] = old["lastTransitionTime"] if same_status else _ts(now)
            out[index[up.type]] = new
        else:
            new["lastTransitionTime"] = _ts(now)
            index[up.type] = len(out)
            out.append(new)
    return out


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for c in conditions or []:
        if c.get("type") == type_:
            return c
    return None


def is_true(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> bool:
    c = find(conditions, type_)
    return c is not None and c.get("status") == "True"
