"""The one outbox, purely: order of registry writes (audit L1), Events and notifications beside them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelops.api.times import format_time
from modelops.decide import outbox
from modelops.decide.retrain import due_outbox, record_outbox

pytestmark = pytest.mark.unit
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_a_newer_approval_never_lands_before_an_older_one_backing_off() -> None:
    """Audit L1: v5's approval failed four times (MLflow down) and backs off; v6 is approved meanwhile and
    MLflow is back. Old code performed v6 at once and v5 later, leaving challenger at v5."""
    status = {"outbox": [{"id": "r5/approve", "kind": "approve", "model": "m", "version": "5", "attempts": 4,
                          "notBefore": format_time(T0 + timedelta(seconds=16))},
                         {"id": "r6/approve", "kind": "approve", "model": "m", "version": "6"},
                         {"id": "r6/RunSucceeded/0", "kind": "notify", "event": "RunSucceeded", "webhook": 0}]}
    now = T0 + timedelta(seconds=1)
    assert [i["id"] for i in due_outbox(status, now)] == ["r6/approve", "r6/RunSucceeded/0"]  # what was due
    assert [i["id"] for i in outbox.runnable(status["outbox"], now)] == ["r6/RunSucceeded/0"]  # what runs
    later = T0 + timedelta(seconds=17)
    assert [i["id"] for i in outbox.runnable(status["outbox"], later)] == ["r5/approve", "r6/approve",
                                                                          "r6/RunSucceeded/0"]


def test_recorded_failures_back_off_and_finished_registry_work_queues_an_event() -> None:
    status = {"outbox": [{"id": "a", "kind": "approve", "model": "m", "version": "5"},
                         {"id": "e", "kind": "Event", "type": "Normal", "reason": "R", "message": "m"}]}
    st, events = record_outbox(status, {"a": "RegistryUnreachable: down", "e": None}, T0)
    assert [i["id"] for i in st["outbox"]] == ["a"] and st["outbox"][0]["notBefore"] == format_time(
        T0 + timedelta(seconds=2))
    assert events == []
    st, events = record_outbox(st, {"a": None}, T0 + timedelta(seconds=3))
    assert st["outbox"] == [] and [e.reason for e in events] == ["RegistryUpdated"]
