"""Operator- and trainer-created Pods pass the `restricted` Pod Security Standard (issue 16, L4).

The real API server's PodSecurity admission, enforcing `restricted` on a namespace, judges the Pods the
operator's manifests produce: the training Job's Pod template as the Job controller creates it, and each
predictor (stable, Standard-mode canary, KServe runtime) as KServe turns a PredictorSpec into a Pod (its
containers plus the pod-level fields, PredictorSpec inlines PodSpec). A control Pod with the securityContext
of c20ee66 (no runAsNonRoot, no seccomp on the predictor) is refused, so enforcement is really on.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from modelops.decide.rollout import ModelRef, ServingPlan
from modelops.desired.inference_service import Defaults, inference_service
from modelops.desired.training_job import JobDefaults, training_job

pytestmark = pytest.mark.cluster

V1 = ModelRef("pvc://models/churn/1", "1", digest="a" * 64)
V2 = ModelRef("pvc://models/churn/2", "2", digest="b" * 64)


@pytest.fixture
def restricted_ns(kube: Any) -> Iterator[str]:
    from kubernetes import client

    name = f"psa-{uuid.uuid4().hex[:8]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        yield name
    finally:
        kube.core.delete_namespace(name)


def _pod(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _create(kube: Any, pod: dict[str, Any]) -> None:
    kube.core.create_namespaced_pod(pod["metadata"]["namespace"], pod, dry_run="All")


def _predictor_pods(namespace: str, runtime: str) -> list[tuple[str, dict[str, Any]]]:
    spec = {"model": {"name": "churn"}, "serving": {"runtime": runtime, "minReplicas": 1}}
    out = []
    for mode in ("Knative", "Standard"):
        isvc = inference_service(name="churn", namespace=namespace, uid="u", spec=spec, plan=ServingPlan(V1, V2, 10),
                                 mode=mode, defaults=Defaults("modelops/model-server:dev", "http://drift/events", "s"))
        predictors = [("predictor", isvc["spec"]["predictor"])]
        predictors += [(f"canary{i}", c["predictor"]) for i, c in enumerate(isvc["spec"].get("canary") or [])]
        for part, pred in predictors:
            containers = copy.deepcopy(pred.get("containers") or [{**pred["model"], "image": "kserve/mlserver:1",
                                                                   "name": "kserve-container"}])
            for c in containers:  # fields of KServe's ModelSpec that a Pod's container does not have
                for key in ("modelFormat", "protocolVersion", "storageUri", "runtime"):
                    c.pop(key, None)
            pod_spec = {"containers": containers}
            if pred.get("securityContext"):
                pod_spec["securityContext"] = pred["securityContext"]
            out.append((f"{mode.lower()}-{runtime}-{part}", pod_spec))
    return out


def test_operator_and_trainer_pods_are_admitted_under_restricted(kube: Any, restricted_ns: str) -> None:
    rs = {"metadata": {"name": "churn", "namespace": restricted_ns, "uid": "u"},
          "spec": {"training": {"modelName": "churn"}, "env": [{"name": "A", "value": "b"}]}}
    run = {"id": "r1", "job": "churn-r1", "trigger": "manual", "firingKey": "k"}
    job = training_job(rs, run, JobDefaults(trainer_image="modelops/trainer:dev", mlflow_tracking_uri="http://m"))
    pods = [("trainer", job["spec"]["template"]["spec"])]
    pods += _predictor_pods(restricted_ns, "modelops") + _predictor_pods(restricted_ns, "kserve")
    assert len(pods) == 1 + 2 * (1 + 2)
    for name, spec in pods:
        try:
            _create(kube, _pod(restricted_ns, name, spec))
        except ApiException as exc:
            pytest.fail(f"{name} refused under restricted: {json.loads(exc.body).get('message')}")


def test_the_old_predictor_pod_is_refused_so_enforcement_is_on(kube: Any, restricted_ns: str) -> None:
    old = {"containers": [{"name": "kserve-container", "image": "modelops/model-server:dev",
                           "command": ["modelops", "serve"]}]}  # c20ee66: no securityContext at all
    with pytest.raises(ApiException) as err:
        _create(kube, _pod(restricted_ns, "old", old))
    message = json.loads(err.value.body)["message"]
    assert err.value.status == 403 and 'violates PodSecurity "restricted' in message
    assert "runAsNonRoot" in message and "seccompProfile" in message
