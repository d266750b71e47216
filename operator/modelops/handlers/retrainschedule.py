"""Kopf handlers of RetrainSchedule."""

from __future__ import annotations

from typing import Any

import kopf

from modelops.api import GROUP, RETRAIN_SCHEDULE, RETRAIN_SCHEDULES, VERSION
from modelops.decide.spec_checks import retrain_schedule_problems
from modelops.handlers.common import acknowledge


@kopf.on.resume(GROUP, VERSION, RETRAIN_SCHEDULES)
@kopf.on.create(GROUP, VERSION, RETRAIN_SCHEDULES)
@kopf.on.update(GROUP, VERSION, RETRAIN_SCHEDULES, field="spec")
def retrainschedule_acknowledge(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch,
                                **_: Any) -> None:
    acknowledge(RETRAIN_SCHEDULE, spec, status, meta, patch, retrain_schedule_problems)
