"""The weighted HTTPRoute modelops writes for a Standard-mode canary, and who splits (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelops.decide.rollout import ModelRef, ServingPlan
from modelops.decide.traffic_split import (
    Backend,
    gateway_ref,
    isvc_hostname,
    kserve_route_weights_canary,
    owner,
    predictor_service,
    split,
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
    """The three calls handlers/traffic.py makes, over dicts (HTTPRoutes by name, Services' readiness)."""

    def __init__(self, ready: dict[str, bool], routes: dict[str, Any] | None = None) -> None:
        self.ready, self.routes, self.applied = ready, dict(routes or {}), []  # type: list[dict[str, Any]]

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
    apply_traffic(kube, "ns", tp)  # type: ignore[arg-type]
    assert len(kube.applied) == 1
    apply_traffic(kube, "ns", tp)  # type: ignore[arg-type]
    assert len(kube.applied) == 1, "an unchanged route is not re-sent"
    kube.ready["churn-v2-predictor"] = True
    tp = plan_traffic(kube, Settings(), "ns", "churn", "u1", plan, KSERVE_INGRESS)  # type: ignore[arg-type]
    msg = apply_traffic(kube, "ns", tp)  # type: ignore[arg-type]
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
