"""Pure parts of the e2e loop: names, the analysis queries of the e2e ModelDeployment, the route weights the
gateway traffic reads, the V2 request body, the data server's files, and the Prometheus relabelling that
gives predictor series their `side`."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelops_dev.e2e.gateway_traffic import route_weights, v2_inputs
from modelops_dev.e2e.loop import IMAGES, NAMESPACE_LABELS, model_deployment, release_name

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


def test_analysis_selects_the_pods_of_each_side() -> None:
    """KServe names every predictor's Deployment `{isvc}-{predictor}-predictor`, the stable one included, so a
    side is selected by its revision (the predictor name), and success means a 2xx answer."""
    md = model_deployment("ns")
    metrics = {m["name"]: m["query"] for m in md["spec"]["rollout"]["analysis"]["metrics"]}
    for q in metrics.values():
        assert 'pod=~"{{name}}-{{revision}}-predictor-.*"' in q and "side=" not in q
    assert 'status=~"2.."' in metrics["success-rate"]
    pod = re.compile("^churn-v2-predictor-.*$")
    assert pod.match("churn-v2-predictor-5d8f9c7b6d-x2x9z") and not pod.match("churn-v12-predictor-5d8f-x")


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


def test_prometheus_side_relabelling() -> None:
    docs = list(yaml.safe_load_all((REPO / "manifests/e2e/prometheus.yaml").read_text()))
    cfg = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["prometheus.yml"])
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "kserve-predictors")
    rule = next(r for r in job["relabel_configs"] if r.get("replacement") == "canary")
    canary = re.compile(f"^(?:{rule['regex']})$")  # Prometheus anchors relabel regexes
    assert canary.match("churn-v2-predictor") and canary.match("churn-u1a2b3c4d-predictor")
    assert not canary.match("churn-predictor") and not canary.match("my-v2-model-predictor-x")


def test_e2e_prometheus_uses_the_charts_label_convention_and_scrapes_the_operator() -> None:
    """Issue 14: the e2e scrape config and the chart's PodMonitor put the same labels on model-server series,
    and the operator's /metrics (the chart's container port named metrics) is scraped with its own labels."""
    docs = list(yaml.safe_load_all((REPO / "manifests/e2e/prometheus.yaml").read_text()))
    cfg = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["prometheus.yml"])
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    e2e_side = next(r["regex"] for r in jobs["kserve-predictors"]["relabel_configs"] if r.get("replacement") == "canary")
    chart = (REPO / "charts/modelops/templates/monitoring.yaml").read_text()
    assert f"regex: {e2e_side}" in chart
    assert {r["target_label"] for r in jobs["kserve-predictors"]["relabel_configs"] if "target_label" in r} >= {
        "namespace", "isvc", "side"}
    op = jobs["modelops-operator"]
    assert op["honor_labels"] is True
    keep = {r["regex"] for r in op["relabel_configs"] if r.get("action") == "keep"}
    assert keep == {"operator", "metrics"}
    assert "- name: metrics" in (REPO / "charts/modelops/templates/operator-deployment.yaml").read_text()
