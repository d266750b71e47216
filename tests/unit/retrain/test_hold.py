"""decide.hold: the check interval, hold (`for`) and cooldown shared by the drift and performance triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelops.api.types import Sample
from modelops.decide import hold
from modelops.decide import quality as q
from modelops.decide.triggers import DriftConfig, DriftState, evaluate_drift, format_time

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_pending_fired_cooling_down_and_again_after_the_cooldown() -> None:
    h = hold.held("x > 1", None, None, 60, 600, at(0))
    assert (h.reason, h.since, h.fire) == ("Pending", at(0), False)
    assert h.message == "x > 1, holding for 0s of the 60s required"
    h = hold.held("x > 1", h.since, None, 60, 600, at(59))
    assert h.reason == "Pending"
    h = hold.held("x > 1", h.since, None, 60, 600, at(75))
    assert (h.reason, h.fire, h.key) == ("Fired", True, format_time(at(60)))  # eligible at since + for
    assert h.message == "x > 1 for 75s (for 60s): training started"
    h = hold.held("x > 1", h.since, at(75), 60, 600, at(300), trigger="performance")
    assert h.reason == "CoolingDown" and not h.fire
    assert h.message == "x > 1; the last performance run was 225s ago, the cooldown is 600s"
    h = hold.held("x > 1", h.since, at(75), 60, 600, at(700))
    assert h.fire and h.key == format_time(at(675))  # eligible at the end of the cooldown


def test_blocked_consumes_nothing() -> None:
    h = hold.held("x > 1", at(0), None, 60, 600, at(100), blocked="concurrencyPolicy Forbid and a still running")
    assert (h.reason, h.fire, h.since) == ("Blocked", False, at(0))
    assert h.message == "x > 1 for 100s; not started: concurrencyPolicy Forbid and a still running"
    h = hold.held("x > 1", h.since, None, 60, 600, at(130))
    assert h.fire and h.key == format_time(at(60))  # the same firing (same key) as if never blocked


def test_check_due_and_next_check() -> None:
    assert hold.check_due(None, 60, T0) and hold.next_check(None, 60, T0) == 0.0
    assert not hold.check_due(at(0), 60, at(59)) and hold.check_due(at(0), 60, at(60))
    assert hold.next_check(at(0), 60, at(45)) == 15.0 and hold.next_check(at(0), 60, at(70)) == -10.0


def test_drift_and_performance_fire_at_the_same_checks() -> None:
    """Both triggers fed a condition that holds at the same checks decide the same: same reasons, same keys."""
    dcfg = DriftConfig(threshold=0.3, comparison=">=", for_seconds=120, cooldown_seconds=300,
                       check_interval_seconds=30)
    pcfg = q.PerformanceConfig(model="m", namespace="ns", metric="auc", threshold=0.8, min_labels=10,
                               for_seconds=120, cooldown_seconds=300, check_interval_seconds=30)
    holds = [True] * 6 + [False] + [True] * 20  # broken once: the hold restarts
    ds, ps = DriftState(), q.PerformanceState()
    seen = []
    for k, bad in enumerate(holds):
        now = at(30 * k)
        dd = evaluate_drift(ds, dcfg, Sample(value=0.5 if bad else 0.1), now)
        pd = q.evaluate_performance(ps, pcfg, q.PerformanceObservation(
            "1", Sample(value=1.0), Sample(value=0.7 if bad else 0.9), Sample(value=50.0)), None, now)
        assert (dd.fire, dd.key) == (pd.fire, pd.key), k
        assert dd.reason == pd.reason or (dd.reason, pd.reason) == ("BelowThreshold", "QualityHealthy"), k
        assert dd.state.holding_since == pd.state.holding_since and dd.state.last_fired == pd.state.last_fired
        ds, ps = dd.state, pd.state
        seen.append((dd.reason, dd.key))
    # fired at 120 s (held since 0 for 120 s); the hold restarts at 210 s after the break, the cooldown
    # keeps it until 420 s, then it fires every cooldown while the condition persists
    assert [(k, key) for k, (r, key) in enumerate(seen) if r == "Fired"] == [
        (4, format_time(at(120))), (14, format_time(at(420))), (24, format_time(at(720)))]
    assert seen[6][0] == "BelowThreshold" and seen[7][0] == "Pending" and seen[12][0] == "CoolingDown"
