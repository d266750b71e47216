"""Pure parts of the e2e loop and the KServe stand-in: names, pvc:// mounts, status, the traffic split,
and the Prometheus relabelling that gives predictor series their `side`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from modelops_dev.e2e import kserve_standin as ks
from modelops_dev.e2e.loop import release_name
from modelops_dev.e2e.traffic import logger_headers, split

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_names_follow_kserve() -> None:
    assert ks.deployment_name("churn", None) == "churn-predictor"
    assert ks.deployment_name("churn", "v2") == "churn-v2-predictor"
    assert release_name("modelops-demo") == "modelops-demo" and release_name("t1") == "modelops-t1"


@pytest.mark.parametrize(("uri", "want"), [
    ("pvc://mlflow/artifacts/1/m-a/artifacts", ("mlflow", "artifacts/1/m-a/artifacts")),
    ("pvc://claim", ("claim", "")),
    ("s3://bucket/model", None),
    ("mlflow-artifacts:/1/x", None),
])
def test_storage_mount(uri: str, want: tuple[str, str] | None) -> None:
    assert ks.storage_mount(uri) == want


def _isvc(canary: bool) -> dict:
    spec: dict = {"predictor": {"name": "v1"}}
    if canary:
        spec["canary"] = [{"trafficPercent": 25, "predictor": {"name": "v2"}}]
    return {"metadata": {"name": "churn", "namespace": "ns", "generation": 3, "uid": "u"}, "spec": spec}


def test_status_shapes() -> None:
    st = ks.isvc_status(_isvc(True), True, [("v2", 25, False)])
    assert st["observedGeneration"] == 3 and st["deploymentMode"] == "Standard"
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "IngressReady": "True", "PredictorReady": "True", "Ready": "True", "CanaryPredictorReady": "False"}
    assert [(t["revisionName"], t["percent"]) for t in st["components"]["predictor"]["traffic"]] == [("v1", 75), ("v2", 25)]
    assert st["url"] == "http://churn-predictor.ns.svc.cluster.local"
    bad = ks.isvc_status(_isvc(False), False, [], "no", "StorageUriUnsupported")
    assert bad["modelStatus"]["transitionStatus"] == "InvalidSpec" and "url" not in bad


def test_rolled_out() -> None:
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 1},
           "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}}
    assert ks.rolled_out(dep)
    assert not ks.rolled_out({**dep, "status": {**dep["status"], "observedGeneration": 1}})
    assert not ks.rolled_out({**dep, "status": {**dep["status"], "replicas": 2}})  # an old pod still there
    assert not ks.rolled_out(None)


def test_split_only_to_a_ready_canary() -> None:
    isvc = _isvc(True)
    assert split(isvc) == (None, 0)
    isvc["status"] = {"canaryStatuses": [{"name": "v2", "ready": True, "trafficPercent": 25}]}
    assert split(isvc) == ("v2", 25)
    assert split(_isvc(False)) == (None, 0) and split(None) == (None, 0)


def test_logger_headers_are_kserves() -> None:
    h = logger_headers("id-1", "response", "churn", "ns", "canary", "2")
    assert h["Ce-Type"] == "org.kubeflow.serving.inference.response" and h["Ce-Id"] == "id-1"
    assert h["Ce-Endpoint"] == "canary" and '"modelops.dev/model-version": "2"' in h["Ce-Annotations"]


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
