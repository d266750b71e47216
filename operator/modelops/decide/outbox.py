"""The outbox, purely: which items run now, in what order, and what an attempt's result does to status.

Both kinds keep the effects a tick decided in `status.outbox` (one envelope, see `api.types.OutboxItem`):
Kubernetes Events, webhook notifications and MLflow registry writes. The controller writes them with the
decision, then performs them and records the results here. Rules:

- Registry writes run strictly in order: the first one that is not due yet (backing off) or fails stops
  every later registry write, so a promotion's SetAlias never lands after the DeleteAlias that follows it,
  and an older approval never lands after a newer one.
- Notifications and Events do not wait for the registry, nor for each other.
- A failed attempt backs off exponentially (2 s, 4 s, ... up to 5 minutes), persisted in `notBefore`, so
  a restart neither forgets nor hammers. Notifications and Events are dropped after a few attempts
  (a Warning says so); registry writes are kept until MLflow answers, and the RegistrySynced condition
  turns False once one has failed `REGISTRY_ALERT_ATTEMPTS` times.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from modelops.api.times import format_time, parse_time
from modelops.api.types import EVENT_KIND, NOTIFY_KINDS, REGISTRY_KINDS, Event, OutboxItem
from modelops.decide.conditions import Condition, merge_conditions

#: notification (and Event) attempts before it is dropped (registry actions are retried forever)
MAX_NOTIFY_ATTEMPTS = 5
#: longest wait between two attempts of an outbox item
MAX_BACKOFF_SECONDS = 300.0
#: failed attempts of a registry write after which RegistrySynced turns False
REGISTRY_ALERT_ATTEMPTS = 3


def is_due(item: Mapping[str, Any], now: datetime) -> bool:
    nb = parse_time(item.get("notBefore"))
    return nb is None or nb <= now


def runnable(items: Sequence[Mapping[str, Any]], now: datetime) -> list[OutboxItem]:
    """The items to attempt now, in outbox order: every due Event and notification, and the registry
    writes up to (not including) the first one that is backing off."""
    out: list[OutboxItem] = []
    registry_blocked = False
    for item in items:
        if item.get("kind") in REGISTRY_KINDS:
            if registry_blocked or not is_due(item, now):
                registry_blocked = True
                continue
        elif not is_due(item, now):
            continue
        out.append(dict(item))
    return out


def due(items: Sequence[Mapping[str, Any]], now: datetime) -> list[OutboxItem]:
    """Every item whose next attempt is due (the order is the outbox's)."""
    return [dict(i) for i in items if is_due(i, now)]


def backoff(attempts: int) -> float:
    return min(2.0 ** attempts, MAX_BACKOFF_SECONDS)


def event_items(events: Iterable[Event], prefix: str) -> list[OutboxItem]:
    """Events as outbox items with ids unique in this object (`prefix` names the tick that decided them and
    must be unique per tick: the caller adds a random part, since a frozen test clock repeats times)."""
    return [{"id": f"{prefix}/event/{i}", "kind": EVENT_KIND, "type": e.type, "reason": e.reason,
             "message": e.message[:1024]} for i, e in enumerate(events)]


def record(status: Mapping[str, Any], results: Mapping[str, str | None], now: datetime, *,
           registry_condition: str = "when-failing", nonce: str = "") -> dict[str, Any]:
    """Apply attempt results (item id -> None on success, else the error without secrets) to a (fresh)
    status. Successes leave the outbox; failures back off; dropped notifications, and registry writes done
    for an approval, queue Events (as outbox items). `registry_condition`: "always" keeps a RegistrySynced
    condition, "when-failing" adds it only while a registry write has failed REGISTRY_ALERT_ATTEMPTS times
    (and sets it True again once the writes are through)."""
    st = copy.deepcopy(dict(status))
    events: list[Event] = []
    items: list[OutboxItem] = []
    for item in st.get("outbox") or []:
        if item.get("id") not in results:
            items.append(item)
            continue
        error = results[item["id"]]
        kind = item.get("kind")
        if error is None:
            if kind in ("approve", "reject"):
                events.append(Event("Normal", "RegistryUpdated",
                                    f"MLflow: {kind} of {item.get('model')} version {item.get('version')} done"))
            continue
        attempts = int(item.get("attempts", 0)) + 1
        if kind in NOTIFY_KINDS and attempts >= MAX_NOTIFY_ATTEMPTS:
            where = f"webhook {item['webhook']}" if "webhook" in item else "webhooks"
            events.append(Event("Warning", "NotificationFailed",
                                f"{where} {item.get('event')} dropped after {attempts} attempts: {error}"))
            continue
        if kind == EVENT_KIND and attempts >= MAX_NOTIFY_ATTEMPTS:
            continue  # status keeps the record; an Event the API server refuses five times is let go
        items.append({**item, "attempts": attempts, "lastError": error[:300],
                      "notBefore": format_time(now + timedelta(seconds=backoff(attempts)))})
    items += event_items(events, f"{format_time(now)}/{nonce or len(items)}/outbox")
    st["outbox"] = items
    cond = _registry_condition(items, registry_condition, st.get("conditions") or [])
    if cond is not None:
        st["conditions"] = merge_conditions(st.get("conditions"), [cond], st.get("observedGeneration"), now)
    return st


def _registry_condition(items: Sequence[Mapping[str, Any]], mode: str,
                        conditions: Sequence[Mapping[str, Any]]) -> Condition | None:
    registry = [i for i in items if i.get("kind") in REGISTRY_KINDS]
    failing = [i for i in registry if i.get("lastError")]
    if mode == "always":
        if failing:
            return Condition("RegistrySynced", "False", "RegistryUnavailable",
                             f"{len(registry)} MLflow registry action(s) pending, retried with backoff; last "
                             f"error: {failing[0]['lastError']}")
        if registry:
            return Condition("RegistrySynced", "Unknown", "Pending", f"{len(registry)} MLflow registry action(s) "
                             "pending")
        return Condition("RegistrySynced", "True", "Synced", "every registry action is done")
    alerting = [i for i in failing if int(i.get("attempts", 0)) >= REGISTRY_ALERT_ATTEMPTS]
    if alerting:
        first = alerting[0]
        return Condition("RegistrySynced", "False", "RegistryUnavailable",
                         f"{first.get('kind')} {first.get('alias') or ''} of {first.get('model')} failed "
                         f"{first.get('attempts')} times, retried with backoff ({len(registry)} registry "
                         f"action(s) pending); last error: {first['lastError']}")
    if any(c.get("type") == "RegistrySynced" and c.get("status") != "True" for c in conditions) and not failing:
        return Condition("RegistrySynced", "True", "Synced", "every registry action is done")
    return None


def from_pending_actions(status: Mapping[str, Any]) -> dict[str, Any]:
    """Read a ModelDeployment status of the old shape (`status.pendingActions`, before the one outbox) once:
    its actions become outbox items, in order, keeping their attempt counts; `pendingActions` is removed
    (a merge patch then deletes it from the object)."""
    old = list(status.get("pendingActions") or [])
    if "pendingActions" not in status:
        return dict(status)
    st = {k: v for k, v in status.items() if k != "pendingActions"}
    st["outbox"] = [*list(status.get("outbox") or []),
                    *({**a, "id": f"migrated/{i}/{a.get('kind', '')}"} for i, a in enumerate(old))]
    return st
