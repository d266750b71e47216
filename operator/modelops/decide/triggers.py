"""Trigger evaluation of a RetrainSchedule, purely: cron, drift, manual, and the concurrency policy.

Every function takes the persisted state (from `status`) and `now`, and returns the new state plus what
fires; nothing here reads a clock, the network or the API server. The semantics, in one place:

Cron (`spec.triggers.schedule`)
  * The expression is read in `timeZone` (IANA) by croniter; a local time that does not exist (the DST
    spring-forward hour) fires at the first valid time after it, a repeated one (fall-back) fires once.
  * A firing time `t` is *due* when `since < t <= now`, where `since` is `status.lastScheduleTime` or, before
    the first firing, `status.scheduleAnchorTime` (the creation time of the object). Only the most recent
    due time is considered: firings missed while the operator was down are never replayed one by one
    (like CronJob).
  * A due firing at most `startingDeadlineSeconds` late starts; a later one is skipped and recorded
    (`lastScheduleTime` moves to it, an Event says how late it was).
  * While a firing is blocked by `concurrencyPolicy: Forbid` or by `suspend`, it is *not* consumed: once the
    running Job ends (or the schedule is resumed) it still starts if it is within the deadline, otherwise
    it is skipped as missed.

Drift (`spec.triggers.drift`)
  * The query is evaluated every `checkInterval`. It must return exactly one sample; the condition is
    `value <comparison> threshold`.
  * `holdingSince` is the first check at which the condition held, and is cleared by any check at which
    it does not hold, returns no data, or fails (Prometheus unreachable): a condition that could not be
    observed is not assumed to have held. A failed check makes the trigger Unknown and fires nothing.
  * The trigger fires at a check where the condition has held for at least `for` and the previous drift
    firing is at least `cooldown` ago; while drift persists it fires again every `cooldown`.
  * Blocked by Forbid or suspend, nothing is consumed: it fires at the first check after the block ends
    at which the condition still holds.
  (Check interval, hold and cooldown are `decide.hold`'s, shared with the performance trigger.)

Manual (`metadata.annotations["modelops.dev/retrain-requested-at"]`)
  * Any value different from `status.lastManualRequest` requests one run. It is consumed at once: when it
    cannot start (Forbid while a Job runs, or suspend) it is skipped and an Event says so, it is not
    queued for later.

Performance (`spec.triggers.performance`): see `decide.quality` (the same holding/`for`/cooldown rules as
drift, on the model's realised or estimated quality, with a minimum joined-label count).

One tick starts at most one run: when several triggers fire together (manual, then cron, then drift, then
performance order), the first starts and the others are recorded on that run as coalesced into it.

Concurrency (`spec.concurrencyPolicy`), when a run is still Pending or Running: Allow starts the new
one beside it; Forbid does not start it (see above); Replace stops the running Jobs (their runs end as
Replaced) and starts the new one.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import croniter

from modelops.api.times import format_time as format_time
from modelops.api.times import parse_duration as parse_duration
from modelops.api.times import parse_time as parse_time
from modelops.api.types import Sample
from modelops.decide import hold
from modelops.decide.hold import held

#: The drift query's result (one `api.types.Sample` for every PromQL answer).
DriftSample = Sample

Trigger = Literal["manual", "schedule", "drift", "performance"]
#: order in which triggers that fire in the same tick are considered
TRIGGER_ORDER: tuple[Trigger, ...] = ("manual", "schedule", "drift", "performance")
#: short form of each trigger in Job names
TRIGGER_ABBREV: dict[str, str] = {"manual": "manual", "schedule": "cron", "drift": "drift", "performance": "perf"}
#: longest Kubernetes object name that is also usable as a label value
MAX_NAME = 63


# --- cron -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CronDecision:
    #: the most recent due firing time, if any (fire it, or skip it when `missed`)
    due: datetime | None
    #: the due firing is later than startingDeadlineSeconds: record it as skipped, start nothing
    missed: bool
    #: how late the due firing is, in seconds (0 when none is due)
    lateness: float
    #: the first firing after `now`
    next_time: datetime


def _every_hour(cron: str) -> bool:
    """Whether the hour field is a wildcard (`*`, `*/n`): such a cron fires on every matching hour."""
    fields = cron.split()
    return len(fields) == 5 and fields[1].startswith("*")


def _repeated(naive: datetime, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """The two UTC instants of a wall-clock time in the hour repeated when DST ends; None for any other time."""
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return None
    for instant in (first, second):  # both must exist (a skipped spring hour also has two readings)
        if instant.astimezone(zone).replace(tzinfo=None) != naive:
            return None
    return first, second


def cron_times(cron: str, tz: str, around: datetime) -> tuple[datetime, datetime]:
    """(the latest firing time <= around, the earliest firing time > around), both in UTC.

    The hour repeated when DST ends (issue 16, L6): a cron whose hour field is a wildcard fires in both
    occurrences (`0 * * * *` in America/New_York skipped 01:00 EST), as cron daemons run wildcard jobs; a
    cron at fixed hours fires once, in the first occurrence (`30 1 * * *` fired in both). A time skipped in
    spring fires when the clock jumps, as before.
    """
    zone = ZoneInfo(tz)
    local = around.astimezone(zone)
    prev = croniter(cron, local + timedelta(microseconds=1)).get_prev(datetime).astimezone(UTC)
    nxt = croniter(cron, local).get_next(datetime).astimezone(UTC)
    if not _every_hour(cron):
        for which in ("prev", "nxt"):
            instant = prev if which == "prev" else nxt
            naive = instant.astimezone(zone).replace(tzinfo=None)
            pair = _repeated(naive, zone)
            if pair is None or instant != pair[1]:
                continue
            if which == "prev":
                prev = pair[0]
            else:  # the second reading of a fixed time is not a firing: the one after it is
                nxt = croniter(cron, naive).get_next(datetime).replace(tzinfo=zone).astimezone(UTC)
        return prev, nxt
    wall = local.replace(tzinfo=None)
    it = croniter(cron, wall - timedelta(hours=3, seconds=1))
    while True:
        naive = it.get_next(datetime)
        if naive > wall + timedelta(hours=3):
            break
        pair = _repeated(naive, zone)
        if pair is not None:
            prev = max([prev, *(c for c in pair if c <= around)])
            nxt = min([nxt, *(c for c in pair if c > around)])
    return prev, nxt


def evaluate_cron(cron: str, tz: str, starting_deadline_seconds: float, since: datetime,
                  now: datetime) -> CronDecision:
    """Which firing of `cron` is due at `now`, given that every firing at or before `since` was handled."""
    prev, nxt = cron_times(cron, tz, now)
    if prev <= since:
        return CronDecision(None, False, 0.0, nxt)
    lateness = (now - prev).total_seconds()
    return CronDecision(prev, lateness > starting_deadline_seconds, lateness, nxt)


# --- drift ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DriftConfig:
    threshold: float
    comparison: str = ">"
    for_seconds: float = 600.0
    cooldown_seconds: float = 3600.0
    check_interval_seconds: float = 60.0


@dataclass(frozen=True)
class DriftState:
    """What `status.drift` persists between checks."""

    last_check: datetime | None = None
    value: float | None = None
    holding_since: datetime | None = None
    last_fired: datetime | None = None
    message: str = ""


@dataclass(frozen=True)
class DriftDecision:
    state: DriftState
    #: "True" the condition holds, "False" it does not, "Unknown" it could not be observed
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    fire: bool = False
    #: deterministic key of this firing (the moment it became eligible), set when `fire`
    key: str = ""


def check_due(state: DriftState, cfg: DriftConfig, now: datetime) -> bool:
    """Whether the query should be evaluated at `now`."""
    return hold.check_due(state.last_check, cfg.check_interval_seconds, now)


def compare(value: float, comparison: str, threshold: float) -> bool:
    if comparison == ">":
        return value > threshold
    if comparison == ">=":
        return value >= threshold
    if comparison == "<":
        return value < threshold
    if comparison == "<=":
        return value <= threshold
    raise ValueError(f"unknown comparison {comparison!r}")


def evaluate_drift(state: DriftState, cfg: DriftConfig, sample: DriftSample, now: datetime,
                   blocked: str = "") -> DriftDecision:
    """Apply one evaluation of the drift query. `blocked` names why a firing could not start now (Forbid,
    suspend); a blocked firing consumes nothing."""
    if sample.value is None or math.isnan(sample.value):
        reason = sample.reason or "NoData"
        msg = sample.message or "the drift query returned no sample"
        new = DriftState(now, None, None, state.last_fired, msg)
        return DriftDecision(new, "Unknown", reason, f"{msg}; nothing fires until the query answers")
    value = sample.value
    cond = f"{value:g} {cfg.comparison} {cfg.threshold:g}"
    if not compare(value, cfg.comparison, cfg.threshold):
        new = DriftState(now, value, None, state.last_fired, f"{value:g} is not {cfg.comparison} {cfg.threshold:g}")
        return DriftDecision(new, "False", "BelowThreshold", new.message)
    h = held(cond, state.holding_since, state.last_fired, cfg.for_seconds, cfg.cooldown_seconds, now, blocked,
             "drift")
    new = DriftState(now, value, h.since, now if h.fire else state.last_fired, f"{cond} since {format_time(h.since)}")
    return DriftDecision(new, "True", h.reason, h.message, fire=h.fire, key=h.key)


# --- firings and Job names --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Firing:
    trigger: Trigger
    #: what makes this firing unique within its trigger: the cron time, the annotation value, the drift key
    key: str
    #: human-readable detail for status and Events
    detail: str = ""
    coalesced: tuple[str, ...] = field(default_factory=tuple)


def firing_hash(uid: str, trigger: str, key: str) -> str:
    return hashlib.sha256(f"{uid}|{trigger}|{key}".encode()).hexdigest()[:10]


def run_id(uid: str, firing: Firing) -> str:
    """Deterministic id of a firing: the same firing always gets the same id (and so the same Job)."""
    return f"{TRIGGER_ABBREV[firing.trigger]}-{firing_hash(uid, firing.trigger, firing.key)}"


def job_name(schedule_name: str, rid: str) -> str:
    """`<schedule>-<run id>`, the schedule name shortened so the whole fits in 63 characters."""
    room = MAX_NAME - len(rid) - 1
    prefix = schedule_name[:room].rstrip("-.")
    return f"{prefix}-{rid}"


# --- concurrency ------------------------------------------------------------------------------------------

Policy = Literal["Allow", "Forbid", "Replace"]


@dataclass(frozen=True)
class Admission:
    start: bool
    #: run ids to stop (Replace)
    replace: tuple[str, ...] = ()
    #: why it does not start (Forbid), empty when it starts
    blocked: str = ""


def admit(policy: str, active: list[str]) -> Admission:
    """May a new run start while the runs `active` are Pending or Running?"""
    if not active or policy == "Allow":
        return Admission(True)
    if policy == "Replace":
        return Admission(True, replace=tuple(active))
    return Admission(False, blocked=f"concurrencyPolicy Forbid and {', '.join(active)} still running")
