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
    if mode == "Knative":
        latest_ready = pred.get("latestReadyRevision", "")
        caught_up = current and bool(latest_ready) and latest_ready == pred.get("latestCreatedRevision")
        has_canary = spec.get("predictor", {}).get("canaryTrafficPercent") not in (None, 100)
        stable = pred.get("latestRolledoutRevision", "") if has_canary else latest_ready
        return IsvcState(ready=ready, settled=ready and caught_up, canary_ready=caught_up,
                         stable_revision=str(stable), canary_revision=str(latest_ready), url=url, message=message)
    canaries = spec.get("canary") or []
    stable_name = str((spec.get("predictor") or {}).get("name", ""))
    if not canaries:
        return IsvcState(ready=ready, settled=ready and current and not status.get("canaryStatuses"),
                         canary_ready=True, stable_revision=stable_name, url=url, message=message)
    name = str(canaries[0].get("predictor", {}).get("name", ""))
    canary_ok = current and any(c.get("name") == name and c.get("ready") for c in status.get("canaryStatuses") or [])
    return IsvcState(ready=ready, settled=False, canary_ready=canary_ok, stable_revision=stable_name,
                     canary_revision=name, url=url, message=message)
