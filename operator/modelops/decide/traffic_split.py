"""Who splits a Standard-mode canary's traffic at the gateway, and how (pure).

KServe v0.20's Standard-mode canary creates the canary predictor's Deployment and Service, but the HTTPRoute
it writes points at the stable predictor only: weighted canary backendRefs arrived later (kserve PR #5912,
readiness fix kserve#5983). So, as Flagger's Gateway API router does, modelops writes the weighted route
itself: one HTTPRoute per InferenceService, on the hostname KServe would give it, with a backendRef per
predictor Service that has ready endpoints, weighted by the rollout step. KServe is then told to write no
route for that InferenceService (label `networking.kserve.io/visibility: cluster-local`), so the two never
compete for one hostname: the gateway serves modelops' route. A KServe that weights its own route keeps it,
and modelops writes none (`owner`).

KServe v0.20 reconciles a Standard canary with an empty component extension (components/predictor.go
`reconcileCanaryDeployments`), so the Service it makes for the canary targets the model server's port, not the
port of the logger agent it injects into the canary's Pod (9081, which the stable predictor's Service targets
when `logger` is set): through KServe's Service the canary's payloads are never logged, so its drift and its
label joins are never measured, and the canary is reached on another path than the stable predictor. So while
modelops splits a canary that logs, the canary's share goes to a Service of modelops' own
(`logged_service`: the same Pods, port 80 to the agent's 9081), and the predictor Service KServe made is left
alone. A KServe whose canary Service targets the agent is used as it is (`canary_backend`).

Names follow KServe (pkg/constants): a named predictor's Service is `{isvc}-{predictor name}-predictor`
on port 80; the top-level host is `domainTemplate` of the `ingress` key of inferenceservice-config
(default `{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from modelops.api.times import parse_time
from modelops.api.types import AGENT_PORT, Backend, Split

Owner = Literal["kserve", "modelops"]
#: The modelops setting (MODELOPS_TRAFFIC_SPLIT / chart `serving.trafficSplit`).
SETTINGS = ("auto", "modelops", "kserve")
DEFAULT_DOMAIN_TEMPLATE = "{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}"
DEFAULT_INGRESS_DOMAIN = "example.com"


def predictor_service(isvc: str, predictor: str | None) -> str:
    """KServe's constants.PredictorServiceName."""
    return f"{isvc}-{predictor}-predictor" if predictor else f"{isvc}-predictor"


def logged_service(isvc: str, predictor: str) -> str:
    """The Service modelops makes for a canary predictor that logs: `{isvc}-{predictor}-logged` (never one of
    KServe's names; as long as KServe's `{isvc}-{predictor}-predictor`, so it fits wherever that does)."""
    return f"{isvc}-{predictor}-logged"


def targets_agent(service: Mapping[str, Any] | None) -> bool:
    """Whether a Service's first port targets the agent (KServe puts the served port first)."""
    ports = ((service or {}).get("spec") or {}).get("ports") or []
    return bool(ports) and str(ports[0].get("targetPort")) == str(AGENT_PORT)


def canary_backend(isvc: str, canary: str, logs: bool, kserve_service: Mapping[str, Any] | None) -> str:
    """The Service the canary's share goes to: KServe's predictor Service, unless the canary logs and KServe's
    Service skips the agent (KServe v0.20; also while KServe has not made its Service yet), then modelops'
    `logged_service`."""
    if logs and not targets_agent(kserve_service):
        return logged_service(isvc, canary)
    return predictor_service(isvc, canary)


def kserve_route_weights_canary(route: Mapping[str, Any] | None, canary_service: str) -> bool:
    """Whether a route KServe wrote sends weighted traffic to the canary predictor's Service (KServe >= the
    release with kserve PR #5912 does; v0.20.0 does not)."""
    for rule in ((route or {}).get("spec") or {}).get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            if ref.get("name") == canary_service and (ref.get("kind") or "Service") == "Service":
                return True
    return False


def owner(setting: str, kserve_weights_canary: bool) -> Owner:
    """`kserve` / `modelops` as configured; `auto`: KServe when it has been seen weighting its own route."""
    if setting not in SETTINGS:
        raise ValueError(f"traffic split setting {setting!r}: expected one of {', '.join(SETTINGS)}")
    if setting == "auto":
        return "kserve" if kserve_weights_canary else "modelops"
    return "kserve" if setting == "kserve" else "modelops"


def stable_backend(isvc: str, stable: str, logs: bool, kserve_service: Mapping[str, Any] | None,
                   ours_in_use: str | None) -> str:
    """The Service the stable side's share goes to: KServe's predictor Service, except right after a promotion
    while KServe's Service of the promoted predictor still skips its agent (as it did while that predictor was
    the canary) and the route already reaches it through modelops' `logged_service`: the route keeps that one
    until KServe's Service targets the agent, so the promotion neither bypasses the logger nor sends a
    request to a Service being rewritten."""
    ours = logged_service(isvc, stable)
    if logs and ours_in_use == ours and not targets_agent(kserve_service):
        return ours
    return predictor_service(isvc, stable)


def split(isvc: str, stable: str, canary: str | None, weight: int, ready: Mapping[str, bool],
          canary_service: str | None = None, stable_service: str | None = None) -> Split:
    """Backends for the rollout step: the canary gets `weight`% only once its Service (`canary_service`,
    default KServe's predictor Service) has ready endpoints; until then (and without a canary) the stable
    predictor (`stable_service`, default KServe's predictor Service) gets everything. The stable backend is
    always listed: with no ready endpoint at all the gateway answers 503 instead of routing nowhere."""
    if not 0 <= weight <= 100:
        raise ValueError(f"canary weight {weight} is outside 0..100")
    stable_svc = stable_service or predictor_service(isvc, stable)
    if canary is None or canary == stable:
        return Split((Backend(stable_svc, 100, stable),))
    canary_svc = canary_service or predictor_service(isvc, canary)
    if not ready.get(canary_svc, False):
        return Split((Backend(stable_svc, 100, stable),),
                     note=f"canary {canary} has no ready endpoint yet: all traffic to {stable}")
    if not ready.get(stable_svc, False):
        # the stable side is down (e.g. rolling back to it): do not send the canary's share into a void
        return Split((Backend(stable_svc, 100 - weight, stable), Backend(canary_svc, weight, canary)),
                     note=f"stable {stable} has no ready endpoint")
    return Split((Backend(stable_svc, 100 - weight, stable), Backend(canary_svc, weight, canary)))


def route_services(route: Mapping[str, Any] | None) -> set[str]:
    """The Services a route's rules send traffic to."""
    return {str(ref.get("name")) for rule in ((route or {}).get("spec") or {}).get("rules") or []
            for ref in rule.get("backendRefs") or [] if (ref.get("kind") or "Service") == "Service"}


def isvc_predictors(isvc: Mapping[str, Any] | None) -> set[str]:
    """The predictor names an InferenceService manifest (live or desired) carries: the stable one and the
    canaries' (the builder's Standard layout; an unnamed predictor is KServe's default `""`)."""
    spec = (isvc or {}).get("spec") or {}
    names = {str((spec.get("predictor") or {}).get("name") or "")} if spec.get("predictor") else set()
    names |= {str((c.get("predictor") or {}).get("name") or "") for c in spec.get("canary") or []}
    return names


def services_of(isvc: str, predictors: Iterable[str]) -> set[str]:
    """Every Service name that may front one of `predictors`: KServe's, and modelops' logged one."""
    out: set[str] = set()
    for p in predictors:
        out |= {predictor_service(isvc, p), logged_service(isvc, p)} if p else {predictor_service(isvc, None)}
    return out


def dropped(isvc: str, live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> set[str]:
    """The predictors an InferenceService change removes (KServe deletes their Deployments and Services at
    once when it sees the change)."""
    return isvc_predictors(live) - isvc_predictors(desired) if live else set()


def route_settled(route: Mapping[str, Any] | None) -> bool:
    """Whether every Gateway that reports on the route has seen its current generation (or none reports: then
    none serves it, and nothing is in flight through it)."""
    if not route:
        return True
    generation = int((route.get("metadata") or {}).get("generation") or 0)
    for parent in (route.get("status") or {}).get("parents") or []:
        for c in parent.get("conditions") or []:
            if int(c.get("observedGeneration") or 0) < generation:
                return False
    return True


def route_changed_at(route: Mapping[str, Any] | None) -> datetime | None:
    """When the route's spec was last written: the newest managedFields entry that is not a status write
    (the gateway's reports are `subresource: status`)."""
    times = [parse_time(str(e.get("time"))) for e in ((route or {}).get("metadata") or {}).get("managedFields") or []
             if not e.get("subresource") and e.get("time")]
    known = [t for t in times if t is not None]
    return max(known) if known else None


#: After the Gateway reported a route's generation, how long it may still serve the one before: Traefik
#: writes the route's status while it builds the new configuration and applies that configuration after its
#: providers' throttle (2 s by default).
SERVE_GRACE_SECONDS = 5.0
#: How long a change that removes a predictor waits for the Gateway to report the route without it, before it
#: goes ahead anyway (a Gateway that never reports must not stall a rollback).
SERVE_WAIT_LIMIT_SECONDS = 60.0


def gateway_serves(route: Mapping[str, Any] | None, now: datetime,
                   grace: float = SERVE_GRACE_SECONDS) -> tuple[bool, str]:
    """Whether the Gateway serves the route as it is now (so a Service it no longer names receives no more
    requests): it reported the route's generation, and `grace` seconds passed since the route was written.
    Returns (serves, why not)."""
    if not route_settled(route):
        generation = int(((route or {}).get("metadata") or {}).get("generation") or 0)
        return False, f"the gateway has not reported generation {generation} of the route yet"
    changed = route_changed_at(route)
    if changed is not None and (now - changed).total_seconds() < grace:
        return False, f"the route changed {max(0.0, (now - changed).total_seconds()):.0f}s ago (grace {grace:g}s)"
    return True, ""


def waited_too_long(route: Mapping[str, Any] | None, now: datetime,
                    limit: float = SERVE_WAIT_LIMIT_SECONDS) -> bool:
    """Whether a change has waited `limit` seconds since the route was written for the gateway to serve it."""
    changed = route_changed_at(route)
    return changed is None or (now - changed).total_seconds() >= limit


def _ingress_config(ingress_json: str | None) -> dict[str, Any]:
    if not ingress_json:
        return {}
    text = "\n".join(ln for ln in ingress_json.splitlines() if not ln.strip().startswith("#"))
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def isvc_hostname(name: str, namespace: str, ingress_json: str | None) -> str:
    """The host KServe gives an InferenceService (its `domainTemplate`; only the .Name, .Namespace and
    .IngressDomain fields of KServe's template data are known here)."""
    cfg = _ingress_config(ingress_json)
    template = str(cfg.get("domainTemplate") or DEFAULT_DOMAIN_TEMPLATE)
    values = {"Name": name, "Namespace": namespace,
              "IngressDomain": str(cfg.get("ingressDomain") or DEFAULT_INGRESS_DOMAIN)}

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise ValueError(f"KServe domainTemplate {template!r} uses .{key}, which modelops cannot evaluate; "
                             "set the gateway hostname explicitly")
        return values[key]

    return re.sub(r"\{\{\s*\.(\w+)\s*\}\}", sub, template)


def gateway_ref(configured: str, ingress_json: str | None) -> tuple[str, str]:
    """(namespace, name) of the Gateway: the configured `namespace/name`, else KServe's `kserveIngressGateway`."""
    value = configured or str(_ingress_config(ingress_json).get("kserveIngressGateway") or "")
    ns, _, name = value.partition("/")
    if not ns or not name:
        raise ValueError(f"gateway reference {value!r}: expected namespace/name (chart value serving.gateway or "
                         "KServe's ingress.kserveIngressGateway)")
    return ns, name
