"""The chart's ValidatingAdmissionPolicies against the real API server (issue 16, M8 and M9).

The policies are rendered with the chart's default values and applied; then every sample of
manifests/samples is accepted, and specs that choose an image, a ServiceAccount, a Secret or a URL outside the
allow-lists are refused with a message naming the field and the value. The operator-writes policy is checked
by impersonating the operator's ServiceAccount (given the RBAC it would have cluster-wide).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from modelops.api import GROUP, VERSION
from tests.charts.chart import render

pytestmark = pytest.mark.cluster

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
PLURAL = {"ModelDeployment": "modeldeployments", "RetrainSchedule": "retrainschedules"}
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
RELEASE_NS = "modelops"
OPERATOR_SA = "system:serviceaccount:modelops:modelops-operator"


def _sample(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((SAMPLES / name).read_text()))


MD = _sample("modeldeployment-standard-approval.yaml")
MD_CANARY = _sample("modeldeployment-canary.yaml")
RS = _sample("retrainschedule-nightly.yaml")


def _with(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    cur = out
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[keys[-1]] = value
    return out


# (case id, object, substrings the API server's message must contain)
DISALLOWED: list[tuple[str, Callable[[], dict[str, Any]], list[str]]] = [
    ("md-image", lambda: _with(MD, "spec.serving.image", "docker.io/attacker/miner:latest"),
     ["spec.serving.image", "docker.io/attacker/miner:latest", "allowedImagePrefixes"]),
    ("md-service-account", lambda: _with(MD, "spec.serving.serviceAccountName", "cluster-admin-sa"),
     ["spec.serving.serviceAccountName", "cluster-admin-sa"]),
    ("md-env-secret", lambda: _with(MD, "spec.serving.env", [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "prod-db-password", "key": "p"}}}]),
     ["spec.serving.env[].valueFrom.secretKeyRef.name", "prod-db-password"]),
    ("md-tracking-metadata-service", lambda: _with(MD, "spec.registry.trackingUri", "http://169.254.169.254/latest"),
     ["spec.registry.trackingUri", "169.254.169.254", "allowedUrls.tracking"]),
    ("md-tracking-external", lambda: _with(MD, "spec.registry.trackingUri", "https://mlflow.attacker.example.com"),
     ["spec.registry.trackingUri", "mlflow.attacker.example.com"]),
    ("md-credentials-secret", lambda: _with(MD, "spec.registry.credentialsSecretRef", {"name": "other-team-token"}),
     ["spec.registry.credentialsSecretRef.name", "other-team-token"]),
    ("md-prometheus-url", lambda: _with(MD_CANARY, "spec.rollout.analysis.prometheusUrl", "http://10.0.0.1:9090"),
     ["spec.rollout.analysis.prometheusUrl", "10.0.0.1"]),
    ("md-webhook-link-local", lambda: _with(MD_CANARY, "spec.notifications.webhooks",
                                            [{"url": "http://169.254.169.254/computeMetadata/v1/"}]),
     ["spec.notifications.webhooks[].url", "169.254.169.254", "allowedUrls.webhooks"]),
    ("md-webhook-secret", lambda: _with(MD_CANARY, "spec.notifications.webhooks",
                                        [{"url": "https://hooks.slack.com/x", "urlSecretRef": {"name": "k", "key": "u"}}]),
     ["spec.notifications.webhooks[].urlSecretRef.name", "k "]),
    ("md-logger-url", lambda: _with(MD, "spec.logger", {"url": "http://collector.attacker.example.com/ingest"}),
     ["spec.logger.url", "collector.attacker.example.com"]),
    ("md-storage-file", lambda: {**copy.deepcopy(_sample("modeldeployment-storageuri.yaml")),
                                 "spec": {**_sample("modeldeployment-storageuri.yaml")["spec"],
                                          "model": {"storageUri": "file:///etc/kubernetes"}}},
     ["spec.model.storageUri", "file:///etc/kubernetes", "allowedUrls.storage"]),
    ("rs-image", lambda: _with(RS, "spec.image", "attacker/trainer:1"), ["spec.image", "attacker/trainer:1"]),
    ("rs-service-account", lambda: _with(RS, "spec.serviceAccountName", "argocd-application-controller"),
     ["spec.serviceAccountName", "argocd-application-controller"]),
    ("rs-envfrom-secret", lambda: _with(RS, "spec.envFrom", [{"secretRef": {"name": "aws-root-keys"}}]),
     ["spec.envFrom[].secretRef.name", "aws-root-keys"]),
    ("rs-env-secret", lambda: _with(RS, "spec.env", [
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "ci-token", "key": "t"}}}]),
     ["spec.env[].valueFrom.secretKeyRef.name", "ci-token"]),
    ("rs-tracking", lambda: _with(RS, "spec.mlflow", {"trackingUri": "http://evil.example.com:5000"}),
     ["spec.mlflow.trackingUri", "evil.example.com"]),
    ("rs-mlflow-credentials", lambda: _with(RS, "spec.mlflow", {"credentialsSecretRef": {"name": "admin-creds"}}),
     ["spec.mlflow.credentialsSecretRef.name", "admin-creds"]),
    ("rs-drift-prometheus", lambda: _with(RS, "spec.triggers.drift", {"query": "up", "threshold": 1,
                                                                        "prometheusUrl": "http://127.0.0.1:9090"}),
     ["spec.triggers.drift.prometheusUrl", "127.0.0.1"]),
]


@pytest.fixture(scope="module")
def policies(kube_crds: Any) -> Any:
    objs = [o for o in render() if o["kind"] in POLICY_KINDS]
    assert {o["kind"] for o in objs} == set(POLICY_KINDS) and len(objs) == 6, [o["metadata"]["name"] for o in objs]
    text = "".join("---\n" + yaml.safe_dump(o) for o in objs)
    kube_crds.kubectl("apply", "--server-side", "--field-manager=modelops-tests", "-f", "-", input=text)
    for o in objs:
        if o["kind"] == "ValidatingAdmissionPolicy":
            _wait_compiled(kube_crds, o["metadata"]["name"])
    yield kube_crds
    kube_crds.kubectl("delete", "-f", "-", input=text, check=False)


def _wait_compiled(kube: Any, name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        obj = json.loads(kube.kubectl("get", "validatingadmissionpolicy", name, "-o", "json").stdout)
        status = obj.get("status") or {}
        if status.get("observedGeneration") == obj["metadata"]["generation"]:
            warnings = (status.get("typeChecking") or {}).get("expressionWarnings") or []
            assert not warnings, f"{name}: CEL type-check warnings {warnings}"
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} was not type-checked within 60 s")


def _create(kube: Any, ns: str, obj: dict[str, Any]) -> None:
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL[obj["kind"]], obj, dry_run="All",
                                                field_validation="Strict")


def _refusal(kube: Any, ns: str, obj: dict[str, Any]) -> str:
    """The API server's message refusing `obj` (the policy takes effect a moment after it is created)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            _create(kube, ns, obj)
        except ApiException as exc:
            return str(json.loads(exc.body)["message"])
        if time.monotonic() > deadline:
            raise AssertionError(f"{obj['kind']} was admitted: {json.dumps(obj['spec'])[:500]}")
        time.sleep(0.5)


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.yaml")))
def test_every_sample_is_admitted(policies: Any, namespace: str, sample: str) -> None:
    _create(policies, namespace, _sample(sample))


@pytest.mark.parametrize(("case", "make", "expected"), DISALLOWED, ids=[c[0] for c in DISALLOWED])
def test_disallowed_spec_is_refused_naming_field_and_value(policies: Any, namespace: str, case: str,
                                                           make: Callable[[], dict[str, Any]],
                                                           expected: list[str]) -> None:
    message = _refusal(policies, namespace, make())
    assert "ValidatingAdmissionPolicy" in message, message
    for part in expected:
        assert part in message, f"{case}: {part!r} not in {message}"
    print(f"{case}: {message}")


def test_at_least_10_disallowed_cases() -> None:
    assert len(DISALLOWED) >= 10


def test_the_operator_cannot_write_outside_its_objects(policies: Any, namespace: str) -> None:
    """With cluster-wide rights on Jobs, ConfigMaps and Services (as the cluster-wide install grants), the
    operator's ServiceAccount may still not touch kube-system, unlabelled ConfigMaps, run a Job as another
    account, or make a Service that exposes anything but a KServe predictor's Pods inside the cluster."""
    kube = policies
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "modelops-test-operator"},
            "rules": [{"apiGroups": ["", "batch"], "resources": ["configmaps", "jobs", "services"],
                       "verbs": ["create", "update", "patch", "delete", "get"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "modelops-test-operator"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "modelops-test-operator"},
               "subjects": [{"kind": "ServiceAccount", "name": "modelops-operator", "namespace": RELEASE_NS}]}
    rbac = "".join("---\n" + yaml.safe_dump(o) for o in (role, binding))
    kube.kubectl("apply", "-f", "-", input=rbac)
    try:
        labelled = {"app.kubernetes.io/part-of": "modelops"}

        def cm(ns: str, labels: dict[str, str]) -> str:
            return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "probe", "namespace": ns, "labels": labels}})

        def job(sa: str | None) -> str:
            pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
            if sa:
                pod["serviceAccountName"] = sa
            return yaml.safe_dump({"apiVersion": "batch/v1", "kind": "Job",
                                   "metadata": {"name": "probe", "namespace": namespace, "labels": labelled},
                                   "spec": {"template": {"metadata": {"labels": labelled}, "spec": pod}}})

        def svc(selector: dict[str, str], type_: str = "ClusterIP") -> str:
            return yaml.safe_dump({"apiVersion": "v1", "kind": "Service",
                                   "metadata": {"name": "probe", "namespace": namespace, "labels": labelled},
                                   "spec": {"type": type_, "selector": selector,
                                            "ports": [{"port": 80, "targetPort": 9081}]}})

        def as_operator(manifest: str) -> Any:
            return kube.kubectl("create", "--dry-run=server", f"--as={OPERATOR_SA}", "-f", "-", input=manifest,
                                check=False)

        deadline = time.monotonic() + 30
        while as_operator(cm("kube-system", labelled)).returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.5)  # RBAC and the binding take a moment
        denied = as_operator(cm("kube-system", labelled))
        assert denied.returncode != 0 and "operatorDeniedNamespaces" in denied.stderr, denied.stderr
        denied = as_operator(cm(namespace, {}))
        assert denied.returncode != 0 and "app.kubernetes.io/part-of=modelops" in denied.stderr, denied.stderr
        denied = as_operator(job("default-admin"))
        assert denied.returncode != 0 and "ServiceAccount default-admin" in denied.stderr, denied.stderr
        for bad in (svc({"app": "isvc.churn-v2-predictor"}, "NodePort"), svc({"component": "etcd"}),
                    svc({"app": "isvc.churn-v2-predictor", "tier": "x"})):
            denied = as_operator(bad)
            assert denied.returncode != 0 and "select the Pods of a KServe predictor" in denied.stderr, denied.stderr
        allowed = as_operator(svc({"app": "isvc.churn-v2-predictor"}))
        assert allowed.returncode == 0, allowed.stderr
        allowed = as_operator(cm(namespace, labelled))
        assert allowed.returncode == 0, allowed.stderr
        allowed = as_operator(job(None))
        assert allowed.returncode == 0, allowed.stderr
    finally:
        kube.kubectl("delete", "-f", "-", input=rbac, check=False)
