"""Reading an InferenceService's status the way KServe writes it, purely (KSERVE.md, KServe v0.20 types).

- `status.conditions[type=Ready]`: the aggregate.
- Knative: `status.components.predictor.{latestCreatedRevision, latestReadyRevision,
  latestRolledoutRevision, previousRolledoutRevision, traffic[]}`; the canary is the latest ready revision,
  the stable one the latest rolled out at 100%.
- Standard (>= 0.20): `status.canaryStatuses[] {name, ready, trafficPercent}` per canary predictor name.
- `status.observedGeneration`: KServe v0.20 copies it from the stable predictor's Deployment (Standard) or the
  Knative Service (Knative) (inference_service_status.go PropagateRawStatus / PropagateStatus), so it is not the
  InferenceService's generation: in Standard mode, a spec change that leaves the stable Deployment alone (a
  canary added, removed or promoted) never makes it equal `metadata.generation`. Standard mode therefore reads
  "KServe acted on this spec" from what KServe derives from the spec it reconciled: `canaryStatuses[].name`
  (the canary predictors) and `status.address` (the stable predictor's Service); equal generations also count
  (a KServe that writes the InferenceService's own generation). Knative keeps the generation check.

Which canary the InferenceService carries is read from its spec (the builder's layout: the canary predictor's
storage URI), never from its metadata: KServe propagates InferenceService labels and annotations into the
predictors' pod templates, so per-step bookkeeping there restarted both predictors at every step (issue 13).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelops.api.types import IsvcState, predictor_storage_uri
from modelops.decide.conditions import Condition

#: = desired.inference_service.LEGACY_HASH_ANNOTATION (desired and decide are independent siblings): the hash
#: of the applied manifest, which operators before issue 13's fix kept on the InferenceService (read once)
LEGACY_HASH_ANNOTATION = "modelops.dev/desired-hash"
#: status.inferenceServiceApplied of the ModelDeployment: {hash, uid, generation} of the last apply
APPLIED = "inferenceServiceApplied"

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
    # which canary the spec carries (issue 16, M3), from the spec itself (issue 13: not from metadata)
    if mode == "Knative":
        latest_ready = pred.get("latestReadyRevision", "")
        caught_up = current and bool(latest_ready) and latest_ready == pred.get("latestCreatedRevision")
        has_canary = spec.get("predictor", {}).get("canaryTrafficPercent") not in (None, 100)
        stable = pred.get("latestRolledoutRevision", "") if has_canary else latest_ready
        # the builder sets canaryTrafficPercent for a canary (1..100, a step may be 100%) and 0 for the rollback pin
        # (ServingPlan.pin_stable)
        knative_canary = spec.get("predictor", {}).get("canaryTrafficPercent") not in (None, 0)
        return IsvcState(ready=ready, settled=ready and caught_up, canary_ready=caught_up,
                         stable_revision=str(stable), canary_revision=str(latest_ready), url=url, message=message,
                         canary_uri=predictor_storage_uri(spec.get("predictor") or {}) if knative_canary else "")
    canaries = spec.get("canary") or []
    stable_name = str((spec.get("predictor") or {}).get("name", ""))
    if not canaries:
        # no canary in the manifest KServe acted on: nothing is serving a canary (issue 16, M3: this was True)
        seen = current or _serves_predictor(status, str(meta.get("name") or ""), stable_name)
        return IsvcState(ready=ready, settled=ready and seen and not status.get("canaryStatuses"),
                         canary_ready=False, stable_revision=stable_name, url=url, message=message,
                         canary_uri="")
    name = str(canaries[0].get("predictor", {}).get("name", ""))
    # KServe writes canaryStatuses from the spec it reconciled: an entry of this name is about this canary
    canary_ok = any(c.get("name") == name and c.get("ready") for c in status.get("canaryStatuses") or [])
    return IsvcState(ready=ready, settled=False, canary_ready=canary_ok, stable_revision=stable_name,
                     canary_revision=name, url=url, message=message,
                     canary_uri=predictor_storage_uri(canaries[0].get("predictor") or {}))


def _serves_predictor(status: Mapping[str, Any], isvc: str, predictor: str) -> bool:
    """Whether KServe's status is about a spec whose stable predictor is `predictor`: KServe points
    status.address at that predictor's Service (`<isvc>-<predictor>-predictor.<namespace>.svc...`)."""
    host = str((status.get("address") or {}).get("url") or "").split("://", 1)[-1]
    return bool(predictor) and host.split(".", 1)[0] == f"{isvc}-{predictor}-predictor"


def apply_needed(isvc: Mapping[str, Any] | None, applied: Mapping[str, Any] | None, desired_hash: str) -> bool:
    """Whether the InferenceService must be (re)applied: it is missing, the manifest changed since the last apply
    (`applied` = status.inferenceServiceApplied), or someone changed its spec since (another generation, or
    another object of that name). Without a record (an operator before issue 13's fix applied it), the hash
    annotation that operator left on it is read once: equal means up to date, so an upgrade rewrites nothing."""
    if isvc is None:
        return True
    meta = isvc.get("metadata") or {}
    if applied:
        return (applied.get("hash"), applied.get("uid"), applied.get("generation")) != (
            desired_hash, meta.get("uid"), meta.get("generation"))
    return (meta.get("annotations") or {}).get(LEGACY_HASH_ANNOTATION) != desired_hash


def applied_record(isvc: Mapping[str, Any], desired_hash: str) -> dict[str, Any]:
    """status.inferenceServiceApplied for the InferenceService as the apply (or the upgrade check) left it."""
    meta = isvc.get("metadata") or {}
    return {"hash": desired_hash, "uid": str(meta.get("uid") or ""), "generation": int(meta.get("generation") or 0)}


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
