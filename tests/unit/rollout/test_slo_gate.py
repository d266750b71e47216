"""SLO gates (issue 14): burn-rate thresholds from spec.slos (the SRE workbook's 14.4x / 6x for 30 days), and
the rollout holding start and advance with condition BudgetExhausted while the fast-burn alert fires, then
resuming by itself; a Prometheus that cannot answer holds too (never a pass)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from modelops.decide.rollout import tick
from modelops.decide.slo import (
    FAST_BURN_ALERT,
    BudgetState,
    Slo,
    budget_verdict,
    fast_burn_query,
    slo_problems,
    slos_of,
)
from modelops.decide.spec_checks import model_deployment_problems
from tests.unit.rollout.test_tick import PASS, T0, V2, cond, obs, rolling, serving, spec

pytestmark = pytest.mark.unit
SLOS = [{"name": "availability", "objective": 99.9, "window": "720h"},
        {"name": "latency", "objective": 99.0, "latency": {"thresholdSeconds": 0.1}}]
EXHAUSTED = budget_verdict(slos_of({"slos": SLOS}), 1.0, None)
OK = budget_verdict(slos_of({"slos": SLOS}), None, None)
UNKNOWN = budget_verdict(slos_of({"slos": SLOS}), None, "connection refused")


def test_burn_thresholds_are_the_workbooks_for_a_30_day_window_and_scale_with_it() -> None:
    slo = slos_of({"slos": SLOS})[0]
    assert slo.burn_factors() == pytest.approx({"fast": 14.4, "slow": 6.0})
    assert slo.burn_thresholds() == pytest.approx({"fast": 0.0144, "slow": 0.006})
    week = Slo("availability", 99.0, 7 * 86400.0)
    assert week.burn_factors() == pytest.approx({"fast": 0.02 * 168, "slow": 0.05 * 28})
    assert slos_of({"slos": SLOS})[1].threshold_seconds == 0.1
    assert slos_of({"slos": [{"name": "availability", "objective": 99.5}]})[0].window_seconds == 30 * 86400


def test_the_gate_query_reads_the_firing_fast_burn_alert_of_this_deployment() -> None:
    q = fast_burn_query("ml", "churn")
    assert f'alertname="{FAST_BURN_ALERT}"' in q and 'alertstate="firing"' in q
    assert 'namespace="ml"' in q and 'isvc="churn"' in q
    assert budget_verdict([], 1.0, None).state == "ok"  # no SLO declared: no gate
    assert (EXHAUSTED.state, OK.state, UNKNOWN.state) == ("exhausted", "ok", "unknown")


def test_bad_slos_are_spec_problems() -> None:
    assert slo_problems({"slos": SLOS}) == []
    bad = {"slos": [{"name": "latency", "objective": 99, "latency": {"thresholdSeconds": 0.3}},
                    {"name": "freshness", "objective": 99}]}
    problems = model_deployment_problems(bad)
    assert any("spec.slos[latency].latency.thresholdSeconds" in p for p in problems)
    assert any("spec.slos[freshness].name" in p for p in problems)


def slo_spec() -> dict[str, Any]:
    s = spec()
    s["slos"] = SLOS
    return s


@pytest.mark.parametrize("budget", [EXHAUSTED, UNKNOWN], ids=["fast-burn", "prometheus-down"])
def test_no_canary_starts_while_the_budget_burns_and_it_starts_by_itself_after(budget: BudgetState) -> None:
    st = tick(slo_spec(), serving(), obs(candidate=V2, budget=budget), T0).status
    assert "rollout" not in st and "canary" not in st
    progressing = cond(st, "Progressing")
    assert progressing["status"] == "False" and progressing["reason"] == "BudgetExhausted"
    gate = cond(st, "BudgetExhausted")
    assert gate["status"] == ("True" if budget is EXHAUSTED else "Unknown")
    later = tick(slo_spec(), st, obs(candidate=V2, budget=OK), T0 + timedelta(minutes=5)).status
    assert later["rollout"]["state"] == "Progressing" and later["canary"]["version"] == "2"
    assert cond(later, "BudgetExhausted")["status"] == "False"


def test_a_canary_holds_its_step_while_the_budget_burns_and_advances_after() -> None:
    st = rolling(step=0, passed=1, lastResult="Pass")
    due = T0 + timedelta(seconds=30)  # the step's pause is over and the analysis passed
    held = tick(slo_spec(), st, obs(candidate=V2, checks=PASS, budget=EXHAUSTED), due).status
    assert held["rollout"]["step"] == 0 and held["rollout"]["weight"] == 10
    assert cond(held, "Progressing")["reason"] == "BudgetExhausted"
    assert cond(held, "BudgetExhausted")["status"] == "True"
    resumed = tick(slo_spec(), held, obs(candidate=V2, checks=PASS, budget=OK), due + timedelta(seconds=10)).status
    assert resumed["rollout"]["step"] == 1 and resumed["rollout"]["weight"] == 50


def test_without_slos_nothing_changes() -> None:
    st = rolling(step=0, passed=1, lastResult="Pass")
    out = tick(spec(), st, obs(candidate=V2, checks=PASS), T0 + timedelta(seconds=30)).status
    assert out["rollout"]["step"] == 1
    assert not [c for c in out["conditions"] if c["type"] == "BudgetExhausted"]
