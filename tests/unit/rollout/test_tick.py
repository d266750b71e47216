"""Table-driven tests of the pure rollout tick: every branch, stepped with fake observations."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelops.decide.analysis import Check
from modelops.decide.rollout import (
    IsvcState,
    ModelRef,
    Observed,
    Resolution,
    ServingPlan,
    analysis_due,
    tick,
    ts,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
V1 = ModelRef("http://mlflow/artifacts/1", "1", "run1", "champion")
V2 = ModelRef("http://mlflow/artifacts/2", "2", "run2", "challenger")
V3 = ModelRef("http://mlflow/artifacts/3", "3", "run3", "challenger")
READY = IsvcState(ready=True, settled=True, canary_ready=True, url="http://churn.ns.example.com")

SPEC: dict[str, Any] = {
    "model": {"name": "churn", "alias": "champion"},
    "serving": {"runtime": "modelops", "minReplicas": 1, "maxReplicas": 3},
    "rollout": {"strategy": "Canary", "steps": [{"weight": 10, "pause": "10s"}, {"weight": 50, "pause": "10s"}],
                "analysis": {"interval": "5s", "failureLimit": 1, "consecutiveErrorLimit": 2, "inconclusiveLimit": 2,
                             "metrics": [{"name": "success", "query": "q", "thresholdRange": {"min": 0.99}}]},
                "approval": {"required": False}, "historyLimit": 10},
}

PASS = [Check("success", "Pass", 1.0)]
FAIL = [Check("success", "Fail", 0.5, message="canary 0.5 < min 0.99")]
NODATA = [Check("success", "Inconclusive", message="no data for the canary")]
ERROR = [Check("success", "Error", message="canary query failed: connection refused")]


def spec(**rollout: Any) -> dict[str, Any]:
    s = copy.deepcopy(SPEC)
    s["rollout"].update(rollout)
    return s


def obs(tracked: ModelRef | None = V1, candidate: ModelRef | None = None, isvc: IsvcState | None = READY,
        checks: list[Check] | None = None, ann: dict[str, str] | None = None, **kw: Any) -> Observed:
    return Observed(generation=1, resolution=Resolution(tracked, candidate), isvc=isvc, checks=checks,
                    annotations=ann or {}, **kw)


def serving(ref: ModelRef = V1) -> dict[str, Any]:
    """Status of a ModelDeployment that serves `ref` with no rollout."""
    return tick(SPEC, {}, obs(tracked=ref), T0).status


def rolling(step: int = 0, started: datetime = T0, **extra: Any) -> dict[str, Any]:
    st = tick(SPEC, serving(), obs(candidate=V2), started).status
    st["rollout"].update({"step": step, "weight": [10, 50][step], **extra})
    st.pop("pendingActions", None)
    return st


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def kinds(status: dict[str, Any]) -> list[str]:
    return [a["kind"] + ":" + a.get("alias", a.get("event", ",".join(a.get("tags", {})))) for a in
            status.get("pendingActions") or []]


@dataclass
class Case:
    name: str
    spec: dict[str, Any]
    status: Callable[[], dict[str, Any]]
    observed: Observed
    now: datetime
    plan: ServingPlan | None
    state: str | None  # status.rollout.state afterwards (None: no rollout)
    progressing: tuple[str, str]
    events: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    extra: Callable[[dict[str, Any]], None] | None = None


def _v(ref: ModelRef) -> ModelRef:
    """The ref as it comes back out of status (no 'rejected')."""
    return replace(ref, rejected="")


CASES = [
    Case("first-deploy-serves-the-tracked-version", SPEC, dict, obs(), T0, ServingPlan(V1), None,
         ("False", "Complete"), ["Deployed"]),
    Case("nothing-resolved-yet-serves-nothing", SPEC, dict,
         Observed(1, Resolution(error="alias champion not found", reason="AliasNotFound"), None), T0, None,
         None, ("", ""), extra=lambda st: (
             cond(st, "ModelResolved")["reason"] == "AliasNotFound" or pytest.fail("reason"),
             cond(st, "Ready")["reason"] == "NoModel" or pytest.fail("ready"))),
    Case("steady-state", SPEC, serving, obs(), T0, ServingPlan(V1), None, ("False", "Complete")),
    Case("challenger-starts-a-canary", SPEC, serving, obs(candidate=V2), T0,
         ServingPlan(V1, _v(V2), 10), "Progressing", ("True", "RolloutStarted"), ["RolloutStarted"],
         ["Notify:RolloutStarted"]),
    Case("tracked-alias-moved-starts-a-canary", SPEC, serving, obs(tracked=replace(V2, alias="champion")), T0,
         ServingPlan(V1, replace(V2, alias="champion"), 10), "Progressing", ("True", "RolloutStarted"),
         ["RolloutStarted"], ["Notify:RolloutStarted"]),
    Case("rejected-candidate-is-ignored", SPEC, serving, obs(candidate=replace(V2, rejected="bad")), T0,
         ServingPlan(V1), None, ("False", "Complete")),
    Case("rejected-tracked-version-is-refused", SPEC, serving,
         obs(tracked=replace(V2, alias="champion", rejected="bad")), T0, ServingPlan(V1), None,
         ("False", "CandidateRejected")),
    Case("immediate-strategy-promotes-at-once", spec(strategy="Immediate"), serving, obs(candidate=V2), T0,
         ServingPlan(replace(_v(V2), alias="champion")), None, ("False", "Complete"), ["Promoted"],
         ["SetAlias:champion", "TagVersion:modelops.dev/promoted-at,modelops.dev/previous-version",
          "DeleteAlias:challenger", "Notify:Promoted"]),
    Case("standard-mode-without-canary-api-refuses", SPEC, serving,
         obs(candidate=V2, mode="Standard", canary_supported=False, canary_unsupported="needs KServe >= 0.20"),
         T0, ServingPlan(V1), None, ("False", "CanaryUnsupported"), ["CanaryUnsupported"]),
    Case("abort-flag-blocks-a-new-rollout", spec(abort=True), serving, obs(candidate=V2), T0, ServingPlan(V1),
         None, ("False", "AbortRequested")),
    Case("step-waits-for-its-pause", SPEC, rolling, obs(candidate=V2, checks=PASS), T0 + timedelta(seconds=5),
         ServingPlan(V1, _v(V2), 10), "Progressing", ("True", "Progressing"), [], []),
    Case("advance-after-pause-and-pass", SPEC, lambda: rolling(passed=1, lastResult="Pass"),
         obs(candidate=V2), T0 + timedelta(seconds=11), ServingPlan(V1, _v(V2), 50), "Progressing",
         ("True", "StepAdvanced"), ["StepAdvanced"], ["Notify:StepAdvanced"]),
    Case("pass-in-this-tick-advances", SPEC, rolling, obs(candidate=V2, checks=PASS), T0 + timedelta(seconds=11),
         ServingPlan(V1, _v(V2), 50), "Progressing", ("True", "StepAdvanced"), ["StepAdvanced"],
         ["Notify:StepAdvanced"]),
    Case("no-data-holds-never-passes", SPEC, rolling, obs(candidate=V2, checks=NODATA), T0 + timedelta(seconds=11),
         ServingPlan(V1, _v(V2), 10), "Progressing", ("True", "Progressing"), ["AnalysisInconclusive"], [],
         extra=lambda st: (st["rollout"]["inconclusive"] == 1 and st["rollout"]["passed"] == 0)
         or pytest.fail(str(st["rollout"]))),
    Case("too-much-no-data-holds-for-a-person", SPEC, lambda: rolling(inconclusive=2),
         obs(candidate=V2, checks=NODATA), T0 + timedelta(seconds=11), ServingPlan(V1, _v(V2), 10), "Progressing",
         ("False", "NoData"), ["AnalysisInconclusive"], ["Notify:AnalysisInconclusive"]),
    Case("query-error-never-passes", SPEC, lambda: rolling(passed=1, lastResult="Pass"),
         obs(candidate=V2, checks=ERROR), T0 + timedelta(seconds=11), ServingPlan(V1, _v(V2), 10), "Progressing",
         ("True", "Progressing"), [], []),
    Case("consecutive-errors-hold-with-a-condition", SPEC, lambda: rolling(consecutiveErrors=2),
         obs(candidate=V2, checks=ERROR), T0 + timedelta(seconds=11), ServingPlan(V1, _v(V2), 10), "Progressing",
         ("False", "MetricsUnavailable"), extra=lambda st: (
             cond(st, "AnalysisHealthy")["reason"] == "MetricsUnavailable" or pytest.fail("analysis cond"))),
    Case("failure-below-limit-is-counted", SPEC, rolling, obs(candidate=V2, checks=FAIL),
         T0 + timedelta(seconds=11), ServingPlan(V1, _v(V2), 10), "Progressing", ("True", "Progressing"),
         ["AnalysisFailed"], ["Notify:AnalysisFailed"],
         extra=lambda st: st["rollout"]["failedChecks"] == 1 or pytest.fail("count")),
    Case("failure-over-limit-rolls-back", SPEC, lambda: rolling(failedChecks=1), obs(candidate=V2, checks=FAIL),
         T0 + timedelta(seconds=6), ServingPlan(V1, None, 0, pin_stable=True), "RollingBack",
         ("True", "RollingBack"), ["RolledBack"],
         ["TagVersion:modelops.dev/rejected", "DeleteAlias:challenger", "SetAlias:champion", "Notify:RolledBack"],
         extra=lambda st: (st["history"][0]["result"] == "RolledBack" and st["lastRejected"]["version"] == "2")
         or pytest.fail(str(st))),
    Case("rollback-settles-when-kserve-does", SPEC,
         lambda: tick(SPEC, rolling(failedChecks=1), obs(candidate=V2, checks=FAIL), T0).status,
         obs(), T0 + timedelta(seconds=2), ServingPlan(V1), None, ("False", "RolledBack")),
    Case("rolled-back-stays-rolled-back-when-idle", SPEC,
         lambda: tick(SPEC, tick(SPEC, rolling(failedChecks=1), obs(candidate=V2, checks=FAIL), T0).status,
                      obs(), T0 + timedelta(seconds=2)).status,
         obs(), T0 + timedelta(seconds=40), ServingPlan(V1), None, ("False", "RolledBack")),
    Case("rollback-waits-for-kserve", SPEC,
         lambda: tick(SPEC, rolling(failedChecks=1), obs(candidate=V2, checks=FAIL), T0).status,
         obs(isvc=replace(READY, settled=False)), T0 + timedelta(seconds=2), ServingPlan(V1, None, 0, True),
         "RollingBack", ("True", "RollingBack")),
    Case("rolled-back-version-is-not-retried", SPEC,
         lambda: tick(SPEC, tick(SPEC, rolling(failedChecks=1), obs(candidate=V2, checks=FAIL), T0).status,
                      obs(), T0).status,
         obs(candidate=V2), T0 + timedelta(seconds=3), ServingPlan(V1), None, ("False", "CandidateRejected")),
    Case("last-step-promotes", SPEC, lambda: rolling(step=1, passed=1, lastResult="Pass"), obs(candidate=V2),
         T0 + timedelta(seconds=11), ServingPlan(replace(_v(V2), alias="champion")), None, ("False", "Complete"), ["Promoted"],
         ["SetAlias:champion", "TagVersion:modelops.dev/promoted-at,modelops.dev/previous-version",
          "DeleteAlias:challenger", "Notify:Promoted"],
         extra=lambda st: (st["history"][0] | {"finishedAt": ""} == {
             "version": "2", "fromVersion": "1", "result": "Promoted", "reason": "AnalysisPassed",
             "startedAt": ts(T0), "finishedAt": "",
             "decision": {"action": "promote", "actor": "modelops-operator", "via": "operator",
                          "time": ts(T0 + timedelta(seconds=11)), "comment": "AnalysisPassed"}})
         or pytest.fail(str(st["history"]))),
    Case("approval-gate-holds", spec(approval={"required": True}), lambda: rolling(step=1, passed=1,
                                                                                   lastResult="Pass"),
         obs(candidate=V2), T0 + timedelta(seconds=11), ServingPlan(V1, _v(V2), 50), "AwaitingApproval",
         ("True", "AwaitingApproval"), ["AwaitingApproval"], ["Notify:AwaitingApproval"]),
    Case("approval-for-another-version-holds", spec(approval={"required": True}),
         lambda: rolling(step=1, passed=1, lastResult="Pass", state="AwaitingApproval"),
         obs(candidate=V2, ann={"modelops.dev/approve": "7"}), T0 + timedelta(seconds=11),
         ServingPlan(V1, _v(V2), 50), "AwaitingApproval", ("True", "AwaitingApproval")),
    Case("approval-promotes", spec(approval={"required": True}),
         lambda: rolling(step=1, passed=1, lastResult="Pass", state="AwaitingApproval"),
         obs(candidate=V2, ann={"modelops.dev/approve": "2"}), T0 + timedelta(seconds=11),
         ServingPlan(replace(_v(V2), alias="champion")), None, ("False", "Complete"), ["Promoted"],
         ["SetAlias:champion", "TagVersion:modelops.dev/promoted-at,modelops.dev/previous-version",
          "DeleteAlias:challenger", "Notify:Promoted"]),
    Case("reject-annotation-rolls-back", SPEC, rolling, obs(candidate=V2, ann={"modelops.dev/reject": "2"}),
         T0 + timedelta(seconds=1), ServingPlan(V1, None, 0, True), "RollingBack", ("True", "RollingBack"),
         ["RolledBack"],
         ["TagVersion:modelops.dev/rejected", "DeleteAlias:challenger", "SetAlias:champion", "Notify:RolledBack"]),
    Case("pause-by-spec-freezes", spec(paused=True), lambda: rolling(passed=1, lastResult="Pass"),
         obs(candidate=V2), T0 + timedelta(seconds=30), ServingPlan(V1, _v(V2), 10), "Paused", ("False", "Paused"),
         ["RolloutPaused"]),
    Case("pause-by-annotation-freezes", SPEC, rolling, obs(candidate=V2, ann={"modelops.dev/pause": "true"}),
         T0 + timedelta(seconds=30), ServingPlan(V1, _v(V2), 10), "Paused", ("False", "Paused"), ["RolloutPaused"]),
    Case("resume-restarts-the-step-timer", SPEC, lambda: rolling(state="Paused", passed=1, lastResult="Pass"),
         obs(candidate=V2), T0 + timedelta(seconds=30), ServingPlan(V1, _v(V2), 10), "Progressing",
         ("True", "Progressing"), ["RolloutResumed"],
         extra=lambda st: st["rollout"]["stepStartedAt"] == ts(T0 + timedelta(seconds=30)) or pytest.fail("t")),
    Case("abort-by-spec-rolls-back-and-rejects", spec(abort=True), rolling, obs(candidate=V2),
         T0 + timedelta(seconds=1), ServingPlan(V1, None, 0, True), "RollingBack", ("True", "RollingBack"),
         ["RolledBack"],
         ["TagVersion:modelops.dev/rejected", "DeleteAlias:challenger", "SetAlias:champion", "Notify:RolledBack"],
         extra=lambda st: st["history"][0]["result"] == "Aborted" or pytest.fail("aborted")),
    Case("abort-by-annotation", SPEC, rolling, obs(candidate=V2, ann={"modelops.dev/abort": "2"}),
         T0 + timedelta(seconds=1), ServingPlan(V1, None, 0, True), "RollingBack", ("True", "RollingBack"),
         ["RolledBack"],
         ["TagVersion:modelops.dev/rejected", "DeleteAlias:challenger", "SetAlias:champion", "Notify:RolledBack"]),
    Case("new-version-mid-rollout-restarts-with-it", SPEC, lambda: rolling(step=1), obs(candidate=V3),
         T0 + timedelta(seconds=3), ServingPlan(V1, _v(V3), 10), "Progressing", ("True", "RolloutStarted"),
         ["RolloutSuperseded", "RolloutStarted"], ["Notify:RolloutSuperseded", "Notify:RolloutStarted"],
         extra=lambda st: (st["history"][0]["result"] == "Superseded" and st["rollout"]["step"] == 0)
         or pytest.fail(str(st))),
    Case("registry-back-to-stable-reverts-without-reject", SPEC, rolling, obs(), T0 + timedelta(seconds=1),
         ServingPlan(V1, None, 0, True), "RollingBack", ("True", "RollingBack"), ["RolledBack"],
         ["DeleteAlias:challenger", "SetAlias:champion", "Notify:RolledBack"]),
    Case("registry-unreachable-keeps-the-rollout", SPEC, rolling,
         Observed(1, Resolution(error="connection refused", reason="RegistryUnreachable"), READY),
         T0 + timedelta(seconds=3), ServingPlan(V1, _v(V2), 10), "Progressing", ("True", "Progressing")),
    Case("canary-not-ready-holds", SPEC, lambda: rolling(passed=1, lastResult="Pass"),
         obs(candidate=V2, isvc=replace(READY, canary_ready=False)), T0 + timedelta(seconds=11),
         ServingPlan(V1, _v(V2), 10), "Progressing", ("False", "CanaryNotReady")),
    Case("serving-spec-change-restarts-the-analysis", {**SPEC, "serving": {"runtime": "modelops", "minReplicas": 2}},
         lambda: rolling(step=1, passed=1, lastResult="Pass"), obs(candidate=V2), T0 + timedelta(seconds=3),
         ServingPlan(V1, _v(V2), 10), "Progressing", ("True", "Progressing"), ["RolloutRestarted"],
         ["Notify:RolloutRestarted"]),
    Case("no-metrics-advances-on-time", {**SPEC, "rollout": {**SPEC["rollout"], "analysis": {}}}, rolling,
         obs(candidate=V2), T0 + timedelta(seconds=11), ServingPlan(V1, _v(V2), 50), "Progressing",
         ("True", "StepAdvanced"), ["StepAdvanced"], ["Notify:StepAdvanced"]),
    Case("invalid-spec-keeps-serving", SPEC, serving, obs(spec_problems=["bad query"]), T0, ServingPlan(V1), None,
         ("", ""), extra=lambda st: cond(st, "Accepted")["reason"] == "InvalidSpec" or pytest.fail("accepted")),
    Case("foreign-inference-service-is-not-touched", SPEC, serving,
         obs(isvc=IsvcState(foreign=True, message="owned by someone else")), T0, None, None,
         ("False", "Complete")),
    Case("plain-storage-uri", {"model": {"storageUri": "s3://b/m"}}, dict,
         Observed(1, Resolution(ModelRef("s3://b/m")), READY), T0, ServingPlan(ModelRef("s3://b/m")), None,
         ("False", "Complete"), ["Deployed"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tick(case: Case) -> None:
    before = case.status()
    frozen = copy.deepcopy(before)
    d = tick(case.spec, before, case.observed, case.now)
    assert before == frozen, "tick must not mutate its input"
    assert d.plan == case.plan
    assert (d.status.get("rollout") or {}).get("state") == case.state
    if case.progressing != ("", ""):
        p = cond(d.status, "Progressing")
        assert (p["status"], p["reason"]) == case.progressing, p
    assert [e.reason for e in d.events if e.reason != "Deployed" or "Deployed" in case.events] == case.events
    assert kinds(d.status) == case.actions
    assert 0.2 <= d.requeue_after <= 600
    if case.extra:
        case.extra(d.status)


def test_every_status_field_round_trips_and_a_second_tick_changes_nothing() -> None:
    """Idempotence: re-running the tick on its own output (an operator restarted) decides nothing new."""
    st = rolling(passed=1, lastResult="Pass")
    now = T0 + timedelta(seconds=3)
    d1 = tick(SPEC, st, obs(candidate=V2), now)
    d1.status.pop("pendingActions", None)
    d2 = tick(SPEC, d1.status, obs(candidate=V2), now)
    d2.status.pop("pendingActions", None)
    assert d2.status == d1.status and d2.plan == d1.plan and d2.events == []


def no_delay() -> dict[str, Any]:
    """SPEC with `initialDelay: 0s`: the analysis starts as soon as the canary serves."""
    return spec(analysis={**SPEC["rollout"]["analysis"], "initialDelay": "0s"})


def test_analysis_due_one_interval_after_the_step_began() -> None:
    # a canary serving from the step's start, with no initial delay (the default delay: the tests below)
    s, st = no_delay(), rolling(canaryServingSince=ts(T0))
    assert not analysis_due(s, st, T0 + timedelta(seconds=4))
    assert analysis_due(s, st, T0 + timedelta(seconds=5))
    st["rollout"]["lastAnalysisAt"] = ts(T0 + timedelta(seconds=5))
    assert not analysis_due(s, st, T0 + timedelta(seconds=8))
    assert analysis_due(s, st, T0 + timedelta(seconds=10))
    st["rollout"]["state"] = "Paused"
    assert not analysis_due(s, st, T0 + timedelta(seconds=60))


def test_no_analysis_while_the_canary_does_not_serve() -> None:
    """Flagger's rule: a canary that is not serving has no traffic to judge; no check runs (and none counts as
    inconclusive) however long it takes to become ready."""
    st = rolling()
    assert "canaryServingSince" not in st["rollout"]
    for s in (SPEC, no_delay()):
        assert not analysis_due(s, st, T0 + timedelta(seconds=5))
        assert not analysis_due(s, st, T0 + timedelta(minutes=9))
    not_ready = obs(candidate=V2, isvc=replace(READY, canary_ready=False))
    d = tick(SPEC, st, not_ready, T0 + timedelta(seconds=5))
    assert "canaryServingSince" not in d.status["rollout"]
    assert d.status["rollout"]["notReadySince"] == ts(T0 + timedelta(seconds=5))


def test_the_first_tick_that_sees_the_canary_ready_starts_the_initial_delay() -> None:
    st = rolling()
    now = T0 + timedelta(seconds=40)
    d = tick(SPEC, st, obs(candidate=V2), now)
    ro = d.status["rollout"]
    assert ro["canaryServingSince"] == ts(now) and "notReadySince" not in ro
    # the hold says why nothing is analysed yet
    assert cond(d.status, "Progressing")["message"].startswith("step 1/2 at 10%: initialDelay: no analysis for 5s")
    # a later tick keeps the first time; a step advance keeps it too (the predictor is warm)
    later = tick(SPEC, d.status, obs(candidate=V2), now + timedelta(seconds=3)).status
    assert later["rollout"]["canaryServingSince"] == ts(now)


def test_default_initial_delay_is_one_interval_and_the_first_window_is_all_past_it() -> None:
    """interval 5s, no initialDelay: the delay is 5s, so a canary serving from T0 is first analysed at T0+10s,
    over the window T0+5s..T0+10s: none of its first requests are in it."""
    st = rolling(canaryServingSince=ts(T0))
    assert not analysis_due(SPEC, st, T0 + timedelta(seconds=5))
    assert not analysis_due(SPEC, st, T0 + timedelta(seconds=9.9))
    assert analysis_due(SPEC, st, T0 + timedelta(seconds=10))
    st["rollout"]["lastAnalysisAt"] = ts(T0 + timedelta(seconds=10))
    assert not analysis_due(SPEC, st, T0 + timedelta(seconds=14))
    assert analysis_due(SPEC, st, T0 + timedelta(seconds=15))


def test_explicit_initial_delay_counts_from_when_the_canary_serves_not_from_the_step() -> None:
    s = spec(analysis={**SPEC["rollout"]["analysis"], "initialDelay": "1m"})
    serving_at = T0 + timedelta(seconds=30)  # became ready 30 s into the step
    st = rolling(canaryServingSince=ts(serving_at))
    assert not analysis_due(s, st, serving_at + timedelta(seconds=60))
    assert not analysis_due(s, st, serving_at + timedelta(seconds=64))
    assert analysis_due(s, st, serving_at + timedelta(seconds=65))
    # a step that begins after the delay: one interval after the step's start, as without a delay
    st["rollout"]["stepStartedAt"] = ts(serving_at + timedelta(seconds=200))
    assert not analysis_due(s, st, serving_at + timedelta(seconds=203))
    assert analysis_due(s, st, serving_at + timedelta(seconds=205))


def test_a_canary_that_stops_serving_starts_its_delay_over() -> None:
    st = rolling(canaryServingSince=ts(T0))
    now = T0 + timedelta(seconds=30)
    st = tick(SPEC, st, obs(candidate=V2, isvc=replace(READY, canary_ready=False)), now).status
    assert "canaryServingSince" not in st["rollout"]
    assert not analysis_due(SPEC, st, now + timedelta(minutes=5))
    st = tick(SPEC, st, obs(candidate=V2), now + timedelta(seconds=20)).status
    assert st["rollout"]["canaryServingSince"] == ts(now + timedelta(seconds=20))


def test_a_changed_serving_spec_restarts_the_delay() -> None:
    """KServe restarts the predictors with a new serving spec: their first requests are cold again."""
    st = rolling(canaryServingSince=ts(T0))
    changed = spec(analysis=SPEC["rollout"]["analysis"])
    changed["serving"] = {**SPEC["serving"], "maxReplicas": 4}
    not_ready = obs(candidate=V2, isvc=replace(READY, canary_ready=False))
    d = tick(changed, st, not_ready, T0 + timedelta(seconds=30))
    assert d.status["rollout"]["step"] == 0 and "canaryServingSince" not in d.status["rollout"]


def test_walk_with_a_slow_canary_is_analysed_only_after_it_serves_and_the_delay() -> None:
    """The canary is not ready for 60 s: no analysis runs meanwhile; the first comes a delay and an interval
    after it serves, and the rollout still promotes."""
    st = tick(SPEC, serving(), obs(candidate=V2), T0).status
    now, analysed = T0, []
    for _ in range(40):
        now += timedelta(seconds=5)
        ready = now >= T0 + timedelta(seconds=60)
        due = analysis_due(SPEC, st, now)
        if due:
            analysed.append((now - T0).total_seconds())
        isvc = READY if ready else replace(READY, canary_ready=False)
        st = tick(SPEC, st, obs(candidate=V2, isvc=isvc, checks=PASS if due else None), now).status
        if "rollout" not in st:
            break
    assert analysed and analysed[0] == 70.0  # serving at 60, delay to 65, a full interval to 70
    assert st["stable"]["version"] == "2" and [h["result"] for h in st["history"]] == ["Promoted"]


def test_full_rollout_walk_to_promotion() -> None:
    st = serving()
    now = T0
    st = tick(SPEC, st, obs(candidate=V2), now).status
    weights = [st["rollout"]["weight"]]
    for _ in range(20):
        now += timedelta(seconds=5)
        checks = PASS if analysis_due(SPEC, st, now) else None
        d = tick(SPEC, st, obs(candidate=V2, checks=checks), now)
        st = d.status
        if "rollout" not in st:
            break
        weights.append(st["rollout"]["weight"])
    assert st["stable"]["version"] == "2" and "canary" not in st
    assert sorted(set(weights)) == [10, 50]
    # issue 20: status names the alias the promoted version serves under, not the one it was found by
    assert st["stable"]["alias"] == "champion"
    assert cond(st, "Ready")["status"] == "True"
    assert [h["result"] for h in st["history"]] == ["Promoted"]


def test_history_is_bounded() -> None:
    s = spec(strategy="Immediate", historyLimit=2)
    st = tick(s, {}, obs(), T0).status
    for i in range(2, 6):
        st = tick(s, st, obs(tracked=ModelRef(f"u{i}", str(i), alias="champion")), T0).status
    assert [h["version"] for h in st["history"]] == ["5", "4"]
