"""The InferenceServices modelops writes against KServe's real CRD (v0.20 schema), and the operator's first
deployment of plain storage URIs in both deployment modes."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from modelops.api import GROUP, VERSION
from modelops.decide.rollout import ModelRef, ServingPlan
from modelops.desired.inference_service import Defaults, inference_service
from tests.cluster.rollout.helpers import cond, isvc_get, md_get, storage_uri_of, wait_for
from tests.fixtures.kserve import GROUP as KGROUP
from tests.fixtures.kserve import PLURAL as KPLURAL
from tests.fixtures.kserve import VERSION as KVERSION

pytestmark = pytest.mark.cluster

S = ModelRef("http://mlflow:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model", "3", "r3")
C = ModelRef("s3://models/churn/4", "4", "r4")
PLANS = {"stable": ServingPlan(S), "canary": ServingPlan(S, C, 25), "pinned": ServingPlan(S, None, 0, True)}
SERVINGS: dict[str, dict[str, Any]] = {
    "modelops": {"runtime": "modelops", "minReplicas": 1, "maxReplicas": 4, "scaleMetric": "concurrency",
                 "scaleTarget": 10, "containerConcurrency": 8, "timeoutSeconds": 30,
                 "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": 1}},
                 "env": [{"name": "X", "value": "1"}], "serviceAccountName": "models",
                 "nodeSelector": {"pool": "cpu"}, "labels": {"team": "ds"}, "annotations": {"a": "b"}},
    "kserve-xgboost": {"runtime": "kserve", "modelFormat": "xgboost", "protocolVersion": "v2",
                       "runtimeName": "kserve-xgbserver", "minReplicas": 2, "maxReplicas": 3},
}


@pytest.mark.parametrize(("mode", "plan", "serving"), list(itertools.product(("Knative", "Standard"), PLANS,
                                                                              SERVINGS)))
def test_every_manifest_shape_is_accepted_by_kserves_schema(kserve: Any, namespace: str, mode: str, plan: str,
                                                            serving: str) -> None:
    spec = {"model": {"name": "churn"}, "serving": SERVINGS[serving], "logger": {"mode": "all"}}
    manifest = inference_service(name="churn", namespace=namespace, uid="00000000-0000-0000-0000-000000000001",
                                 spec=spec, plan=PLANS[plan], mode=mode,  # type: ignore[arg-type]
                                 defaults=Defaults("modelops/model-server:test", "http://drift:8080/v1/events"))
    try:
        created = kserve.kube.custom.create_namespaced_custom_object(
            KGROUP, KVERSION, namespace, KPLURAL, manifest, dry_run="All", field_validation="Strict")
    except ApiException as exc:
        pytest.fail(f"KServe's CRD rejected the manifest: {exc.body}")
    # nothing was pruned: what we wrote is what KServe would read
    assert created["spec"] == manifest["spec"]


@pytest.mark.parametrize("mode", ["Knative", "Standard", "RawDeployment"])
def test_operator_serves_a_storage_uri_and_reports_ready(uri_operator: Any, namespace: str, mode: str) -> None:
    kube = uri_operator.kube
    md = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": "iris"},
          "spec": {"model": {"storageUri": "s3://models/iris/v1"},
                   "serving": {"runtime": "kserve", "modelFormat": "sklearn", "deploymentMode": mode}}}
    created = kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", md)
    isvc = wait_for(lambda: isvc_get(kube, namespace, "iris"), 10, "InferenceService created")
    assert storage_uri_of(isvc) == "s3://models/iris/v1"
    want = {"Knative": "Knative", "Standard": "Standard", "RawDeployment": "Standard"}[mode]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == want
    owner = isvc["metadata"]["ownerReferences"][0]
    assert owner["uid"] == created["metadata"]["uid"] and owner["controller"] is True
    got = wait_for(lambda: (o := md_get(kube, namespace, "iris")) and cond(o, "Ready").get("status") == "True" and o,
                   15, "ModelDeployment Ready")
    st = got["status"]
    assert st["stable"]["storageUri"] == "s3://models/iris/v1" and st["phase"] == "Serving"
    assert st["url"].startswith("http://iris.") and st["deploymentMode"] == want
    assert cond(got, "InferenceServiceReady")["status"] == "True"
    assert cond(got, "ModelResolved")["status"] == "True"
    # a serving change reaches the InferenceService; a foreign object is never taken over
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", "iris",
                                               {"spec": {"serving": {"maxReplicas": 7}}})
    wait_for(lambda: isvc_get(kube, namespace, "iris")["spec"]["predictor"].get("maxReplicas") == 7, 10,
             "maxReplicas applied")


def test_an_existing_foreign_inference_service_is_not_taken_over(uri_operator: Any, namespace: str) -> None:
    kube = uri_operator.kube
    foreign = {"apiVersion": f"{KGROUP}/{KVERSION}", "kind": "InferenceService", "metadata": {"name": "taken"},
               "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://x/y"}}}}
    kube.custom.create_namespaced_custom_object(KGROUP, KVERSION, namespace, KPLURAL, foreign)
    md = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": "taken"},
          "spec": {"model": {"storageUri": "s3://models/mine"}}}
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", md)
    got = wait_for(lambda: (o := md_get(kube, namespace, "taken")) and
                   cond(o, "InferenceServiceReady").get("reason") == "NotOwned" and o, 10, "NotOwned condition")
    assert "does not take it over" in cond(got, "InferenceServiceReady")["message"]
    assert storage_uri_of(isvc_get(kube, namespace, "taken") or {}) == "s3://x/y"
