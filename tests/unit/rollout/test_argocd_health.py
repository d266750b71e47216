"""The Argo CD Lua health checks, run in a real Lua interpreter (lupa) against statuses the operator writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ARGO = Path(__file__).resolve().parents[3] / "manifests" / "argocd"


def health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    from lupa import LuaRuntime

    lua = LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])  # 1-based, as Argo CD's JSON -> Lua does
        return value

    lua.globals().obj = to_lua(obj)
    result = lua.execute(script)
    return str(result["status"]), str(result["message"])


def md(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "churn", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = {"observedGeneration": 1, **status}
    return obj


def c(type_: str, status: str, reason: str = "R", message: str = "m") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


MD_CASES = [
    ("no-status", md(None), "Progressing"),
    ("old-generation", md({"conditions": [c("Ready", "True")]}, generation=2), "Progressing"),
    ("invalid", md({"conditions": [c("Accepted", "False", "InvalidSpec"), c("Ready", "False", "InvalidSpec")]}),
     "Degraded"),
    ("serving", md({"conditions": [c("Accepted", "True"), c("Ready", "True", "Serving", "version 3 is serving")]}),
     "Healthy"),
    ("canary", md({"conditions": [c("Ready", "True"), c("Progressing", "True", "StepAdvanced", "step 2/2 at 50%")],
                   "canary": {"version": "4"}, "rollout": {"state": "Progressing", "weight": 50}}), "Progressing"),
    ("paused", md({"conditions": [c("Ready", "True")], "rollout": {"state": "Paused", "weight": 10}}), "Suspended"),
    ("approval", md({"conditions": [c("Ready", "True")], "rollout": {"state": "AwaitingApproval", "weight": 50}}),
     "Suspended"),
    ("rolling-back", md({"conditions": [c("Ready", "True")], "rollout": {"state": "RollingBack", "weight": 0}}),
     "Degraded"),
    ("unresolved", md({"conditions": [c("Ready", "False", "NoModel"), c("ModelResolved", "False", "AliasNotFound")]}),
     "Degraded"),
    ("not-owned", md({"conditions": [c("Ready", "False", "InferenceServiceNotReady"),
                                     c("InferenceServiceReady", "False", "NotOwned")]}), "Degraded"),
    ("starting", md({"conditions": [c("Ready", "False", "InferenceServiceNotReady"),
                                    c("InferenceServiceReady", "False", "NotReady")]}), "Progressing"),
]

RS_CASES = [
    ("no-status", {"metadata": {"generation": 1}, "spec": {}}, "Progressing"),
    ("idle", {"metadata": {"generation": 1}, "spec": {},
              "status": {"observedGeneration": 1, "conditions": [c("Accepted", "True"), c("Ready", "True")]}},
     "Healthy"),
    ("suspended", {"metadata": {"generation": 1}, "spec": {"suspend": True},
                   "status": {"observedGeneration": 1, "conditions": [c("Accepted", "True")]}}, "Suspended"),
    ("running", {"metadata": {"generation": 1}, "spec": {},
                 "status": {"observedGeneration": 1, "conditions": [c("Accepted", "True")],
                            "lastRun": {"id": "a", "trigger": "schedule", "state": "Running"}}}, "Progressing"),
    ("failed", {"metadata": {"generation": 1}, "spec": {},
                "status": {"observedGeneration": 1, "conditions": [c("Accepted", "True")],
                           "lastRun": {"id": "a", "trigger": "drift", "state": "Failed", "message": "OOMKilled"}}},
     "Degraded"),
    ("approval", {"metadata": {"generation": 1}, "spec": {},
                  "status": {"observedGeneration": 1, "conditions": [c("Accepted", "True")],
                             "lastRun": {"id": "a", "trigger": "manual", "state": "AwaitingApproval", "version": "5"}}},
     "Suspended"),
    ("invalid", {"metadata": {"generation": 1}, "spec": {},
                 "status": {"observedGeneration": 1, "conditions": [c("Accepted", "False", "InvalidSpec")]}},
     "Degraded"),
]


@pytest.mark.parametrize(("case", "obj", "expected"), MD_CASES, ids=[x[0] for x in MD_CASES])
def test_modeldeployment_health(case: str, obj: dict[str, Any], expected: str) -> None:
    status, message = health((ARGO / "modeldeployment-health.lua").read_text(), obj)
    assert status == expected, message
    assert message


@pytest.mark.parametrize(("case", "obj", "expected"), RS_CASES, ids=[x[0] for x in RS_CASES])
def test_retrainschedule_health(case: str, obj: dict[str, Any], expected: str) -> None:
    status, message = health((ARGO / "retrainschedule-health.lua").read_text(), obj)
    assert status == expected, message
    assert message


def test_argocd_cm_embeds_the_scripts() -> None:
    cm = yaml.safe_load((ARGO / "argocd-cm-health.yaml").read_text())
    assert cm["data"]["resource.customizations.health.modelops.dev_ModelDeployment"] == \
        (ARGO / "modeldeployment-health.lua").read_text()
    assert cm["data"]["resource.customizations.health.modelops.dev_RetrainSchedule"] == \
        (ARGO / "retrainschedule-health.lua").read_text()
