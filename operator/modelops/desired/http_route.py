"""The Gateway API HTTPRoute with which modelops splits a Standard-mode canary (pure).

See decide/traffic_split.py for why modelops writes it (KServe v0.20 routes to the stable predictor only)
and how its backends are chosen. The route is owned by the ModelDeployment (deleted with it), carries the
same request headers KServe's own routes add (`KServe-Isvc-Name`, `KServe-Isvc-Namespace`), and is applied
server-side with modelops' field manager.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from modelops.api import (
    API_VERSION,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_PART_OF,
    MODEL_DEPLOYMENT,
)
from modelops.api.types import PREDICTOR_PORT, Split

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
HTTPROUTE_PLURAL = "httproutes"
#: The weights the route carries, as JSON, for humans and `kubectl get -o yaml`.
ANN_WEIGHTS = "modelops.dev/traffic-weights"
ANN_ROUTE_HASH = "modelops.dev/desired-hash"


def route_name(isvc: str) -> str:
    """`{isvc}-traffic`: never one of KServe's route names (`{isvc}`, `{isvc}-{predictor}-predictor`)."""
    return f"{isvc}-traffic"


def http_route(*, name: str, namespace: str, uid: str, hostname: str, gateway: tuple[str, str],
               split: Split, timeout_seconds: int | None = None) -> dict[str, Any]:
    """The HTTPRoute manifest for ModelDeployment `name` (its InferenceService has the same name)."""
    gw_ns, gw_name = gateway
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [
            {"name": "KServe-Isvc-Name", "value": name}, {"name": "KServe-Isvc-Namespace", "value": namespace}]}}],
        "backendRefs": [{"group": "", "kind": "Service", "name": b.service, "port": PREDICTOR_PORT,
                         "weight": b.weight} for b in split.backends],
    }
    if timeout_seconds:
        rule["timeouts"] = {"request": f"{int(timeout_seconds)}s"}
    manifest: dict[str, Any] = {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}", "kind": "HTTPRoute",
        "metadata": {
            "name": route_name(name), "namespace": namespace,
            "labels": {LABEL_PART_OF: "modelops", LABEL_MANAGED_BY: "modelops",
                       LABEL_OWNER_KIND: MODEL_DEPLOYMENT, LABEL_OWNER_NAME: name},
            "annotations": {ANN_WEIGHTS: json.dumps(split.weights(), sort_keys=True)},
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": MODEL_DEPLOYMENT, "name": name, "uid": uid,
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "parentRefs": [{"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": gw_ns, "name": gw_name}],
            "hostnames": [hostname],
            "rules": [rule],
        },
    }
    manifest["metadata"]["annotations"][ANN_ROUTE_HASH] = route_hash(manifest)
    return manifest


def route_hash(manifest: Mapping[str, Any]) -> str:
    body = json.loads(json.dumps(manifest))
    body.get("metadata", {}).get("annotations", {}).pop(ANN_ROUTE_HASH, None)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def route_accepted(route: Mapping[str, Any] | None, gateway: tuple[str, str]) -> tuple[bool, str]:
    """Whether the Gateway accepted the route (status.parents[].conditions Accepted and ResolvedRefs)."""
    if not route:
        return False, "the HTTPRoute does not exist yet"
    for parent in (route.get("status") or {}).get("parents") or []:
        ref = parent.get("parentRef") or {}
        if ref.get("name") != gateway[1] or ref.get("namespace", route["metadata"]["namespace"]) != gateway[0]:
            continue
        conds = {c.get("type"): c for c in parent.get("conditions") or []}
        for kind in ("Accepted", "ResolvedRefs"):
            c = conds.get(kind)
            if c is None or c.get("status") != "True":
                return False, f"{kind}: {(c or {}).get('message') or (c or {}).get('reason') or 'not reported'}"
        return True, ""
    return False, f"gateway {gateway[0]}/{gateway[1]} has not reported on the route yet"
