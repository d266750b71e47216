"""The gateway split of a Standard-mode canary: observe, decide (decide/traffic_split.py), build
(desired/http_route.py), apply. Called from the ModelDeployment reconcile in two places, and nothing else there
changes: `plan_traffic` before the status write (its result goes into `status.traffic` and tells the
InferenceService builder whether KServe may write its own route), `apply_traffic` after the InferenceService
was applied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelops.adapters.kube import Kube, KubeError
from modelops.api.types import ServingPlan
from modelops.decide.traffic_split import (
    Owner,
    gateway_ref,
    isvc_hostname,
    kserve_route_weights_canary,
    owner,
    predictor_service,
    split,
)
from modelops.desired.http_route import (
    ANN_ROUTE_HASH,
    GATEWAY_GROUP,
    GATEWAY_VERSION,
    HTTPROUTE_PLURAL,
    http_route,
    route_accepted,
    route_name,
)
from modelops.desired.inference_service import predictor_name

log = logging.getLogger("modelops.traffic")


@dataclass
class TrafficPlan:
    owner: Owner
    status: dict[str, Any]
    route: dict[str, Any] | None = None


def plan_traffic(kube: Kube, settings: Any, namespace: str, name: str, uid: str, plan: ServingPlan,
                 ingress_json: str | None) -> TrafficPlan:
    """Who splits, and (for modelops) the route to apply. Reads KServe's own route and the predictors' ready
    endpoints; a cluster without the Gateway API or a Gateway reference yields a status message, not an error."""
    stable = predictor_name(plan.stable)
    canary = predictor_name(plan.canary) if plan.canary is not None else None
    kserve_route = None
    if canary is not None and settings.traffic_split == "auto":
        try:
            kserve_route = kube.get(GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTE_PLURAL, namespace, name)
        except KubeError as exc:
            if exc.status not in (403, 404):
                raise
    who = owner(settings.traffic_split, kserve_route_weights_canary(kserve_route, predictor_service(name, canary))
                if canary else False)
    if who == "kserve":
        return TrafficPlan("kserve", {"splitBy": "kserve"})
    try:
        gw = gateway_ref(settings.gateway, ingress_json)
        host = isvc_hostname(name, namespace, ingress_json)
    except ValueError as exc:
        return TrafficPlan("modelops", {"splitBy": "modelops", "message": str(exc)})
    # readiness matters only while two predictors share the traffic
    services = [predictor_service(name, stable), predictor_service(name, canary)] if canary else []
    ready = {svc: kube.service_ready(namespace, svc) for svc in services}
    s = split(name, stable, canary, plan.weight if canary else 0, ready)
    route = http_route(name=name, namespace=namespace, uid=uid, hostname=host, gateway=gw, split=s)
    status: dict[str, Any] = {"splitBy": "modelops", "route": route_name(name), "hostname": host,
                              "gateway": f"{gw[0]}/{gw[1]}", "weights": s.weights()}
    if s.note:
        status["message"] = s.note
    return TrafficPlan("modelops", status, route)


def apply_traffic(kube: Kube, namespace: str, tp: TrafficPlan) -> str:
    """Server-side apply of modelops' route when it changed; returns a status message ("" when all is well)."""
    if tp.route is None:
        return str(tp.status.get("message") or "")
    name = tp.route["metadata"]["name"]
    try:
        current = kube.get(GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTE_PLURAL, namespace, name)
        want = tp.route["metadata"]["annotations"][ANN_ROUTE_HASH]
        if ((current or {}).get("metadata", {}).get("annotations") or {}).get(ANN_ROUTE_HASH) != want:
            current = kube.apply(GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTE_PLURAL, tp.route)
            log.info("%s/%s: HTTPRoute %s weights %s", namespace, name, name, tp.status.get("weights"))
    except KubeError as exc:
        msg = f"applying HTTPRoute {name} failed: {exc}"
        log.error("%s/%s: %s", namespace, name, msg)
        return msg
    gw = tuple(str(tp.status.get("gateway", "/")).split("/", 1))
    ok, why = route_accepted(current, (gw[0], gw[1]))
    return str(tp.status.get("message") or "") if ok else why


def traffic_status(tp: TrafficPlan, message: str) -> Mapping[str, Any]:
    """`status.traffic`: the plan with `message` (the last apply's result). Without a route to apply the
    plan's own message is the result (what `apply_traffic` returns then), so the status written before the
    apply already says it: clearing it there and writing it back after the apply cost two status writes in
    every reconcile of such an object."""
    if tp.route is None:
        return dict(tp.status)
    out = dict(tp.status)
    if message:
        out["message"] = message
    else:
        out.pop("message", None)
    return out
