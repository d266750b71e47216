"""Trigger evaluation, table-driven: durations, cron with time zones and deadlines, drift for/cooldown,
concurrency admission, deterministic Job names."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops.decide.triggers import (
    MAX_NAME,
    DriftConfig,
    DriftSample,
    DriftState,
    Firing,
    admit,
    check_due,
    evaluate_cron,
    evaluate_drift,
    format_time,
    job_name,
    parse_duration,
    parse_time,
    run_id,
)

pytestmark = pytest.mark.unit


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) if "+" not in text else datetime.fromisoformat(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("10m", 600), ("1h", 3600), ("90s", 90), ("1h30m", 5400), ("250ms", 0.25), ("1.5s", 1.5), ("0s", 0),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "-5m", "1d", "5 minutes", "m", "10m junk"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_time_round_trip_keeps_microseconds() -> None:
    now = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert format_time(now) == "2026-05-01T12:00:00.123456Z"
    assert parse_time(format_time(now)) == now
    assert parse_time("2026-05-01T12:00:00Z") == now.replace(microsecond=0)
    assert parse_time(None) is None and parse_time("") is None


# (case, cron, tz, deadline, since, now, due, missed, next)
CRON = [
    ("nothing due yet", "30 2 * * *", "UTC", 300, "2026-05-01T00:00:00", "2026-05-01T02:29:59",
     None, False, "2026-05-01T02:30:00"),
    ("due exactly on time", "30 2 * * *", "UTC", 300, "2026-05-01T00:00:00", "2026-05-01T02:30:00",
     "2026-05-01T02:30:00", False, "2026-05-02T02:30:00"),
    ("due a little late", "30 2 * * *", "UTC", 300, "2026-05-01T00:00:00", "2026-05-01T02:34:59",
     "2026-05-01T02:30:00", False, "2026-05-02T02:30:00"),
    ("past the deadline", "30 2 * * *", "UTC", 300, "2026-05-01T00:00:00", "2026-05-01T02:35:01",
     "2026-05-01T02:30:00", True, "2026-05-02T02:30:00"),
    ("deadline zero means on time only", "* * * * *", "UTC", 0, "2026-05-01T00:00:00", "2026-05-01T00:05:00",
     "2026-05-01T00:05:00", False, "2026-05-01T00:06:00"),
    ("already handled", "30 2 * * *", "UTC", 300, "2026-05-01T02:30:00", "2026-05-01T02:31:00",
     None, False, "2026-05-02T02:30:00"),
    ("only the most recent missed firing", "0 * * * *", "UTC", 600, "2026-05-01T00:00:00",
     "2026-05-01T05:03:00", "2026-05-01T05:00:00", False, "2026-05-01T06:00:00"),
    ("time zone: 02:30 Berlin is 00:30 UTC in summer", "30 2 * * *", "Europe/Berlin", 300,
     "2026-06-01T00:00:00", "2026-06-01T00:30:10", "2026-06-01T00:30:00", False, "2026-06-02T00:30:00"),
    ("time zone: 02:30 Berlin is 01:30 UTC in winter", "30 2 * * *", "Europe/Berlin", 300,
     "2026-01-10T00:00:00", "2026-01-10T00:30:10", None, False, "2026-01-10T01:30:00"),
    ("DST spring-forward: missing 02:30 fires at 03:00 local", "30 2 * * *", "Europe/Berlin", 300,
     "2026-03-28T12:00:00", "2026-03-29T01:00:30", "2026-03-29T01:00:00", False, "2026-03-30T00:30:00"),
    ("New York", "0 9 * * 1-5", "America/New_York", 300, "2026-05-01T00:00:00", "2026-05-01T13:00:05",
     "2026-05-01T13:00:00", False, "2026-05-04T13:00:00"),
    ("@hourly", "@hourly", "UTC", 60, "2026-05-01T00:00:00", "2026-05-01T01:00:30",
     "2026-05-01T01:00:00", False, "2026-05-01T02:00:00"),
]


@pytest.mark.parametrize(("case", "cron", "tz", "deadline", "since", "now", "due", "missed", "nxt"), CRON,
                         ids=[c[0] for c in CRON])
def test_evaluate_cron(case: str, cron: str, tz: str, deadline: int, since: str, now: str, due: str | None,
                       missed: bool, nxt: str) -> None:
    d = evaluate_cron(cron, tz, deadline, t(since), t(now))
    assert d.due == (t(due) if due else None), case
    assert d.missed is missed, case
    assert d.next_time == t(nxt), case


CFG = DriftConfig(threshold=0.3, comparison=">", for_seconds=60, cooldown_seconds=600, check_interval_seconds=10)
T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def _run(values: list[float | None], cfg: DriftConfig = CFG, step: float = 10, state: DriftState | None = None,
         blocked_at: set[int] | None = None) -> tuple[list[int], DriftState, list[str]]:
    """Feed one sample per check; return the indices at which it fired, the final state and the reasons."""
    state = state or DriftState()
    fired, reasons = [], []
    for i, v in enumerate(values):
        now = T0 + timedelta(seconds=i * step)
        sample = DriftSample(v) if v is not None else DriftSample(None, "PrometheusUnreachable", "connection refused")
        d = evaluate_drift(state, cfg, sample, now, blocked="Forbid" if blocked_at and i in blocked_at else "")
        if d.fire:
            fired.append(i)
        reasons.append(d.reason)
        state = d.state
    return fired, state, reasons


def test_drift_fires_only_after_for() -> None:
    fired, state, reasons = _run([0.5] * 8)  # checks at 0..70s, for = 60s
    assert fired == [6]
    assert reasons[:6] == ["Pending"] * 6 and reasons[6] == "Fired" and reasons[7] == "CoolingDown"
    assert state.holding_since == T0 and state.last_fired == T0 + timedelta(seconds=60)


def test_drift_dip_resets_for() -> None:
    fired, _, reasons = _run([0.5] * 5 + [0.1] + [0.5] * 7)
    assert reasons[5] == "BelowThreshold"
    assert fired == [12]  # holds again from check 6 (60s), so 60s later: check 12


def test_drift_unreachable_is_unknown_and_resets() -> None:
    fired, _, reasons = _run([0.5] * 5 + [None] + [0.5] * 7)
    assert reasons[5] == "PrometheusUnreachable"
    assert fired == [12]


def test_drift_unknown_never_fires() -> None:
    fired, state, reasons = _run([None] * 20)
    assert fired == [] and set(reasons) == {"PrometheusUnreachable"}
    assert state.holding_since is None and "connection refused" in state.message


def test_drift_cooldown_spaces_firings() -> None:
    fired, _, _ = _run([0.5] * 140)  # 1400 s of continuous drift, cooldown 600 s
    assert fired == [6, 66, 126]


def test_drift_blocked_consumes_nothing() -> None:
    fired, _, reasons = _run([0.5] * 12, blocked_at={6, 7, 8})
    assert reasons[6:9] == ["Blocked"] * 3 and fired == [9]


@pytest.mark.parametrize(("comparison", "value", "holds"), [
    (">", 0.3, False), (">", 0.31, True), (">=", 0.3, True), ("<", 0.3, False), ("<", 0.2, True), ("<=", 0.3, True),
])
def test_drift_comparisons(comparison: str, value: float, holds: bool) -> None:
    cfg = DriftConfig(threshold=0.3, comparison=comparison, for_seconds=0, cooldown_seconds=0)
    d = evaluate_drift(DriftState(), cfg, DriftSample(value), T0)
    assert d.fire is holds and d.status == ("True" if holds else "False")


def test_drift_key_is_deterministic_from_persisted_state() -> None:
    state = DriftState(holding_since=T0, last_check=T0 + timedelta(seconds=50))
    a = evaluate_drift(state, CFG, DriftSample(0.9), T0 + timedelta(seconds=61))
    b = evaluate_drift(state, CFG, DriftSample(0.9), T0 + timedelta(seconds=75))  # a retry, later
    assert a.fire and b.fire and a.key == b.key == format_time(T0 + timedelta(seconds=60))


def test_check_due() -> None:
    assert check_due(DriftState(), CFG, T0)
    assert not check_due(DriftState(last_check=T0), CFG, T0 + timedelta(seconds=9.9))
    assert check_due(DriftState(last_check=T0), CFG, T0 + timedelta(seconds=10))


@pytest.mark.parametrize(("policy", "active", "start", "replace", "blocked"), [
    ("Forbid", [], True, (), False),
    ("Forbid", ["a"], False, (), True),
    ("Allow", ["a"], True, (), False),
    ("Replace", ["a", "b"], True, ("a", "b"), False),
    ("Replace", [], True, (), False),
])
def test_admit(policy: str, active: list[str], start: bool, replace: tuple[str, ...], blocked: bool) -> None:
    a = admit(policy, active)
    assert a.start is start and a.replace == replace and bool(a.blocked) is blocked


def test_run_id_is_deterministic_and_distinct() -> None:
    f = Firing("schedule", "2026-05-01T02:30:00.000000Z")
    assert run_id("uid-1", f) == run_id("uid-1", f)
    assert run_id("uid-1", f) != run_id("uid-2", f)
    assert run_id("uid-1", f) != run_id("uid-1", Firing("schedule", "2026-05-02T02:30:00.000000Z"))
    assert run_id("uid-1", f).startswith("cron-")
    assert run_id("uid-1", Firing("drift", "k")).startswith("drift-")
    assert run_id("uid-1", Firing("manual", "k")).startswith("manual-")


@given(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,251}[a-z0-9])?", fullmatch=True),
       st.sampled_from(["schedule", "drift", "manual"]), st.text(max_size=40))
def test_job_name_is_a_valid_label_value(name: str, trigger: str, key: str) -> None:
    rid = run_id("u", Firing(trigger, key))  # type: ignore[arg-type]
    j = job_name(name, rid)
    assert len(j) <= MAX_NAME and j.endswith(rid)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", j), j  # a DNS-1123 label
