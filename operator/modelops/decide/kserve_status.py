"""Reading an InferenceService's status the way KServe writes it, purely (KSERVE.md, KServe v0.20 types).

- `status.conditions[type=Ready]`: the aggregate.
- Knative: `status.components.predictor.{latestCreatedRevision, latestReadyRevision,
  latestRolledoutRevision, previousRolledoutRevision, traffic[]}`; the canary is the latest ready revision,
  the stable one the latest rolled out at 100%.
- Standard (>= 0.20): `status.canaryStatuses[] {name, ready, trafficPercent}` per canary predictor name.
- `status.observedGeneration`: KServe has acted on the current spec only when it equals
  `metadata.generation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelops.api.types import IsvcState
from modelops.decide.conditions import Condition

#: = desired.inference_service.LABEL_CANARY_VERSION (desired and decide are independent siblings)
CANARY_LABEL = "modelops.dev/canary-version"


def _ready(status: Mapping[str, Any]) -> tuple[bool, str]:
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            ok = c.get("status") == "True"
            return ok, "" if ok else (c.get("message") or c.get("reason") or "Ready is not True")
    return False, "KServe has not reported a Ready condition yet"


def isvc_state(isvc: Mapping[str, Any] | None, owner_uid: str, mode: str) -> IsvcState | None:
    """What the tick needs to know about the InferenceService; None when it does not exist."""
    if isvc is None:
        return None
    meta = isvc.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    if not any(r.get("uid") == owner_uid for r in refs):
        owners = ", ".join(f"{r.get('kind')}/{r.get('name')}" for r in refs) or "nobody"
        return IsvcState(foreign=True, message=f"an InferenceService named {meta.get('name')} already exists and "
                         f"is owned by {owners}; modelops does not take it over")
    status = isvc.get("status") or {}
    spec = isvc.get("spec") or {}
    current = status.get("observedGeneration") == meta.get("generation")
    ready, message = _ready(status)
    pred = (status.get("components") or {}).get("predictor") or {}
    url = str(status.get("url") or "")
    # which canary the applied manifest carries: the label travels with spec in the same apply (issue 16, M3)
    canary_version = str((meta.get("labels") or {}).get(CANARY_LABEL, ""))
    if mode == "Knative":
        latest_ready = pred.get("latestReadyRevision", "")
        caught_up = current and bool(latest_ready) and latest_ready == pred.get("latestCreatedRevision")
        has_canary = spec.get("predictor", {}).get("canaryTrafficPercent") not in (None, 100)
        stable = pred.get("latestRolledoutRevision", "") if has_canary else latest_ready
        return IsvcState(ready=ready, settled=ready and caught_up, canary_ready=caught_up,
                         stable_revision=str(stable), canary_revision=str(latest_ready), url=url, message=message,
                         canary_version=canary_version)
    canaries = spec.get("canary") or []
    stable_name = str((spec.get("predictor") or {}).get("name", ""))
    if not canaries:
        # no canary in the manifest KServe acted on: nothing is serving a canary (issue 16, M3: this was True)
        return IsvcState(ready=ready, settled=ready and current and not status.get("canaryStatuses"),
                         canary_ready=False, stable_revision=stable_name, url=url, message=message,
                         canary_version=canary_version)
    name = str(canaries[0].get("predictor", {}).get("name", ""))
    canary_ok = current and any(c.get("name") == name and c.get("ready") for c in status.get("canaryStatuses") or [])
    return IsvcState(ready=ready, settled=False, canary_ready=canary_ok, stable_revision=stable_name,
                     canary_revision=name, url=url, message=message, canary_version=canary_version)


#: Condition type saying whether the cluster can run the resolved deployment mode.
MODE_CONDITION = "DeploymentModeAvailable"


def mode_condition(mode: str, knative_served: bool) -> Condition:
    """KServe's Knative mode needs Knative Serving (serving.knative.dev/v1 Services). Without it KServe v0.20
    leaves the InferenceService's conditions Unknown for ever and only logs "terminal error: ... Knative
    Serving is not available" (event ServerlessModeRejected): say it on the ModelDeployment instead."""
    if mode != "Knative" or knative_served:
        return Condition(MODE_CONDITION, "True", "Available", f"{mode} deployment mode is available in this cluster")
    return Condition(MODE_CONDITION, "False", "KnativeServingMissing",
                     "deploymentMode Knative needs Knative Serving (serving.knative.dev/v1), which this cluster does "
                     "not serve; KServe rejects the InferenceService (ServerlessModeRejected). Install Knative "
                     "Serving or set spec.serving.deploymentMode: Standard")
