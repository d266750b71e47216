"""The RetrainSchedule CRD's time zone rule lists exactly the tz database the operator uses (issue 16)."""

from __future__ import annotations

import importlib.util
import zoneinfo
from pathlib import Path

import pytest
import yaml

from modelops.decide.spec_checks import retrain_schedule_problems

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _rule() -> str:
    crd = yaml.safe_load((ROOT / "manifests/crds/modelops.dev_retrainschedules.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    tz = schema["properties"]["spec"]["properties"]["triggers"]["properties"]["schedule"]["properties"]["timeZone"]
    rules = tz["x-kubernetes-validations"]
    assert len(rules) == 1 and "spec.triggers.schedule.timeZone" in rules[0]["message"]
    return str(rules[0]["rule"])


def test_crd_lists_every_zone_the_operator_accepts() -> None:
    spec = importlib.util.spec_from_file_location("crd_timezones", ROOT / "scripts/crd_timezones.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = (ROOT / "manifests/crds/modelops.dev_retrainschedules.yaml").read_text()
    assert mod.render(text) == text, "run `make sync-crds` (scripts/crd_timezones.py): tzdata changed"
    listed = set(_rule().removeprefix("self in [").removesuffix("]").replace("'", "").split(", "))
    for zone in listed:  # every listed zone is one the operator can schedule in
        assert retrain_schedule_problems({"triggers": {"schedule": {"cron": "0 2 * * *", "timeZone": zone}}}) == []
    assert {"UTC", "Europe/Berlin", "America/New_York"} <= listed
    assert "America" not in listed and "Mars/Base" not in listed
    assert listed == set(zoneinfo.available_timezones()) - {"Factory", "localtime"}
