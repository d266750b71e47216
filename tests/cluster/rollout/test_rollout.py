"""Canary rollouts end to end: real API server with KServe's CRD, real MLflow, real Prometheus scraping real
`modelops serve` processes. Healthy canary -> promoted; a canary whose model rejects the clients' requests (it
requires a feature they do not send: 422 on every request) -> rolled back; Prometheus down -> held."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from modelops.api import GROUP, VERSION
from modelops.api.audit import OPERATOR_ACTOR, TAG_PREFIX, Record
from modelops.desired import audit
from tests.cluster.rollout.helpers import (
    LoadGenerator,
    ModelServers,
    PrometheusProc,
    cond,
    isvc_get,
    md_get,
    register_versions,
    storage_uri_of,
    wait_for,
)

pytestmark = pytest.mark.cluster

SEL = 'namespace="{{namespace}}",isvc="{{name}}",side="{{side}}"'
METRICS = [
    # share of requests answered 2xx (a model that rejects what stable accepts is failing its callers),
    # absolute and relative to stable (robust on a loaded 2-core machine). `or vector(0)`: with no 2xx at all
    # the numerator has no series, and the ratio must read 0 (fail), not "no data" (hold)
    {"name": "success-rate",
     "query": f'(sum(rate(modelops_serving_requests_total{{{SEL},status=~"2.."}}[5s])) or vector(0)) / '
              f"sum(rate(modelops_serving_requests_total{{{SEL}}}[5s]))",
     "thresholdRange": {"min": 0.95}, "baseline": {"minRatio": 0.95}},
    {"name": "latency-p99",
     "query": "histogram_quantile(0.99, sum by (le) "
              f"(rate(modelops_serving_request_duration_seconds_bucket{{{SEL}}}[5s])))",
     "thresholdRange": {"max": 0.25}},
]


def md(name: str, model: str, pause: str = "2s", **rollout: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": "1s"},
                     "serving": {"deploymentMode": "Knative"},
                     "rollout": {"steps": [{"weight": 20, "pause": pause}, {"weight": 50, "pause": pause}],
                                 "analysis": {"interval": "1s", "failureLimit": 1, "consecutiveErrorLimit": 1,
                                              "inconclusiveLimit": 60, "metrics": METRICS}, **rollout}}}


def start_serving(op: Any, ns: str, name: str, model: str, mlflow_uri: str, versions: list[Path],
                  **kw: Any) -> MlflowClient:
    client = MlflowClient(mlflow_uri)
    register_versions(mlflow_uri, model, versions)
    client.set_registered_model_alias(model, "champion", "1")
    op.kube.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", md(name, model, **kw))
    wait_for(lambda: (o := md_get(op.kube, ns, name)) and cond(o, "Ready").get("status") == "True", 30,
             "version 1 serving")
    return client


def aliases(client: MlflowClient, model: str) -> dict[str, str]:
    return {a: str(v) for a, v in client.get_registered_model(model).aliases.items()}


def assert_one_record(kube: Any, client: MlflowClient, ns: str, name: str, model: str, version: str, action: str,
                      entry: dict[str, Any]) -> None:
    """Exactly one audit record of `action` on `version`, the same in status, the Event and the MLflow tag."""
    dec = entry["decision"]
    assert dec["action"] == action and dec["actor"] == OPERATOR_ACTOR and dec["via"] == "operator", dec
    key = f"{TAG_PREFIX}{action}.modeldeployments.{ns}.{name}"
    tag = wait_for(lambda: client.get_model_version(model, version).tags.get(key), 10, f"the {key} tag")
    rec = Record.from_json(tag)
    assert (rec.version, rec.time, rec.actor, rec.model) == (version, dec["time"], OPERATOR_ACTOR, model)
    reason = {"promote": "Promoted", "rollback": "RolledBack", "abort": "RolledBack"}[action]
    messages = wait_for(lambda: [e.message for e in kube.core.list_namespaced_event(ns).items
                                 if e.involved_object.name == name and e.reason == reason], 20, f"the {reason} Event")
    assert audit.records_from_event_messages(messages) == [rec]


def test_healthy_canary_is_promoted(rollout_operator: Any, namespace: str, mlflow_server: Any,
                                    servers: ModelServers, models: dict[str, Path]) -> None:
    kube = rollout_operator.kube
    client = start_serving(rollout_operator, namespace, "churn", "churn-ok", mlflow_server.uri,
                           [models["v1"], models["v2"]])
    v1_uri = md_get(kube, namespace, "churn")["status"]["stable"]["storageUri"]
    assert v1_uri.startswith(mlflow_server.uri + "/api/2.0/mlflow-artifacts/artifacts/")
    servers.start(namespace, "churn", mlflow_server.uri, "churn-ok", {"stable": "1", "canary": "2"})
    load = LoadGenerator(kube, namespace, "churn", servers)
    load.start()
    try:
        client.set_registered_model_alias("churn-ok", "challenger", "2")
        seen_weights: set[int] = set()

        def promoted() -> bool:
            st = md_get(kube, namespace, "churn")["status"]
            if st.get("rollout"):
                seen_weights.add(st["rollout"]["weight"])
            return bool(st.get("history")) and st["stable"].get("version") == "2"

        wait_for(promoted, 90, "promotion of version 2", interval=0.1,
                 dump=lambda: [md_get(kube, namespace, "churn").get("status"), isvc_get(kube, namespace, "churn")])
    finally:
        load.stop()
    got = md_get(kube, namespace, "churn")
    st = got["status"]
    assert st["history"][0]["result"] == "Promoted" and st["history"][0]["fromVersion"] == "1"
    assert "canary" not in st and "rollout" not in st and st["phase"] == "Serving"
    assert st["stable"]["alias"] == "champion"  # issue 20: the alias it serves under, not "challenger"
    assert seen_weights <= {20, 50} and 20 in seen_weights
    assert load.sent["canary"] > 10, load.sent  # the canary really took traffic
    assert not any(code >= 400 for _side, code in load.codes), load.codes  # and answered it
    # MLflow: champion -> 2, challenger cleared, the promotion recorded on the version
    wait_for(lambda: aliases(client, "churn-ok") == {"champion": "2"}, 10, "aliases")
    tags = client.get_model_version("churn-ok", "2").tags
    assert tags["modelops.dev/previous-version"] == "1" and "modelops.dev/promoted-at" in tags
    assert "modelops.dev/rejected" not in tags
    isvc = isvc_get(kube, namespace, "churn") or {}
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert storage_uri_of(isvc) == st["stable"]["storageUri"] != v1_uri
    # Events are outbox items after the registry writes of the same tick: wait for them, don't race them
    reasons = wait_for(lambda: (r := [e.reason for e in kube.core.list_namespaced_event(namespace).items
                                      if e.involved_object.name == "churn"]) and "Promoted" in r and r, 20,
                       "the Promoted Event")
    assert {"RolloutStarted", "StepAdvanced", "Promoted"} <= set(reasons) and reasons.count("Promoted") == 1
    # issue 18: the promotion is one audit record: in status.history, the Promoted Event and an MLflow tag
    assert_one_record(kube, client, namespace, "churn", "churn-ok", "2", "promote", st["history"][0])


def test_erroring_canary_is_rolled_back(rollout_operator: Any, namespace: str, mlflow_server: Any,
                                        servers: ModelServers, models: dict[str, Path]) -> None:
    kube = rollout_operator.kube
    # version 2 requires a feature the clients do not send: the real server answers 422 naming it
    client = start_serving(rollout_operator, namespace, "fraud", "churn-bad", mlflow_server.uri,
                           [models["v1"], models["v2-new-feature"]])
    v1 = md_get(kube, namespace, "fraud")["status"]["stable"]
    servers.start(namespace, "fraud", mlflow_server.uri, "churn-bad", {"stable": "1", "canary": "2"})
    load = LoadGenerator(kube, namespace, "fraud", servers)
    load.start()
    try:
        client.set_registered_model_alias("churn-bad", "challenger", "2")
        wait_for(lambda: (md_get(kube, namespace, "fraud")["status"].get("history") or [{}])[0].get("result")
                 == "RolledBack", 90, "rollback", interval=0.1)
        got = wait_for(lambda: (o := md_get(kube, namespace, "fraud")) and "rollout" not in o["status"] and o, 30,
                       "rollback settled")
    finally:
        load.stop()
    st = got["status"]
    assert st["history"][0]["reason"] == "AnalysisFailed" and st["stable"]["version"] == "1"
    assert "success-rate" in st["history"][0]["message"] or "latency-p99" in st["history"][0]["message"]
    assert load.codes.get(("canary", 422), 0) > 0 and not load.codes.get(("stable", 422)), load.codes
    assert st["lastRejected"]["version"] == "2"
    assert cond(got, "AnalysisHealthy")["status"] == "False"
    assert cond(got, "Progressing")["reason"] in ("RolledBack", "CandidateRejected")
    # MLflow: version 2 tagged rejected, challenger cleared, champion untouched
    wait_for(lambda: aliases(client, "churn-bad") == {"champion": "1"}, 10, "aliases")
    assert "modelops.dev/rejected" in client.get_model_version("churn-bad", "2").tags
    assert_one_record(kube, client, namespace, "fraud", "churn-bad", "2", "rollback", st["history"][0])
    isvc = isvc_get(kube, namespace, "fraud") or {}
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"] and storage_uri_of(isvc) == v1["storageUri"]
    # the rejected version is not rolled out again while the registry still names it
    time.sleep(3)
    assert "rollout" not in md_get(kube, namespace, "fraud")["status"]


def test_prometheus_down_mid_analysis_holds_and_says_why(rollout_operator: Any, namespace: str,
                                                         mlflow_server: Any, servers: ModelServers,
                                                         prometheus: PrometheusProc, models: dict[str, Path]) -> None:
    kube = rollout_operator.kube
    client = start_serving(rollout_operator, namespace, "held", "churn-held", mlflow_server.uri,
                           [models["v1"], models["v2"]], pause="1s")
    servers.start(namespace, "held", mlflow_server.uri, "churn-held", {"stable": "1", "canary": "2"})
    load = LoadGenerator(kube, namespace, "held", servers)
    load.start()
    try:
        client.set_registered_model_alias("churn-held", "challenger", "2")
        wait_for(lambda: (md_get(kube, namespace, "held")["status"].get("rollout") or {}).get("weight"), 30,
                 "rollout started", interval=0.1)
        prometheus.stop()
        try:
            got = wait_for(lambda: (o := md_get(kube, namespace, "held")) and
                           cond(o, "AnalysisHealthy").get("reason") == "MetricsUnavailable" and o, 30,
                           "MetricsUnavailable condition", interval=0.2)
            time.sleep(4)  # steps of 1s would have promoted by now
            got = md_get(kube, namespace, "held")
            st = got["status"]
            assert st["stable"]["version"] == "1" and st["canary"]["version"] == "2"
            assert st["rollout"]["consecutiveErrors"] >= 2 and not st.get("history")
            assert "unreachable" in cond(got, "AnalysisHealthy")["message"]
            assert cond(got, "Progressing")["reason"] == "MetricsUnavailable"
            assert "no promotion without data" in cond(got, "Progressing")["message"]
            assert aliases(client, "churn-held") == {"champion": "1", "challenger": "2"}
        finally:
            prometheus.start()
        # Prometheus back: the analysis recovers and the rollout completes
        wait_for(lambda: md_get(kube, namespace, "held")["status"]["stable"].get("version") == "2", 90,
                 "promotion after recovery", interval=0.2)
    finally:
        load.stop()
