"""The Service through which modelops' route reaches a Standard canary that logs (pure).

Why it exists: decide/traffic_split.py (KServe v0.20 gives a Standard canary a Service that skips the logger
agent). It selects the canary predictor's Pods exactly as KServe's own predictor Service does (KServe labels
them `app: isvc.{predictor Service name}`, constants.GetRawServiceLabel) and sends port 80 to the agent, which
logs each payload and forwards it to the model server, as the stable predictor's Service does. It is owned by
the ModelDeployment (deleted with it) and removed once the route no longer needs it (handlers/traffic.py).
"""

from __future__ import annotations

from typing import Any

from modelops.api import (
    API_VERSION,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_PART_OF,
    MODEL_DEPLOYMENT,
)
from modelops.api.types import AGENT_PORT, PREDICTOR_PORT

# the same desired-hash annotation and hash as modelops' route: one implementation for both
from modelops.desired.http_route import ANN_ROUTE_HASH as ANN_SERVICE_HASH
from modelops.desired.http_route import route_hash as service_hash

__all__ = ["ANN_SERVICE_HASH", "COMPONENT", "LABEL_COMPONENT", "logged_canary_service", "pod_selector", "service_hash"]

#: app.kubernetes.io/component of the Service (to find them: `kubectl get svc -l app.kubernetes.io/component=...`)
COMPONENT = "logged-canary"
LABEL_COMPONENT = "app.kubernetes.io/component"


def pod_selector(predictor_service: str) -> dict[str, str]:
    """KServe's selector for the Pods behind its predictor Service (service_reconciler.go createDefaultSvc)."""
    return {"app": f"isvc.{predictor_service}"}


def logged_canary_service(*, name: str, namespace: str, uid: str, service: str,
                          predictor_service: str) -> dict[str, Any]:
    """The Service manifest (server-side apply) named `service` for ModelDeployment `name`: the Pods behind
    KServe's `predictor_service` (decide/traffic_split.py names both)."""
    manifest: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": service, "namespace": namespace,
            "labels": {LABEL_PART_OF: "modelops", LABEL_MANAGED_BY: "modelops", LABEL_COMPONENT: COMPONENT,
                       LABEL_OWNER_KIND: MODEL_DEPLOYMENT, LABEL_OWNER_NAME: name},
            "annotations": {},
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": MODEL_DEPLOYMENT, "name": name, "uid": uid,
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": pod_selector(predictor_service),
            "ports": [{"name": "http", "protocol": "TCP", "port": PREDICTOR_PORT, "targetPort": AGENT_PORT}],
        },
    }
    manifest["metadata"]["annotations"][ANN_SERVICE_HASH] = service_hash(manifest)
    return manifest

