"""The Service through which modelops' route reaches a Standard canary that logs (pure).

Why it exists: decide/traffic_split.py (KServe v0.20 gives a Standard canary a Service that skips the logger
agent). It selects the canary predictor's Pods exactly as KServe's own predictor Service does (KServe labels
them `app: isvc.{predictor Service name}`, constants.GetRawServiceLabel) and sends port 80 to the agent, which
logs each payload and forwards it to the model server, as the stable predictor's Service does. It is owned by
the ModelDeployment (deleted with it) and removed once the route no longer needs it (handlers/traffic.py).
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
from modelops.api.types import AGENT_PORT, PREDICTOR_PORT

#: app.kubernetes.io/component of the Service (what `retire` lists, and what the admission policy allows)
COMPONENT = "logged-canary"
LABEL_COMPONENT = "app.kubernetes.io/component"
ANN_SERVICE_HASH = "modelops.dev/desired-hash"


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


def service_hash(manifest: Mapping[str, Any]) -> str:
    body = json.loads(json.dumps(manifest))
    body.get("metadata", {}).get("annotations", {}).pop(ANN_SERVICE_HASH, None)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
