"""The KServe stand-in controller (modelops_dev.e2e.kserve_standin) against a real API server with KServe's real
InferenceService CRD: it creates KServe-named Deployments and Services for the stable and the canary
predictor, mounts the pvc:// model, fills KServe-shaped status, prunes a canary that left the spec, and
refuses what it cannot realise. No node here (Pods stay Pending and the Deployment controller keeps
their status at 0 available), so the test substitutes the stand-in's *observation* of a Deployment with a
rolled-out one for the names it marks available; the e2e tier checks readiness with real Pods."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelops_dev.e2e.kserve_standin import GROUP, PLURAL, VERSION, StandIn
from tests.fixtures.kserve import OTHER_CONTROLLER, install_kserve_crd

pytestmark = pytest.mark.cluster


def predictor(name: str, uri: str) -> dict[str, Any]:
    return {"name": name, "minReplicas": 1, "containers": [{
        "name": "kserve-container", "image": "modelops/model-server:dev", "command": ["modelops", "serve"],
        "args": ["--model-dir", "/mnt/models"], "env": [{"name": "STORAGE_URI", "value": uri}]}]}


AVAILABLE: set[str] = set()


def observe_available(standin: StandIn) -> None:
    real = standin._deployment

    def observed(ns: str, name: str) -> dict[str, Any] | None:
        dep = real(ns, name)
        if dep is not None and name in AVAILABLE:
            dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": 1,
                             "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}
        return dep

    standin._deployment = observed  # type: ignore[method-assign]


def mark_available(_kube: Any, _ns: str, name: str) -> None:
    AVAILABLE.add(name)


def test_standin_realises_standard_mode(kube_crds: Any, namespace: str) -> None:
    from kubernetes import client

    kube_crds.apps = client.AppsV1Api(kube_crds.api)
    install_kserve_crd(kube_crds)
    standin = StandIn(namespace=namespace, kubeconfig=kube_crds.kubeconfig)
    observe_available(standin)
    AVAILABLE.clear()
    isvc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
            "metadata": {"name": "churn", "namespace": namespace,
                         "annotations": {"serving.kserve.io/deploymentMode": "Standard",
                                         # not the session's stand-in (tests/fixtures/kserve.py) in the shared cluster
                                         OTHER_CONTROLLER: "e2e-standin"}},
            "spec": {"predictor": predictor("v1", "pvc://mlflow/artifacts/1/m-a/artifacts")}}
    kube_crds.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, isvc)

    def get() -> dict[str, Any]:
        return kube_crds.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "churn")  # type: ignore[no-any-return]

    def ready(obj: dict[str, Any], kind: str = "Ready") -> str:
        return next(c["status"] for c in obj["status"]["conditions"] if c["type"] == kind)

    standin.reconcile(get())
    dep = kube_crds.apps.read_namespaced_deployment("churn-predictor", namespace)
    mount = next(m for m in dep.spec.template.spec.containers[0].volume_mounts if m.mount_path == "/mnt/models")
    assert (mount.sub_path, mount.read_only) == ("artifacts/1/m-a/artifacts", True)
    assert dep.spec.template.spec.volumes[0].persistent_volume_claim.claim_name == "mlflow"
    assert dep.spec.template.metadata.labels["serving.kserve.io/inferenceservice"] == "churn"
    assert kube_crds.core.read_namespaced_service("churn-predictor", namespace).spec.ports[0].target_port == 8080
    assert ready(get()) == "False"

    mark_available(kube_crds, namespace, "churn-predictor")
    standin.reconcile(get())
    obj = get()
    assert ready(obj) == "True" and obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["components"]["predictor"]["traffic"][0]["percent"] == 100

    # a canary at 25%
    obj["spec"]["canary"] = [{"trafficPercent": 25, "predictor": predictor("v2", "pvc://mlflow/artifacts/1/m-b/artifacts")}]
    kube_crds.custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "churn", obj)
    standin.reconcile(get())
    assert kube_crds.apps.read_namespaced_deployment("churn-v2-predictor", namespace)
    assert get()["status"]["canaryStatuses"] == [{"name": "v2", "ready": False, "trafficPercent": 25,
                                                  "modelStatus": {"transitionStatus": "InProgress"}}]
    mark_available(kube_crds, namespace, "churn-v2-predictor")
    standin.reconcile(get())
    obj = get()
    assert ready(obj, "CanaryPredictorReady") == "True" and obj["status"]["canaryStatuses"][0]["ready"] is True
    assert [t["percent"] for t in obj["status"]["components"]["predictor"]["traffic"]] == [75, 25]

    # promotion: the canary predictor moves into spec.predictor, spec.canary empties; the canary objects go
    promoted = copy.deepcopy(obj)
    promoted["spec"]["predictor"] = obj["spec"]["canary"][0]["predictor"]
    promoted["spec"]["canary"] = []
    kube_crds.custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "churn", promoted)
    standin.reconcile(get())
    names = {d.metadata.name for d in kube_crds.apps.list_namespaced_deployment(namespace).items}
    assert names == {"churn-predictor"}
    dep = kube_crds.apps.read_namespaced_deployment("churn-predictor", namespace)
    mount = next(m for m in dep.spec.template.spec.containers[0].volume_mounts if m.mount_path == "/mnt/models")
    assert mount.sub_path == "artifacts/1/m-b/artifacts"
    AVAILABLE.discard("churn-predictor")  # the stable Deployment rolls to the new template (pods restart here)
    standin.reconcile(get())
    assert ready(get()) == "False"

    # what it cannot realise is refused in status, not pretended
    bad = {**isvc, "metadata": {"name": "s3", "namespace": namespace,
                                "annotations": {"serving.kserve.io/deploymentMode": "Standard",
                                         # not the session's stand-in (tests/fixtures/kserve.py) in the shared cluster
                                         OTHER_CONTROLLER: "e2e-standin"}},
           "spec": {"predictor": predictor("v1", "s3://bucket/model")}}
    kube_crds.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, bad)
    standin.reconcile(kube_crds.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "s3"))
    st = kube_crds.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "s3")["status"]
    cond = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert cond["status"] == "False" and cond["reason"] == "StorageUriUnsupported"
