"""The one outbox executor: performs what `decide.outbox.runnable` allows, in order, within the budget.

`perform(item)` does one item and returns None on success or an error message without secrets; it may
raise BudgetExhausted, which leaves that item and every later one for the next pass. A failed registry
write stops the registry writes after it (they keep their order). The results go to
`decide.outbox.record` against a fresh status.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from modelops.adapters.kube import Conflict
from modelops.api.types import REGISTRY_KINDS, OutboxItem
from modelops.controller.budget import Budget, BudgetExhausted
from modelops.decide import outbox

log = logging.getLogger("modelops.outbox")
Perform = Callable[[OutboxItem], "str | None"]


def execute(items: Sequence[Mapping[str, Any]], perform: Perform, now: datetime, budget: Budget,
            where: str = "") -> dict[str, str | None]:
    """Item id -> None (done) or the error, for the items attempted in this pass."""
    results: dict[str, str | None] = {}
    registry_failed = False
    for item in outbox.runnable(items, now):
        kind = item.get("kind")
        if kind in REGISTRY_KINDS and registry_failed:
            continue
        if budget.exhausted:
            break
        try:
            error = perform(item)
        except BudgetExhausted:
            break
        except Exception as exc:  # one item's bug must not lose the others' results
            log.exception("%s: outbox item %s (%s) failed", where, item.get("id"), kind)
            error = f"{type(exc).__name__}: {exc}"[:300]
        if error is not None:
            log.warning("%s: %s %s failed (attempt %d): %s", where, kind, item.get("id"),
                        int(item.get("attempts", 0)) + 1, error)
            if kind in REGISTRY_KINDS:
                registry_failed = True
        results[str(item.get("id"))] = error
    return results


def drain(body: dict[str, Any], perform: Callable[[Mapping[str, Any], OutboxItem], str | None],
          write: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
          reread: Callable[[], dict[str, Any] | None], now: datetime, budget: Budget, *,
          registry_condition: str = "when-failing", passes: int = 2) -> dict[str, Any]:
    """Perform `body`'s runnable outbox items and record the results in its status; repeat once for what
    the recording itself queued (the Events of finished items). `write(body, new_status)` writes status
    (Conflict when `body` is stale: the results are then recorded against `reread()`). Returns the object
    as last written."""
    meta = body.get("metadata") or {}
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    for _ in range(passes):
        items = (body.get("status") or {}).get("outbox") or []
        if not items or budget.exhausted:
            return body
        current = body

        def one(item: OutboxItem, obj: dict[str, Any] = current) -> str | None:
            return perform(obj, item)

        results = execute(items, one, now, budget, where)
        if not results:
            return body
        for _attempt in range(3):
            new = outbox.record(body.get("status") or {}, results, now, registry_condition=registry_condition,
                                nonce=uuid.uuid4().hex[:8])
            if not new.get("outbox"):
                new.pop("outbox", None)
            try:
                body = write(body, new)
                break
            except Conflict:
                fresh = reread()
                if fresh is None:
                    return body
                body = fresh
        else:
            return body  # performed again next time: each item is idempotent
    return body
