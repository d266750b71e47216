"""When a condition-based RetrainSchedule trigger fires, purely: check interval, hold (`for`) and cooldown.

The drift trigger (`decide.triggers.evaluate_drift`) and the performance trigger
(`decide.quality.evaluate_performance`) observe different things (a PromQL value against a threshold; the
model's quality against a threshold or its training metric) but decide *when to fire* the same way, here:

  * a check is due every `checkInterval` (`check_due`);
  * the condition must have held at every check since `holdingSince` (the caller clears it whenever a check
    does not observe the condition: it does not hold, no data, or a failed query) for at least `for`;
  * the previous firing of the same trigger is at least `cooldown` ago; while the condition persists the
    trigger fires again every `cooldown`;
  * blocked (concurrencyPolicy Forbid, suspend): nothing is consumed, it fires at the first check after the
    block at which the condition still holds;
  * a firing's key is the moment it became eligible (`holdingSince + for`, or the end of the cooldown if
    later), so the same firing always gets the same run id (and Job) whoever computes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from modelops.api.times import format_time

Reason = Literal["Pending", "CoolingDown", "Blocked", "Fired"]


@dataclass(frozen=True)
class Held:
    """One check at which the condition held."""

    #: `holdingSince` to persist: the first check of the uninterrupted run of holding checks
    since: datetime
    reason: Reason
    message: str
    fire: bool = False
    #: deterministic key of the firing (the moment it became eligible), set when `fire`
    key: str = ""


def check_due(last_check: datetime | None, interval_seconds: float, now: datetime) -> bool:
    """Whether a trigger's condition should be observed at `now` (its previous check was at `last_check`)."""
    return last_check is None or (now - last_check).total_seconds() >= interval_seconds


def next_check(last_check: datetime | None, interval_seconds: float, now: datetime) -> float:
    """Seconds until the next check is due (<= 0: now)."""
    if last_check is None:
        return 0.0
    return (last_check + timedelta(seconds=interval_seconds) - now).total_seconds()


def held(cond: str, holding_since: datetime | None, last_fired: datetime | None, for_seconds: float,
         cooldown_seconds: float, now: datetime, blocked: str = "", trigger: str = "drift") -> Held:
    """Decide one check at which `cond` (a description of the condition, for messages) held.

    `holding_since`: when it started holding (None: it did not hold at the previous check); `last_fired`: the
    trigger's previous firing; `blocked`: why a firing could not start now (empty: it can); `trigger` names
    the trigger in messages."""
    since = holding_since or now
    held_for = (now - since).total_seconds()
    if held_for < for_seconds:
        return Held(since, "Pending", f"{cond}, holding for {held_for:.0f}s of the {for_seconds:g}s required")
    if last_fired is not None:
        since_fired = (now - last_fired).total_seconds()
        if since_fired < cooldown_seconds:
            return Held(since, "CoolingDown", f"{cond}; the last {trigger} run was {since_fired:.0f}s ago, the "
                                              f"cooldown is {cooldown_seconds:g}s")
    if blocked:
        return Held(since, "Blocked", f"{cond} for {held_for:.0f}s; not started: {blocked}")
    eligible = since + timedelta(seconds=for_seconds)
    if last_fired is not None:
        eligible = max(eligible, last_fired + timedelta(seconds=cooldown_seconds))
    return Held(since, "Fired", f"{cond} for {held_for:.0f}s (for {for_seconds:g}s): training started", fire=True,
                key=format_time(eligible))
