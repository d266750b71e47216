"""Pure parts of the e2e loop: names, the analysis queries of the e2e ModelDeployment, the route weights the
gateway traffic reads, the V2 request body, the data server's files, the `Prometheus` object that the
Prometheus Operator runs for the loop, and the dashboard's queries."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelops_dev.e2e.gateway_traffic import route_weights, v2_inputs
from modelops_dev.e2e.loop import (
    IMAGES,
    NAMESPACE_LABELS,
    PROMETHEUS_SELECTOR,
    dashboard_queries,
    model_deployment,
    predictor_state,
    prometheus_objects,
    release_name,
    restart_problems,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_release_name() -> None:
    assert release_name("modelops-demo") == "modelops-demo"
    assert release_name("e2e") == "modelops-e2e"


def test_route_weights_by_predictor() -> None:
    route = {"spec": {"rules": [{"backendRefs": [
        {"kind": "Service", "name": "churn-v1-predictor", "port": 80, "weight": 75},
        {"kind": "Service", "name": "churn-v2-predictor", "port": 80, "weight": 25}]}]}}
    assert route_weights(route, "churn") == {"v1": 75, "v2": 25}
    # a canary that logs is reached through modelops' Service to its agent
    route["spec"]["rules"][0]["backendRefs"][1]["name"] = "churn-v2-logged"
    assert route_weights(route, "churn") == {"v1": 75, "v2": 25}
    # a ref without weight has weight 1 (Gateway API); refs to other Services are not predictors of this model
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "churn-v1-predictor"}, {"name": "other-v1-predictor"},
                                                {"name": "churn-predictor"}]
    assert route_weights(route, "churn") == {"v1": 1}
    assert route_weights(None, "churn") == {} and route_weights({"spec": {}}, "churn") == {}


def test_v2_inputs_one_tensor_per_column() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": [0.5, float("nan")], "c": ["x", float("nan")]})
    got = {t["name"]: t for t in v2_inputs(frame)}
    assert got["a"] == {"name": "a", "datatype": "INT64", "shape": [2], "data": [1, 2]}
    assert got["b"]["datatype"] == "FP64" and got["b"]["data"] == [0.5, None]
    assert got["c"]["datatype"] == "BYTES" and got["c"]["data"] == ["x", None]


def test_the_loops_analysis_is_the_samples_builtin_metrics_unchanged() -> None:
    """Issue 14: the e2e ModelDeployment's analysis is the canary sample's metrics as they are (built-ins over
    the chart's label convention, a side selected by its version)."""
    sample = yaml.safe_load((REPO / "manifests/samples/modeldeployment-canary.yaml").read_text())
    md = model_deployment("ns")
    assert md["spec"]["rollout"]["analysis"]["metrics"] == sample["spec"]["rollout"]["analysis"]["metrics"]
    assert {k: v for k, v in md["spec"]["rollout"]["analysis"].items() if k != "inconclusiveLimit"} == \
        sample["spec"]["rollout"]["analysis"]
    assert {m.get("builtin") for m in md["spec"]["rollout"]["analysis"]["metrics"]} == {"success-rate", "latency-p99"}
    assert not any("query" in m for m in md["spec"]["rollout"]["analysis"]["metrics"])


def test_the_loop_needs_the_serving_images_and_a_restricted_namespace() -> None:
    assert {"modelops/kserve-controller:dev", "modelops/kserve-agent:dev", "modelops/kserve-storage-initializer:dev",
            "modelops/traefik:dev"} <= set(IMAGES)
    assert NAMESPACE_LABELS["pod-security.kubernetes.io/enforce"] == "restricted"


def test_data_server_serves_an_incompatible_file() -> None:
    """The bad canary's data: shifted.csv with its first column renamed (a model the clients cannot call)."""
    doc = next(yaml.safe_load_all((REPO / "manifests/e2e/data-server.yaml").read_text()))
    script = doc["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "sed '1s/^customer_age,/age_years,/' /data/shifted.csv > /data/incompatible.csv" in script
    header = "customer_age,gender,dependent_count"
    assert re.sub(r"^customer_age,", "age_years,", header) == "age_years,gender,dependent_count"


def test_the_loops_prometheus_is_an_operator_object_selecting_the_charts_monitors() -> None:
    """No hand-written scrape configuration: a `Prometheus` selecting, in its own namespace, the ServiceMonitors,
    PodMonitor and PrometheusRule that the e2e values label, with discovery rights in that namespace only."""
    assert not (REPO / "manifests/e2e/prometheus.yaml").exists()
    objs = {o["kind"]: o for o in prometheus_objects("ns")}
    prom = objs["Prometheus"]["spec"]
    for key in ("serviceMonitorSelector", "podMonitorSelector", "ruleSelector"):
        assert prom[key] == {"matchLabels": PROMETHEUS_SELECTOR}, key
    assert not any(k.endswith("NamespaceSelector") for k in prom)  # its own namespace only
    assert "additionalScrapeConfigs" not in prom
    assert prom["securityContext"]["runAsNonRoot"] and prom["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert objs["Role"]["metadata"]["namespace"] == "ns" and "ClusterRole" not in objs
    values = yaml.safe_load((REPO / "manifests/e2e/values.yaml").read_text())
    assert values["monitoring"]["additionalLabels"] == PROMETHEUS_SELECTOR
    assert values["monitoring"]["prometheusOperator"] == "always"


def test_every_dashboard_panel_query_is_found_with_its_variables_set() -> None:
    dashboard = {"panels": [
        {"title": "a", "targets": [{"expr": 'x{namespace=~"$namespace", model=~"$model"}'}, {"expr": "y"}]},
        {"title": "row", "type": "row", "panels": [{"title": "b", "targets": [{"expr": 'z{namespace=~"${namespace}"}'}]}]},
        {"title": "text", "type": "text"}]}
    assert dashboard_queries(dashboard, "ns1", "churn") == [
        ("a", 'x{namespace=~"ns1", model=~"churn"}'), ("a", "y"), ("b", 'z{namespace=~"ns1"}')]
    shipped = yaml.safe_load((REPO / "charts/modelops/dashboards/modelops-overview.json").read_text())
    queries = dashboard_queries(shipped, "ns1", "churn")
    assert len({t for t, _ in queries}) >= 8 and not any("$" in q for _, q in queries)


def _deployment(generation: int, image: str = "modelops/model-server:dev") -> dict:
    return {"metadata": {"generation": generation},
            "spec": {"template": {"metadata": {"labels": {"app": "isvc.churn-v1-predictor"}},
                                  "spec": {"containers": [{"name": "kserve-container", "image": image}]}}}}


def _pod(uid: str, restarts: int = 0, deleting: bool = False) -> dict:
    meta = {"uid": uid, **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    return {"metadata": meta, "status": {"containerStatuses": [{"name": "kserve-container", "restartCount": restarts},
                                                               {"name": "agent", "restartCount": 0}]}}


def test_a_predictor_left_alone_shows_no_restart() -> None:
    before = predictor_state(_deployment(3), [_pod("a")])
    # a Pod of a finished rollout still being deleted is not one of the predictor's Pods
    assert restart_problems("v1", before, predictor_state(_deployment(3), [_pod("a"), _pod("old", deleting=True)])) == []


@pytest.mark.parametrize(("after", "what"), [
    (predictor_state(_deployment(4), [_pod("a")]), "generation 3 -> 4"),
    (predictor_state(_deployment(3, image="other"), [_pod("a")]), "pod template"),
    (predictor_state(_deployment(3), [_pod("b")]), "Pods ['a'] -> ['b']"),
    (predictor_state(_deployment(3), [_pod("a", restarts=1)]), "container restarts {'a': (0, 1)}"),
])
def test_each_kind_of_predictor_restart_is_named(after: dict, what: str) -> None:
    problems = restart_problems("v1", predictor_state(_deployment(3), [_pod("a")]), after)
    assert len(problems) == 1 and what in problems[0], problems


def test_a_predictor_without_pods_at_the_first_snapshot_proves_nothing() -> None:
    empty = predictor_state(_deployment(3), [])
    assert restart_problems("v2", empty, empty) == ["v2: no Pod at the first snapshot"]
