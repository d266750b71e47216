from datetime import UTC, datetime, timedelta

import pytest

from modelops.decide.conditions import Condition, find, is_true, merge_conditions
from modelops.decide.spec_checks import model_deployment_problems, retrain_schedule_problems

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_gets_transition_time_and_generation():
    out = merge_conditions(None, [Condition("Ready", "Unknown", "AwaitingController", "m")], 3, T0)
    assert out == [{"type": "Ready", "status": "Unknown", "reason": "AwaitingController", "message": "m",
                    "observedGeneration": 3, "lastTransitionTime": "2026-01-01T12:00:00.000000Z"}]


@pytest.mark.parametrize(("old_status", "new_status", "expected_time"), [
    ("True", "True", "2026-01-01T12:00:00.000000Z"),   # same status: time kept, even if reason/message change
    ("True", "False", "2026-01-01T12:05:00.000000Z"),  # flip: time moves
    ("Unknown", "True", "2026-01-01T12:05:00.000000Z"),
])
def test_transition_time_moves_only_on_status_flip(old_status, new_status, expected_time):
    current = merge_conditions(None, [Condition("Ready", old_status, "A", "a")], 1, T0)
    out = merge_conditions(current, [Condition("Ready", new_status, "B", "b")], 2, T1)
    assert out[0]["lastTransitionTime"] == expected_time
    assert out[0]["reason"] == "B" and out[0]["observedGeneration"] == 2


def test_order_is_kept_and_no_duplicates():
    current = merge_conditions(None, [Condition("Accepted", "True", "A", ""), Condition("Ready", "False", "B", "")],
                               1, T0)
    out = merge_conditions(current, [Condition("Ready", "True", "C", ""), Condition("Accepted", "True", "A", ""),
                                     Condition("Progressing", "False", "D", "")], 1, T1)
    assert [c["type"] for c in out] == ["Accepted", "Ready", "Progressing"]
    assert is_true(out, "Ready") and not is_true(out, "Progressing") and find(out, "Missing") is None


def test_input_is_not_mutated():
    current = [{"type": "Ready", "status": "True", "reason": "A", "message": "", "lastTransitionTime": "x"}]
    merge_conditions(current, [Condition("Ready", "False", "B", "")], 1, T1)
    assert current[0]["status"] == "True"


@pytest.mark.parametrize(("schedule", "problem"), [
    ({"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}, None),
    ({"cron": "@hourly"}, None),
    ({"cron": "0 0 31 2 *", "timeZone": "UTC"}, None),  # valid syntax even if February never has a 31st
    ({"cron": "61 * * * *"}, "spec.triggers.schedule.cron"),
    ({"cron": "0 * * * *", "timeZone": "Mars/Olympus_Mons"}, "spec.triggers.schedule.timeZone"),
])
def test_retrain_schedule_checks(schedule, problem):
    problems = retrain_schedule_problems({"triggers": {"schedule": schedule}})
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(problem)


def test_model_deployment_template_check():
    ok = {"rollout": {"analysis": {"metrics": [{"name": "a", "query": "x{ns=\"{{namespace}}\"}"}]}}}
    bad = {"rollout": {"analysis": {"metrics": [{"name": "a", "query": "x{ns=\"{{namespace}\"}"}]}}}
    assert model_deployment_problems(ok) == []
    assert "metrics[a].query" in model_deployment_problems(bad)[0]
