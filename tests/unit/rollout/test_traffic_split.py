"""The weighted HTTPRoute modelops writes for a Standard-mode canary, and who splits (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelops.decide.rollout import ModelRef, ServingPlan
from modelops.decide.traffic_split import (
    Backend,
    dropped,
    gateway_ref,
    gateway_serves,
    isvc_hostname,
    isvc_predictors,
    kserve_route_weights_canary,
    owner,
    predictor_service,
    route_services,
    services_of,
    split,
    stable_backend,
    waited_too_long,
)
from modelops.desired.http_route import (
    ANN_ROUTE_HASH,
    ANN_WEIGHTS,
    http_route,
    route_accepted,
    route_hash,
    route_name,
)
from modelops.desired.inference_service import Defaults, inference_service

pytestmark = pytest.mark.unit

READY = {"churn-v1-predictor": True, "churn-v2-predictor": True}
NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def test_service_names_are_kserves() -> None:
    # KServe v0.20 constants.PredictorServiceName: named predictors get their name in the Service name
    assert predictor_service("churn", "v1") == "churn-v1-predictor"
    assert predictor_service("churn", None) == "churn-predictor"


def test_split_follows_the_step_weight_when_both_sides_are_ready() -> None:
    s = split("churn", "v1", "v2", 25, READY)
    assert s.backends == (Backend("churn-v1-predictor", 75, "v1"), Backend("churn-v2-predictor", 25, "v2"))
    assert s.weights() == {"v1": 75, "v2": 25} and not s.note


def test_a_canary_without_ready_endpoints_gets_no_traffic() -> None:
    s = split("churn", "v1", "v2", 60, {"churn-v1-predictor": True, "churn-v2-predictor": False})
    assert s.backends == (Backend("churn-v1-predictor", 100, "v1"),)
    assert "v2 has no ready endpoint" in s.note
    assert split("churn", "v1", "v2", 60, {"churn-v1-predictor": True}).weights() == {"v1": 100}


def test_without_canary_everything_goes_to_stable() -> None:
    assert split("churn", "v1", None, 0, READY).weights() == {"v1": 100}
    assert split("churn", "v2", "v2", 40, READY).weights() == {"v2": 100}  # promoted: the canary is the stable


@pytest.mark.parametrize("weight", [-1, 101])
def test_weight_out_of_range_is_refused(weight: int) -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.100"):
        split("churn", "v1", "v2", weight, READY)


def test_owner_setting() -> None:
    assert owner("auto", False) == "modelops" and owner("auto", True) == "kserve"
    assert owner("modelops", True) == "modelops" and owner("kserve", False) == "kserve"
    with pytest.raises(ValueError, match="expected one of auto, modelops, kserve"):
        owner("istio", False)


def test_detects_a_kserve_route_that_weights_the_canary() -> None:
    v020 = {"spec": {"rules": [{"backendRefs": [{"kind": "Service", "name": "churn-v1-predictor", "port": 80}]}]}}
    newer = {"spec": {"rules": [{"backendRefs": [
        {"kind": "Service", "name": "churn-v1-predictor", "port": 80, "weight": 75},
        {"kind": "Service", "name": "churn-v2-predictor", "port": 80, "weight": 25}]}]}}
    assert not kserve_route_weights_canary(v020, "churn-v2-predictor")
    assert kserve_route_weights_canary(newer, "churn-v2-predictor")
    assert not kserve_route_weights_canary(None, "churn-v2-predictor")


def test_hostname_from_kserves_domain_template() -> None:
    assert isvc_hostname("churn", "ns", None) == "churn-ns.example.com"
    cfg = json.dumps({"ingressDomain": "models.corp", "domainTemplate": "{{ .Name }}.{{ .Namespace }}.{{ .IngressDomain }}"})
    assert isvc_hostname("churn", "ns", cfg) == "churn.ns.models.corp"
    with pytest.raises(ValueError, match="Annotations"):
        isvc_hostname("churn", "ns", json.dumps({"domainTemplate": "{{ .Annotations }}.x"}))


def test_gateway_reference_value_first_then_kserves_config() -> None:
    kserve_cfg = json.dumps({"kserveIngressGateway": "kserve/kserve-ingress-gateway"})
    assert gateway_ref("", kserve_cfg) == ("kserve", "kserve-ingress-gateway")
    assert gateway_ref("gw/main", kserve_cfg) == ("gw", "main")
    with pytest.raises(ValueError, match="namespace/name"):
        gateway_ref("", None)


def route(weight: int = 25) -> dict[str, Any]:
    return http_route(name="churn", namespace="ns", uid="u1", hostname="churn-ns.example.com",
                      gateway=("kserve", "kserve-ingress-gateway"), split=split("churn", "v1", "v2", weight, READY))


def test_route_manifest() -> None:
    r = route()
    assert r["apiVersion"] == "gateway.networking.k8s.io/v1" and r["kind"] == "HTTPRoute"
    assert r["metadata"]["name"] == route_name("churn") == "churn-traffic"
    assert r["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert r["spec"]["hostnames"] == ["churn-ns.example.com"]
    assert r["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                        "namespace": "kserve", "name": "kserve-ingress-gateway"}]
    (rule,) = r["spec"]["rules"]
    assert rule["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "churn-v1-predictor", "port": 80, "weight": 75},
        {"group": "", "kind": "Service", "name": "churn-v2-predictor", "port": 80, "weight": 25}]
    assert json.loads(r["metadata"]["annotations"][ANN_WEIGHTS]) == {"v1": 75, "v2": 25}


def test_route_hash_moves_with_the_weights_only() -> None:
    assert route(25)["metadata"]["annotations"][ANN_ROUTE_HASH] == route(25)["metadata"]["annotations"][ANN_ROUTE_HASH]
    assert route(25)["metadata"]["annotations"][ANN_ROUTE_HASH] != route(60)["metadata"]["annotations"][ANN_ROUTE_HASH]
    r = route()
    assert route_hash(r) == r["metadata"]["annotations"][ANN_ROUTE_HASH]


def test_route_never_takes_a_kserve_route_name() -> None:
    # KServe's own routes: `{isvc}` (top level) and `{isvc}-{predictor}-predictor`
    assert route_name("churn") not in {"churn", "churn-v1-predictor", "churn-traffic-predictor"}


def test_route_accepted_reads_the_gateways_report() -> None:
    gw = ("kserve", "kserve-ingress-gateway")
    r = route()
    assert route_accepted(None, gw) == (False, "the HTTPRoute does not exist yet")
    assert not route_accepted(r, gw)[0]
    r["status"] = {"parents": [{"parentRef": {"name": "kserve-ingress-gateway", "namespace": "kserve"},
                                "conditions": [{"type": "Accepted", "status": "True"},
                                               {"type": "ResolvedRefs", "status": "False",
                                                "message": "service churn-v2-predictor not found"}]}]}
    assert route_accepted(r, gw) == (False, "ResolvedRefs: service churn-v2-predictor not found")
    r["status"]["parents"][0]["conditions"][1]["status"] = "True"
    assert route_accepted(r, gw) == (True, "")


def test_isvc_is_cluster_local_when_modelops_owns_the_route() -> None:
    plan = ServingPlan(ModelRef("pvc://m/1", "1"), ModelRef("pvc://m/2", "2"), 25)
    spec: dict[str, Any] = {"model": {"name": "churn"}, "serving": {}}
    d = Defaults("img:1", "http://drift/v1/events")
    ours = inference_service(name="churn", namespace="ns", uid="u", spec=spec, plan=plan, mode="Standard",
                             defaults=d, modelops_route=True)
    theirs = inference_service(name="churn", namespace="ns", uid="u", spec=spec, plan=plan, mode="Standard",
                               defaults=d)
    assert ours["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"
    assert "networking.kserve.io/visibility" not in theirs["metadata"]["labels"]
    knative = inference_service(name="churn", namespace="ns", uid="u", spec=spec, plan=plan, mode="Knative",
                                defaults=d, modelops_route=True)
    assert "networking.kserve.io/visibility" not in knative["metadata"]["labels"]


class FakeKube:
    """The calls handlers/traffic.py makes, over dicts (HTTPRoutes and Services by name, Services' readiness)."""

    def __init__(self, ready: dict[str, bool], routes: dict[str, Any] | None = None,
                 services: dict[str, Any] | None = None) -> None:
        self.ready, self.routes, self.applied = ready, dict(routes or {}), []  # type: list[dict[str, Any]]
        self.services: dict[str, Any] = dict(services or {})
        self.deleted: list[str] = []

    def get_service(self, namespace: str, name: str) -> Any:
        return self.services.get(name)

    def apply_service(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(manifest)
        self.services[manifest["metadata"]["name"]] = manifest
        return manifest

    def delete_service(self, namespace: str, name: str) -> None:
        self.deleted.append(name)
        self.services.pop(name, None)

    def get(self, group: str, version: str, plural: str, namespace: str, name: str) -> Any:
        return self.routes.get(name)

    def service_ready(self, namespace: str, service: str) -> bool:
        return self.ready.get(service, False)

    def apply(self, group: str, version: str, plural: str, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(manifest)
        self.routes[manifest["metadata"]["name"]] = manifest
        return manifest


class Settings:
    def __init__(self, traffic_split: str = "auto", gateway: str = "") -> None:
        self.traffic_split, self.gateway = traffic_split, gateway


KSERVE_INGRESS = json.dumps({"kserveIngressGateway": "kserve/kserve-ingress-gateway", "ingressDomain": "example.com"})


def test_handler_moves_the_route_with_the_rollout_and_only_to_ready_canaries() -> None:
    from modelops.handlers.traffic import apply_traffic, plan_traffic

    kube = FakeKube({"churn-v1-predictor": True, "churn-v2-predictor": False})
    plan = ServingPlan(ModelRef("pvc://m/1", "1"), ModelRef("pvc://m/2", "2"), 25)
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", plan, KSERVE_INGRESS)  # type: ignore[arg-type]
    assert tp.owner == "modelops" and tp.status["weights"] == {"v1": 100} and "no ready endpoint" in tp.status["message"]
    assert tp.status["hostname"] == "churn-ns.example.com" and tp.status["gateway"] == "kserve/kserve-ingress-gateway"
    apply_traffic(kube, "ns", tp, NOW)  # type: ignore[arg-type]
    assert len(kube.applied) == 1
    apply_traffic(kube, "ns", tp, NOW)  # type: ignore[arg-type]
    assert len(kube.applied) == 1, "an unchanged route is not re-sent"
    kube.ready["churn-v2-predictor"] = True
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", plan, KSERVE_INGRESS)  # type: ignore[arg-type]
    msg = apply_traffic(kube, "ns", tp, NOW)  # type: ignore[arg-type]
    assert tp.status["weights"] == {"v1": 75, "v2": 25} and len(kube.applied) == 2
    assert "has not reported" in msg  # no gateway status yet: said, not hidden
    promoted = ServingPlan(ModelRef("pvc://m/2", "2"))
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", promoted, KSERVE_INGRESS)  # type: ignore[arg-type]
    assert tp.status["weights"] == {"v2": 100}


def test_handler_leaves_the_split_to_a_kserve_that_weights_its_own_route() -> None:
    from modelops.handlers.traffic import plan_traffic

    kserve_route = {"spec": {"rules": [{"backendRefs": [{"name": "churn-v1-predictor", "weight": 75},
                                                        {"name": "churn-v2-predictor", "weight": 25}]}]}}
    kube = FakeKube({}, {"churn": kserve_route})
    plan = ServingPlan(ModelRef("pvc://m/1", "1"), ModelRef("pvc://m/2", "2"), 25)
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", plan, KSERVE_INGRESS)  # type: ignore[arg-type]
    assert tp.owner == "kserve" and tp.route is None and tp.status == {"splitBy": "kserve"}
    forced = plan_traffic(kube, Settings("modelops"), "ns", "churn", "u1", plan, KSERVE_INGRESS)  # type: ignore[arg-type]
    assert forced.owner == "modelops" and forced.route is not None
    no_gateway = plan_traffic(FakeKube({}), Settings("modelops"), "ns", "churn", "u1", plan, None)  # type: ignore[arg-type]
    assert no_gateway.route is None and "namespace/name" in no_gateway.status["message"]


def test_knative_mode_without_knative_serving_is_a_clear_condition() -> None:
    from modelops.decide.kserve_status import MODE_CONDITION, mode_condition

    missing = mode_condition("Knative", knative_served=False)
    assert (missing.type, missing.status, missing.reason) == (MODE_CONDITION, "False", "KnativeServingMissing")
    assert "serving.knative.dev/v1" in missing.message and "deploymentMode: Standard" in missing.message
    assert mode_condition("Knative", knative_served=True).status == "True"
    assert mode_condition("Standard", knative_served=False).status == "True"


def kserve_service(target_port: int) -> dict[str, Any]:
    """The predictor Service KServe v0.20 makes (service_reconciler.go createDefaultSvc)."""
    return {"metadata": {"name": "churn-v2-predictor"},
            "spec": {"selector": {"app": "isvc.churn-v2-predictor"},
                     "ports": [{"name": "http1", "port": 80, "targetPort": target_port}]}}


def test_a_canary_that_logs_is_reached_through_its_agent() -> None:
    from modelops.decide.traffic_split import canary_backend, logged_service, targets_agent

    assert logged_service("churn", "v2") == "churn-v2-logged"
    assert targets_agent(kserve_service(9081)) and not targets_agent(kserve_service(8080))
    assert not targets_agent(None) and not targets_agent({"spec": {"ports": []}})
    # KServe v0.20: the canary's Service skips the agent, so modelops' own Service carries the share
    assert canary_backend("churn", "v2", True, kserve_service(8080)) == "churn-v2-logged"
    assert canary_backend("churn", "v2", True, None) == "churn-v2-logged"  # KServe has not made it yet
    # a KServe whose canary Service targets the agent, or a canary that does not log: KServe's Service
    assert canary_backend("churn", "v2", True, kserve_service(9081)) == "churn-v2-predictor"
    assert canary_backend("churn", "v2", False, kserve_service(8080)) == "churn-v2-predictor"
    s = split("churn", "v1", "v2", 30, {"churn-v1-predictor": True, "churn-v2-logged": True},
              canary_service="churn-v2-logged")
    assert s.backends == (Backend("churn-v1-predictor", 70, "v1"), Backend("churn-v2-logged", 30, "v2"))
    s = split("churn", "v1", "v2", 30, READY, canary_service="churn-v2-logged")  # ours has no endpoint yet
    assert s.weights() == {"v1": 100} and "no ready endpoint" in s.note


def test_the_logged_canary_service_selects_the_canary_pods_and_targets_the_agent() -> None:
    from modelops.desired.canary_service import ANN_SERVICE_HASH, logged_canary_service, service_hash

    svc = logged_canary_service(name="churn", namespace="ns", uid="u1", service="churn-v2-logged",
                                predictor_service="churn-v2-predictor")
    assert svc["metadata"]["name"] == "churn-v2-logged" and svc["metadata"]["namespace"] == "ns"
    assert svc["spec"]["selector"] == kserve_service(8080)["spec"]["selector"]  # the Pods KServe's Service selects
    assert svc["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9081}]
    assert svc["spec"]["type"] == "ClusterIP"
    owner_ref = svc["metadata"]["ownerReferences"][0]
    assert (owner_ref["kind"], owner_ref["name"], owner_ref["uid"], owner_ref["controller"]) == \
        ("ModelDeployment", "churn", "u1", True)
    assert svc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelops"  # the admission policy's rule
    assert svc["metadata"]["annotations"][ANN_SERVICE_HASH] == service_hash(svc)


def test_handler_routes_a_logging_canary_through_its_agent_and_removes_the_service_after_it() -> None:
    from modelops.handlers.traffic import apply_traffic, plan_traffic, traffic_status

    kube = FakeKube({"churn-v1-predictor": True, "churn-v2-predictor": True},
                    services={"churn-v2-predictor": kserve_service(8080)})
    plan = ServingPlan(ModelRef("pvc://m/1", "1"), ModelRef("pvc://m/2", "2"), 25)
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", plan, KSERVE_INGRESS, True, None)  # type: ignore[arg-type]
    # the Service of modelops has no endpoint before it exists: all traffic to the stable predictor, said so
    assert tp.service is not None and tp.status["canaryService"] == "churn-v2-logged"
    assert tp.status["weights"] == {"v1": 100} and "no ready endpoint" in tp.status["message"]
    apply_traffic(kube, "ns", tp, NOW)  # type: ignore[arg-type]
    assert [m["kind"] for m in kube.applied] == ["Service", "HTTPRoute"], "the Service goes before the route"
    kube.ready["churn-v2-logged"] = True
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", plan, KSERVE_INGRESS, True,  # type: ignore[arg-type]
                      traffic_status(tp, ""))
    apply_traffic(kube, "ns", tp, NOW)  # type: ignore[arg-type]
    assert tp.status["weights"] == {"v1": 75, "v2": 25} and "retiring" not in tp.status
    refs = kube.routes["churn-traffic"]["spec"]["rules"][0]["backendRefs"]
    assert {r["name"]: r["weight"] for r in refs} == {"churn-v1-predictor": 75, "churn-v2-logged": 25}
    assert [m["kind"] for m in kube.applied] == ["Service", "HTTPRoute", "HTTPRoute"], "unchanged Service not re-sent"

    # promoted: while KServe's Service of v2 still skips the agent (it was made for the canary), v2 stays behind
    # modelops' Service: not a request bypasses the logger, none goes to a Service KServe is rewriting
    promoted = ServingPlan(ModelRef("pvc://m/2", "2"))
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", promoted, KSERVE_INGRESS, True,  # type: ignore[arg-type]
                      traffic_status(tp, ""))
    assert tp.status["weights"] == {"v2": 100} and tp.status["canaryService"] == "churn-v2-logged"
    assert "retiring" not in tp.status and "until KServe's Service churn-v2-predictor targets" in tp.status["message"]
    assert tp.route is not None and route_services(tp.route) == {"churn-v2-logged"}
    apply_traffic(kube, "ns", tp, NOW)  # type: ignore[arg-type]
    assert kube.deleted == [] and [m["kind"] for m in kube.applied][-1] == "HTTPRoute"
    # KServe made v2 its stable predictor: its Service targets the agent, the route goes to it, and modelops'
    # Service is removed only once the gateway serves the new route
    kube.services["churn-v2-predictor"] = kserve_service(9081)
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", promoted, KSERVE_INGRESS, True,  # type: ignore[arg-type]
                      traffic_status(tp, ""))
    assert tp.status["retiring"] == ["churn-v2-logged"] and "canaryService" not in tp.status
    assert tp.route is not None and route_services(tp.route) == {"churn-v2-predictor"}
    gateway_saw = {"parents": [{"parentRef": {"name": "kserve-ingress-gateway", "namespace": "kserve"},
                                "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 2},
                                               {"type": "ResolvedRefs", "status": "True", "observedGeneration": 2}]}]}
    written = [{"manager": "modelops", "operation": "Apply", "time": "2026-11-30T11:59:58Z"},
               {"manager": "traefik", "operation": "Update", "subresource": "status", "time": "2026-11-30T12:00:00Z"}]

    def apply_route(group: str, version: str, plural: str, manifest: dict[str, Any]) -> dict[str, Any]:
        kube.applied.append(manifest)
        kube.routes[manifest["metadata"]["name"]] = {**manifest, "metadata": {**manifest["metadata"], "generation": 3,
                                                                              "managedFields": written},
                                                     "status": gateway_saw}
        return kube.routes[manifest["metadata"]["name"]]

    kube.apply = apply_route  # type: ignore[method-assign]
    msg = apply_traffic(kube, "ns", tp, NOW)  # type: ignore[arg-type]
    assert kube.deleted == [] and tp.status["retiring"] == ["churn-v2-logged"], "deleted before the gateway saw it"
    assert msg == "", msg  # accepted; the removal waits without an error
    gateway_saw["parents"][0]["conditions"] = [{**c, "observedGeneration": 3}
                                               for c in gateway_saw["parents"][0]["conditions"]]
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", promoted, KSERVE_INGRESS, True,  # type: ignore[arg-type]
                      traffic_status(tp, ""))
    assert tp.status["retiring"] == ["churn-v2-logged"]  # still named until it is gone
    # reported, but written 2 s ago: the gateway may still serve the route before it (its configuration throttle)
    assert apply_traffic(kube, "ns", tp, NOW) == ""  # type: ignore[arg-type]
    assert kube.deleted == [] and tp.status["retiring"] == ["churn-v2-logged"]
    assert apply_traffic(kube, "ns", tp, NOW + timedelta(seconds=4)) == ""  # type: ignore[arg-type]
    assert kube.deleted == ["churn-v2-logged"] and "retiring" not in traffic_status(tp, "")


def test_a_canary_without_a_logger_keeps_kserves_service() -> None:
    from modelops.handlers.traffic import plan_traffic

    kube = FakeKube({"churn-v1-predictor": True, "churn-v2-predictor": True},
                    services={"churn-v2-predictor": kserve_service(8080)})
    plan = ServingPlan(ModelRef("pvc://m/1", "1"), ModelRef("pvc://m/2", "2"), 25)
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", plan, KSERVE_INGRESS, False, None)  # type: ignore[arg-type]
    assert tp.service is None and "canaryService" not in tp.status and tp.status["weights"] == {"v1": 75, "v2": 25}
    # and one whose KServe already targets the agent (a later KServe)
    kube.services["churn-v2-predictor"] = kserve_service(9081)
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", plan, KSERVE_INGRESS, True, None)  # type: ignore[arg-type]
    assert tp.service is None and tp.status["weights"] == {"v1": 75, "v2": 25}


def isvc(stable: str, canary: str | None = None) -> dict[str, Any]:
    """The predictors of an InferenceService as the builder lays them out (Standard mode)."""
    spec: dict[str, Any] = {"predictor": {"name": stable}}
    if canary:
        spec["canary"] = [{"trafficPercent": 10, "predictor": {"name": canary}}]
    return {"spec": spec}


def route_at(generation: int, observed: int | None, written: str, backends: list[str]) -> dict[str, Any]:
    conditions = [{"type": t, "status": "True", "observedGeneration": observed} for t in ("Accepted", "ResolvedRefs")]
    return {"metadata": {"generation": generation, "managedFields": [
        {"manager": "modelops", "operation": "Apply", "time": written},
        {"manager": "traefik", "operation": "Update", "subresource": "status", "time": "2026-11-30T12:00:00Z"}]},
        "spec": {"rules": [{"backendRefs": [{"name": b, "port": 80} for b in backends]}]},
        "status": {"parents": [{"conditions": conditions}]} if observed is not None else {}}


def test_which_predictors_an_inference_service_change_removes() -> None:
    assert isvc_predictors(isvc("v1", "v2")) == {"v1", "v2"} and isvc_predictors(None) == set()
    assert dropped("churn", isvc("v1", "v2"), isvc("v2")) == {"v1"}  # a promotion removes the old stable
    assert dropped("churn", isvc("v1", "v2"), isvc("v1")) == {"v2"}  # a rollback removes the canary
    assert dropped("churn", isvc("v1"), isvc("v1", "v2")) == set()  # a new canary removes nothing
    assert dropped("churn", None, isvc("v1")) == set()
    assert services_of("churn", {"v1"}) == {"churn-v1-predictor", "churn-v1-logged"}
    assert route_services(route_at(1, 1, "2026-11-30T11:00:00Z", ["churn-v1-predictor", "churn-v2-logged"])) == \
        {"churn-v1-predictor", "churn-v2-logged"}


def test_the_gateway_serves_a_route_once_it_reported_it_and_its_throttle_passed() -> None:
    old = "2026-11-30T11:00:00Z"
    assert gateway_serves(route_at(3, 3, old, []), NOW) == (True, "")
    serves, why = gateway_serves(route_at(3, 2, old, []), NOW)
    assert not serves and "generation 3" in why
    serves, why = gateway_serves(route_at(3, 3, "2026-11-30T11:59:58Z", []), NOW)  # the gateway's status write
    assert not serves and "2s ago" in why  # is not the route's change: that one is 2 s old
    assert gateway_serves(route_at(3, 3, "2026-11-30T11:59:58Z", []), NOW + timedelta(seconds=3))[0]
    assert gateway_serves(route_at(3, None, old, []), NOW)[0]  # no gateway reports on it: none serves it
    assert gateway_serves(None, NOW)[0]
    assert not waited_too_long(route_at(3, 2, "2026-11-30T11:59:30Z", []), NOW)
    assert waited_too_long(route_at(3, 2, "2026-11-30T11:58:59Z", []), NOW)


def test_a_just_promoted_version_stays_behind_its_logged_service_until_kserves_targets_the_agent() -> None:
    assert stable_backend("churn", "v2", True, kserve_service(8080), "churn-v2-logged") == "churn-v2-logged"
    assert stable_backend("churn", "v2", True, kserve_service(9081), "churn-v2-logged") == "churn-v2-predictor"
    # no Service of modelops in use for it (a first deployment, or it never was a logged canary): KServe's
    assert stable_backend("churn", "v2", True, kserve_service(8080), None) == "churn-v2-predictor"
    assert stable_backend("churn", "v2", True, kserve_service(8080), "churn-v3-logged") == "churn-v2-predictor"
    assert stable_backend("churn", "v2", False, kserve_service(8080), "churn-v2-logged") == "churn-v2-predictor"
    assert split("churn", "v2", None, 0, {}, stable_service="churn-v2-logged").backends == \
        (Backend("churn-v2-logged", 100, "v2"),)


@pytest.mark.parametrize("live,desired,route_before,route_after", [
    # promotion: v1 leaves, v2 (the canary, behind modelops' Service) takes everything
    (isvc("v1", "v2"), isvc("v2"), ["churn-v1-predictor", "churn-v2-logged"], {"churn-v2-logged"}),
    # rollback: the canary leaves
    (isvc("v1", "v2"), isvc("v1"), ["churn-v1-predictor", "churn-v2-logged"], {"churn-v1-predictor"}),
])
def test_a_change_that_removes_a_predictor_waits_for_the_gateway_to_serve_the_route_without_it(
        live: dict[str, Any], desired: dict[str, Any], route_before: list[str], route_after: set[str]) -> None:
    """KServe deletes a removed predictor's Service at once: a gateway still routing to it answers 500 (seen
    at promotions on the node). The route goes first; the InferenceService change waits for the gateway."""
    from modelops.handlers.traffic import apply_traffic, isvc_hold, plan_traffic

    kube = FakeKube({"churn-v1-predictor": True, "churn-v2-predictor": True, "churn-v2-logged": True},
                    services={"churn-v2-predictor": kserve_service(8080)})
    kube.routes["churn-traffic"] = route_at(2, 2, "2026-11-30T11:00:00Z", route_before)
    stable = desired["spec"]["predictor"]["name"]
    plan = ServingPlan(ModelRef(f"pvc://m/{stable[1:]}", stable[1:]))
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", plan, KSERVE_INGRESS, True,  # type: ignore[arg-type]
                      {"splitBy": "modelops", "canaryService": "churn-v2-logged"})
    gateway = {"parents": [{"conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 2}]}]}

    def apply_route(group: str, version: str, plural: str, manifest: dict[str, Any]) -> dict[str, Any]:
        kube.applied.append(manifest)
        kube.routes["churn-traffic"] = {**manifest, "status": gateway, "metadata": {
            **manifest["metadata"], "generation": 3,
            "managedFields": [{"manager": "modelops", "operation": "Apply", "time": "2026-11-30T12:00:00Z"}]}}
        return kube.routes["churn-traffic"]

    kube.apply = apply_route  # type: ignore[method-assign]
    apply_traffic(kube, "ns", tp, NOW)  # type: ignore[arg-type]
    assert route_services(kube.routes["churn-traffic"]) == route_after
    held = isvc_hold(tp, "churn", live, desired, NOW)  # type: ignore[arg-type]
    gone = sorted(dropped("churn", live, desired))
    assert held and f"removes {gone[0]}" in held and "generation 3" in held, held
    gateway["parents"][0]["conditions"][0]["observedGeneration"] = 3
    assert "ago" in isvc_hold(tp, "churn", live, desired, NOW + timedelta(seconds=1))  # type: ignore[arg-type]
    assert isvc_hold(tp, "churn", live, desired, NOW + timedelta(seconds=5)) == ""  # type: ignore[arg-type]
    # a gateway that never reports does not stall the change for ever
    gateway["parents"][0]["conditions"][0]["observedGeneration"] = 2
    assert isvc_hold(tp, "churn", live, desired, NOW + timedelta(seconds=59))  # type: ignore[arg-type]
    assert isvc_hold(tp, "churn", live, desired, NOW + timedelta(seconds=60)) == ""  # type: ignore[arg-type]
    # nothing removed (a new canary): no wait
    assert isvc_hold(tp, "churn", isvc("v1"), isvc("v1", "v2"), NOW) == ""  # type: ignore[arg-type]
