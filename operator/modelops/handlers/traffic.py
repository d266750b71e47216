"""The gateway split of a Standard-mode canary: observe, decide (decide/traffic_split.py), build
(desired/http_route.py, and desired/canary_service.py for a canary that logs), apply. Called from the
ModelDeployment reconcile: `plan_traffic` before the status write (its result goes into `status.traffic` and
tells the InferenceService builder whether KServe may write its own route), `apply_traffic` after the
InferenceService was applied, so that a new canary's Services exist before the route names them.

The other order when the InferenceService change removes a predictor (a promotion removes the old stable
one, a rollback the canary): KServe deletes that predictor's Deployment and Service as soon as it sees the
change, and a gateway still routing to them answers 500 ("service not found") until it serves the new
route. So the route goes first, and the InferenceService change waits until the gateway serves the route
without them (`isvc_hold`: the gateway reported the route's generation, plus a grace for its own
configuration throttle; bounded, so a gateway that never reports cannot stall a rollback).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelops.adapters.kube import Kube, KubeError
from modelops.api.types import ServingPlan
from modelops.decide.traffic_split import (
    SERVE_WAIT_LIMIT_SECONDS,
    Owner,
    canary_backend,
    dropped,
    gateway_ref,
    gateway_serves,
    isvc_hostname,
    kserve_route_weights_canary,
    logged_service,
    owner,
    predictor_service,
    route_services,
    services_of,
    split,
    stable_backend,
    waited_too_long,
)
from modelops.desired.canary_service import ANN_SERVICE_HASH, logged_canary_service
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
    #: modelops' Service for a canary that logs (desired/canary_service.py), applied before the route
    service: dict[str, Any] | None = None
    #: the route as the API server last returned it (after `apply_traffic`)
    live: dict[str, Any] | None = None


def _ours(previous: Mapping[str, Any] | None) -> set[str]:
    """The Services of modelops a status written earlier names (in use or still to be removed)."""
    prev = previous or {}
    return {str(n) for n in [prev.get("canaryService"), *(prev.get("retiring") or [])] if n}


def plan_traffic(kube: Kube, settings: Any, namespace: str, name: str, uid: str, plan: ServingPlan,
                 ingress_json: str | None, logs: bool = False,
                 previous: Mapping[str, Any] | None = None) -> TrafficPlan:
    """Who splits, and (for modelops) the route to apply. Reads KServe's own route and the predictors' ready
    endpoints; a cluster without the Gateway API or a Gateway reference yields a status message, not an error.
    `logs`: the predictors carry KServe's logger (the canary's share then goes through its agent:
    decide/traffic_split.py `canary_backend`); `previous`: the `status.traffic` written before, whose Services
    of modelops that are no longer wanted are listed in `retiring` until `apply_traffic` removed them."""
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
        return _retiring(TrafficPlan("kserve", {"splitBy": "kserve"}), previous)
    try:
        gw = gateway_ref(settings.gateway, ingress_json)
        host = isvc_hostname(name, namespace, ingress_json)
    except ValueError as exc:
        return _retiring(TrafficPlan("modelops", {"splitBy": "modelops", "message": str(exc)}), previous)
    service = None
    backend = None
    kserve_stable = kube.get_service(namespace, predictor_service(name, stable)) if logs else None
    stable_svc = stable_backend(name, stable, logs, kserve_stable, (previous or {}).get("canaryService"))
    if stable_svc == logged_service(name, stable):  # just promoted: still through its Service of modelops
        service = logged_canary_service(name=name, namespace=namespace, uid=uid, service=stable_svc,
                                        predictor_service=predictor_service(name, stable))
    elif canary is not None and canary != stable:
        kserve_svc = kube.get_service(namespace, predictor_service(name, canary)) if logs else None
        backend = canary_backend(name, canary, logs, kserve_svc)
        if backend == logged_service(name, canary):
            service = logged_canary_service(name=name, namespace=namespace, uid=uid, service=backend,
                                            predictor_service=predictor_service(name, canary))
    # readiness matters only while two predictors share the traffic
    services = [stable_svc, backend] if backend else []
    ready = {svc: kube.service_ready(namespace, svc) for svc in services}
    s = split(name, stable, canary, plan.weight if canary else 0, ready, canary_service=backend,
              stable_service=stable_svc)
    route = http_route(name=name, namespace=namespace, uid=uid, hostname=host, gateway=gw, split=s)
    status: dict[str, Any] = {"splitBy": "modelops", "route": route_name(name), "hostname": host,
                              "gateway": f"{gw[0]}/{gw[1]}", "weights": s.weights()}
    if service is not None:
        status["canaryService"] = service["metadata"]["name"]
    if s.note:
        status["message"] = s.note
    elif stable_svc != predictor_service(name, stable):
        status["message"] = (f"{stable} is reached through {stable_svc} until KServe's Service "
                             f"{predictor_service(name, stable)} targets its logger agent")
    return _retiring(TrafficPlan("modelops", status, route, service), previous)


def _retiring(tp: TrafficPlan, previous: Mapping[str, Any] | None) -> TrafficPlan:
    gone = sorted(_ours(previous) - {tp.status.get("canaryService")})
    if gone:
        tp.status["retiring"] = gone
    return tp


def prepare_service(kube: Kube, tp: TrafficPlan | None) -> str:
    """Apply modelops' Service for a canary that logs before the InferenceService change that brings the canary:
    it selects the canary's Pods by label, so it may exist before them, and it is there when KServe reports the
    canary ready (applied after the InferenceService, it came a moment after that on a busy node). Returns a
    message when the apply failed (`apply_traffic` tries again)."""
    if tp is None or tp.route is None or tp.service is None:
        return ""
    try:
        _apply_service(kube, tp.service)
    except KubeError as exc:
        log.error("%s: applying Service %s failed: %s", tp.service["metadata"]["namespace"],
                  tp.service["metadata"]["name"], exc)
        return f"applying Service {tp.service['metadata']['name']} failed: {exc}"
    return ""


def apply_traffic(kube: Kube, namespace: str, tp: TrafficPlan, now: datetime) -> str:
    """Server-side apply of modelops' canary Service and route when they changed, then removal of the
    Services of modelops the route no longer names once the gateway serves that route (so no request is
    sent to a deleted Service); returns a status message ("" when all is well)."""
    current: dict[str, Any] | None = None
    if tp.route is not None:
        name = tp.route["metadata"]["name"]
        try:
            if tp.service is not None:
                _apply_service(kube, tp.service)
            current = kube.get(GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTE_PLURAL, namespace, name)
            if _outdated(current, tp.route, ANN_ROUTE_HASH):
                current = kube.apply(GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTE_PLURAL, tp.route)
                log.info("%s/%s: HTTPRoute %s weights %s", namespace, name, name, tp.status.get("weights"))
        except KubeError as exc:
            msg = f"applying HTTPRoute {name} failed: {exc}"
            log.error("%s/%s: %s", namespace, name, msg)
            return msg
    tp.live = current
    retired = _retire(kube, namespace, tp, current, now)
    if tp.route is None:
        return str(tp.status.get("message") or "") or retired
    gw = tuple(str(tp.status.get("gateway", "/")).split("/", 1))
    ok, why = route_accepted(current, (gw[0], gw[1]))
    return (str(tp.status.get("message") or "") or retired) if ok else why


def _outdated(current: Mapping[str, Any] | None, manifest: Mapping[str, Any], annotation: str) -> bool:
    """Whether the live object lacks the desired manifest's hash (absent, changed, or applied by another)."""
    live = ((current or {}).get("metadata") or {}).get("annotations") or {}
    return bool(live.get(annotation) != manifest["metadata"]["annotations"][annotation])


def _apply_service(kube: Kube, manifest: Mapping[str, Any]) -> None:
    meta = manifest["metadata"]
    if _outdated(kube.get_service(meta["namespace"], meta["name"]), manifest, ANN_SERVICE_HASH):
        kube.apply_service(manifest)
        log.info("%s: Service %s to the agent of the canary's Pods %s", meta["namespace"], meta["name"],
                 manifest["spec"]["selector"])


def _retire(kube: Kube, namespace: str, tp: TrafficPlan, route: Mapping[str, Any] | None, now: datetime) -> str:
    """Delete the retiring Services the route does not name, once the gateway serves it; `tp.status` keeps
    those left for a later reconcile. Returns a message when a deletion failed."""
    retiring = list(tp.status.get("retiring") or [])
    if not retiring:
        return ""
    named = route_services(route) if tp.route is not None else set()
    settled = tp.route is None or gateway_serves(route, now)[0] or waited_too_long(route, now)
    left, msg = [], ""
    for svc in retiring:
        if svc in named or not settled:
            left.append(svc)
            continue
        try:
            kube.delete_service(namespace, svc)
            log.info("%s: Service %s removed (the route no longer sends traffic to it)", namespace, svc)
        except KubeError as exc:
            left.append(svc)
            msg = f"removing Service {svc} failed: {exc}"
            log.error("%s: %s", namespace, msg)
    if left:
        tp.status["retiring"] = left
    else:
        tp.status.pop("retiring", None)
    return msg


def route_first(kube: Kube, namespace: str, tp: TrafficPlan | None, name: str,
                live_isvc: Mapping[str, Any] | None, manifest: Mapping[str, Any]) -> bool:
    """Whether the route goes before the InferenceService change: the change removes a predictor, and every
    Service the new route names exists already (a promotion, a rollback). A change that also brings the
    predictor the route will name (an `Immediate` swap) keeps the usual order: a route to a Service that does
    not exist yet fails as surely as one to a Service just deleted."""
    if tp is None or tp.route is None or not dropped(name, live_isvc, manifest):
        return False
    return all(kube.get_service(namespace, svc) is not None or svc == (tp.service or {}).get("metadata", {}).get("name")
               for svc in route_services(tp.route))


def isvc_hold(tp: TrafficPlan | None, name: str, live_isvc: Mapping[str, Any] | None,
              manifest: Mapping[str, Any], now: datetime) -> str:
    """Why the InferenceService change must wait ("" when it may go ahead): it removes a predictor, and the
    gateway may still route to that predictor's Services (it does not serve modelops' route as last applied
    yet). Call after `apply_traffic` (the route goes first). After SERVE_WAIT_LIMIT_SECONDS the change goes
    ahead regardless, said in the log."""
    gone = dropped(name, live_isvc, manifest)
    if tp is None or tp.route is None or not gone:
        return ""
    serves, why = gateway_serves(tp.live, now)
    if serves:
        return ""
    if waited_too_long(tp.live, now):
        log.warning("%s: removing predictor(s) %s although %s (waited %gs)", name, ", ".join(sorted(gone)), why,
                    SERVE_WAIT_LIMIT_SECONDS)
        return ""
    return (f"the InferenceService change that removes {', '.join(sorted(gone))} waits for the gateway to serve "
            f"the route without {', '.join(sorted(services_of(name, gone)))}: {why}")


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
