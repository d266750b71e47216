"""Checks the API server's schema cannot express, run by the operator on every spec it sees.

The CRD schema already rejects most bad input (enums, ranges, CEL cross-field rules, the cron field's
shape). What needs a real library stays here: a cron expression croniter can actually schedule, and a
time zone that exists in the IANA database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from modelops.decide.builtin_metrics import UnknownBuiltin, quantile_test_problems, query_of
from modelops.decide.slo import slo_problems

#: storageOptions keys that carry credentials (issue 16, L7); the CRD's CEL rule uses the same pattern
SECRET_KEY = re.compile(r"(?i)(secret|passw|token|credential|access_key|session|private_key|api_key)")


def retrain_schedule_problems(spec: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    schedule = (spec.get("triggers") or {}).get("schedule")
    if schedule:
        cron = schedule.get("cron", "")
        if not croniter.is_valid(cron):
            problems.append(f"spec.triggers.schedule.cron: {cron!r} is not a valid cron expression")
        tz = schedule.get("timeZone", "UTC")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: a directory of the tz database ("America") raises IsADirectoryError with tzdata installed
            problems.append(f"spec.triggers.schedule.timeZone: {tz!r} is not an IANA time zone")
    options = (((spec.get("training") or {}).get("dataset") or {}).get("storageOptions")) or {}
    for key in options:
        if SECRET_KEY.search(str(key)):
            problems.append(f"spec.training.dataset.storageOptions.{key}: looks like a credential; storageOptions "
                            "is copied into a ConfigMap, so pass credentials through env/envFrom from a Secret")
    return problems


def model_deployment_problems(spec: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    analysis = ((spec.get("rollout") or {}).get("analysis") or {})
    for metric in analysis.get("metrics") or []:
        if metric.get("quality"):
            if metric.get("builtin") or metric.get("query"):
                problems.append(f"spec.rollout.analysis.metrics[{metric.get('name')}]: a quality metric has no "
                                "query or builtin")
            problems += quantile_test_problems(metric)
            continue  # its PromQL is built from the exporter's quality series (decide/quality.py)
        problems += quantile_test_problems(metric)  # the binomial test needs a built-in latency histogram
        if metric.get("builtin") and metric.get("query"):
            problems.append(f"spec.rollout.analysis.metrics[{metric.get('name')}]: set query or builtin, not both")
        try:
            query = query_of(metric)
        except UnknownBuiltin as exc:
            problems.append(f"spec.rollout.analysis.metrics[{metric.get('name')}].builtin: {exc}")
            continue
        if query.count("{{") != query.count("}}"):
            problems.append(f"spec.rollout.analysis.metrics[{metric.get('name')}].query: unbalanced "
                            "template braces")
    return problems + slo_problems(spec)
