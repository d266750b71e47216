"""The chart against a real API server: server-side dry-run of every object, the `restricted` Pod Security
Standard enforced by PodSecurity admission, `helm install`, and the operator's API calls replayed under the
chart's ServiceAccount (impersonation, and the real operator process running on the account's token)."""

from __future__ import annotations

import contextlib
import copy
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops.api import GROUP, VERSION
from tests.charts.chart import CHART, SCENARIOS, helm, pod_specs, render

pytestmark = pytest.mark.cluster

#: Every call the operator makes on namespaced resources, as (verb, resource, subresource). Kopf's calls
#: (watch, patch of its annotations, status patches, events) and the controllers' (issues 6 and 7: Jobs,
#: ConfigMaps, InferenceServices, Pods read for failure reasons). Keep this in step with the controllers.
OPERATOR_CALLS: list[tuple[str, str, str]] = [
    *[(v, f"{p}.{GROUP}", "") for p in ("modeldeployments", "retrainschedules")
      for v in ("get", "list", "watch", "patch", "update")],
    *[(v, f"{p}.{GROUP}", "status") for p in ("modeldeployments", "retrainschedules")
      for v in ("get", "patch", "update")],
    *[("update", f"{p}.{GROUP}", "finalizers") for p in ("modeldeployments", "retrainschedules")],
    *[(v, "jobs.batch", "") for v in ("get", "list", "watch", "create", "patch", "delete")],
    *[(v, "pods", "") for v in ("get", "list", "watch")],
    *[(v, "configmaps", "") for v in ("get", "list", "watch", "create", "patch", "delete")],
    ("create", "events", ""), ("patch", "events", ""), ("create", "events.events.k8s.io", ""),
    *[(v, "inferenceservices.serving.kserve.io", "")
      for v in ("get", "list", "watch", "create", "patch", "update", "delete")],
    ("get", "inferenceservices.serving.kserve.io", "status"),
    *[(v, "httproutes.gateway.networking.k8s.io", "")
      for v in ("get", "list", "watch", "create", "patch", "update", "delete")],
    *[(v, "endpointslices.discovery.k8s.io", "") for v in ("get", "list", "watch")],
    *[(v, "services", "") for v in ("get", "create", "patch", "delete")],
]
#: What the operator must never be able to do anywhere.
FORBIDDEN_CALLS: list[tuple[str, str, str]] = [
    ("list", "secrets", ""), ("watch", "secrets", ""), ("create", "secrets", ""),
    ("create", "pods", ""), ("delete", "pods", ""), ("update", "pods", "status"), ("create", "pods", "exec"),
    ("create", "deployments.apps", ""), ("create", "rolebindings.rbac.authorization.k8s.io", ""),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", ""), ("delete", "namespaces", ""),
    ("create", "serviceaccounts", "token"),
]
#: Namespaces the ci scenarios name (watched, Secret-readable); created once, labelled `restricted`.
SCENARIO_NAMESPACES = ("team-a", "team-b", "shared-creds", "ml-prod")
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}


def _ensure_namespaces(kube: Any, names: tuple[str, ...]) -> None:
    for name in names:
        kube.kubectl("apply", "--server-side", "--field-manager=modelops-tests", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}))


def _apply(kube: Any, objs: list[dict[str, Any]], dry_run: bool) -> str:
    args = ["apply", "--server-side", "--field-manager=modelops-tests", "-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    proc = kube.kubectl(*args, input="\n---\n".join(yaml.safe_dump(o) for o in objs), check=False)
    assert proc.returncode == 0, f"the API server rejected the chart's objects:\n{proc.stderr}"
    return proc.stderr


def can_i(kube: Any, sa: str, verb: str, resource: str, sub: str = "", namespace: str | None = None) -> bool:
    """What `kubectl auth can-i --as=SA` asks, as a SubjectAccessReview with the account's groups. Asked
    directly rather than through kubectl because kubectl resolves resources by discovery, and KServe's CRD
    is not installed here: a review names group and resource explicitly, like the API server's authorizer."""
    from kubernetes import client

    plural, _, group = resource.partition(".")
    ns_of_sa = sa.split(":")[2]
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=sa, groups=["system:serviceaccounts", f"system:serviceaccounts:{ns_of_sa}", "system:authenticated"],
        resource_attributes=client.V1ResourceAttributes(verb=verb, group=group, resource=plural,
                                                        subresource=sub or None, namespace=namespace or "")))
    result = client.AuthorizationV1Api(kube.api).create_subject_access_review(review)
    return bool(result.status.allowed)


@contextlib.contextmanager
def installed(kube: Any, release: str, namespace: str, *args: str) -> Iterator[None]:
    helm("install", release, str(CHART), "--namespace", namespace, *args, env=kube.env(), timeout=300)
    try:
        yield
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout=120s", env=kube.env(),
             check=False, timeout=180)


@pytest.mark.parametrize("values", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_every_object_is_accepted_and_every_pod_passes_restricted(kube_monitoring: Any, restricted_namespace: str,
                                                                  values: Path) -> None:
    kube = kube_monitoring
    _ensure_namespaces(kube, SCENARIO_NAMESPACES)
    objs = render([values], release=f"m{uuid.uuid4().hex[:6]}", namespace=restricted_namespace,
                  api_versions=["monitoring.coreos.com/v1"])
    crds = [o for o in objs if o["kind"] == "CustomResourceDefinition"]
    if crds:  # Kopf's peering CRDs: created for real so the peering objects can be validated against them
        _apply(kube, crds, dry_run=False)
        for c in crds:
            kube.kubectl("wait", "--for=condition=Established", f"crd/{c['metadata']['name']}", "--timeout=60s")
            kube.wait_served(c["spec"]["group"], "v1", c["spec"]["names"]["plural"])
    rest = [o for o in objs if o["kind"] != "CustomResourceDefinition"]
    warnings = _apply(kube, rest, dry_run=True)
    assert "PodSecurity" not in warnings, warnings
    kinds = {o["kind"] for o in rest}
    assert {"Deployment", "ServiceAccount"} <= kinds
    # PodSecurity admission enforces on Pods (workloads only warn): submit each Pod template as a Pod. The
    # ServiceAccount admission plugin needs the accounts to exist, so those are created for real.
    _apply(kube, [o for o in rest if o["kind"] == "ServiceAccount"
                  and o["metadata"].get("namespace") == restricted_namespace], dry_run=False)
    for name, tmpl in pod_specs(rest):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"pss-{uuid.uuid4().hex[:6]}", "namespace": restricted_namespace,
                            "labels": tmpl["metadata"].get("labels", {})},
               "spec": copy.deepcopy(tmpl["spec"])}
        proc = kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
        assert proc.returncode == 0, f"{name} violates the restricted Pod Security Standard:\n{proc.stderr}"


def test_restricted_is_really_enforced(kube: Any, restricted_namespace: str) -> None:
    """The control for the test above: a Pod running as root is rejected in the same kind of namespace."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root", "namespace": restricted_namespace},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
    proc = kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert proc.returncode != 0 and "violates PodSecurity" in proc.stderr, proc.stderr


def test_a_misspelled_value_fails_helm_install(kube: Any, namespace: str) -> None:
    proc = helm("install", "typo", str(CHART), "--namespace", namespace, "--set", "driftExporter.enabeld=false",
                env=kube.env(), check=False)
    assert proc.returncode != 0 and "enabeld" in proc.stderr, proc.stderr
    assert helm("status", "typo", "--namespace", namespace, env=kube.env(), check=False).returncode != 0


def test_cluster_wide_install_grants_the_operators_calls_and_no_secret_reads(kube_monitoring: Any,
                                                                            restricted_namespace: str) -> None:
    kube = kube_monitoring
    ns = restricted_namespace
    _ensure_namespaces(kube, ("ml-prod",))
    release = f"c{uuid.uuid4().hex[:6]}"
    with installed(kube, release, ns, "--set", "rbac.secretNamespaces={ml-prod}", "--set", "driftExporter.enabled=true",
                   "--set", "driftExporter.references={churn=models:/churn@champion}"):
        kinds = json.loads(kube.kubectl("get", "deploy,sa,svc,cm,servicemonitor,podmonitor,prometheusrule",
                                        "-n", ns, "-o", "json").stdout)["items"]
        got = {i["kind"] for i in kinds}
        assert {"Deployment", "ServiceAccount", "Service", "ConfigMap", "ServiceMonitor", "PodMonitor",
                "PrometheusRule"} <= got, got  # auto-detected: the Prometheus Operator CRDs are served
        sa = f"system:serviceaccount:{ns}:{release}-modelops-operator"
        user_ns = "team-a"
        _ensure_namespaces(kube, (user_ns,))
        denied = [c for c in OPERATOR_CALLS if not can_i(kube, sa, *c, namespace=user_ns)]
        assert not denied, f"the chart does not grant: {denied}"
        for verb in ("get", "list", "watch"):
            assert can_i(kube, sa, verb, "customresourcedefinitions.apiextensions.k8s.io")
        allowed = [c for c in FORBIDDEN_CALLS if can_i(kube, sa, *c, namespace=user_ns)]
        assert not allowed, f"the chart grants more than the operator needs: {allowed}"
        # Secrets: never cluster-wide, never in a namespace not listed, get-only where listed
        assert not can_i(kube, sa, "get", "secrets")
        assert not can_i(kube, sa, "list", "secrets")
        assert not can_i(kube, sa, "get", "secrets", namespace=user_ns)
        assert not can_i(kube, sa, "get", "secrets", namespace=ns)
        assert can_i(kube, sa, "get", "secrets", namespace="ml-prod")
        assert not can_i(kube, sa, "list", "secrets", namespace="ml-prod")
        # the same answers through kubectl's impersonation, for resources discovery knows
        for args, want in ((["get", "secrets", "--all-namespaces"], "no"), (["list", "secrets", "-n", "ml-prod"], "no"),
                           (["get", "secrets", "-n", "ml-prod"], "yes"), (["create", "jobs.batch", "-n", user_ns], "yes")):
            out = kube.kubectl("auth", "can-i", *args, f"--as={sa}", check=False).stdout.strip()
            assert out == want, (args, out)
        exporter = f"system:serviceaccount:{ns}:{release}-modelops-drift-exporter"
        assert not can_i(kube, exporter, "get", "pods", namespace=ns)


def test_namespaced_install_grants_only_the_watched_namespaces(kube_monitoring: Any,
                                                              restricted_namespace: str) -> None:
    kube = kube_monitoring
    ns = restricted_namespace
    _ensure_namespaces(kube, SCENARIO_NAMESPACES)
    release = f"n{uuid.uuid4().hex[:6]}"
    with installed(kube, release, ns, "-f", str(CHART / "ci" / "02-namespaced-values.yaml")):
        sa = f"system:serviceaccount:{ns}:{release}-modelops-operator"
        for watched in ("team-a", "team-b"):
            denied = [c for c in OPERATOR_CALLS if not can_i(kube, sa, *c, namespace=watched)]
            assert not denied, f"{watched}: {denied}"
            assert can_i(kube, sa, "get", "secrets", namespace=watched)
        for other in ("ml-prod", ns):
            assert not can_i(kube, sa, "list", f"modeldeployments.{GROUP}", namespace=other)
            assert not can_i(kube, sa, "create", "jobs.batch", namespace=other)
        assert can_i(kube, sa, "get", "secrets", namespace="shared-creds")
        assert not can_i(kube, sa, "get", "secrets", namespace="ml-prod")
        assert not can_i(kube, sa, "list", f"modeldeployments.{GROUP}")  # nothing cluster-wide


class _ServiceAccountKube:
    """The `kube` handle the operator harness needs, with a kubeconfig that authenticates as a ServiceAccount
    by its own token (no impersonation: the API server sees exactly what the Pod would send)."""

    def __init__(self, kube: Any, kubeconfig: Path) -> None:
        self._kube = kube
        self.kubeconfig = str(kubeconfig)

    def env(self) -> dict[str, str]:
        return {**self._kube.env(), "KUBECONFIG": self.kubeconfig}


def test_the_operator_runs_on_the_charts_service_account(kube_monitoring: Any, restricted_namespace: str,
                                                         tmp_path: Path) -> None:
    from tests.fixtures.operator import Operator

    kube = kube_monitoring
    ns = restricted_namespace
    release = f"o{uuid.uuid4().hex[:6]}"
    user_ns = f"u-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", user_ns)
    with installed(kube, release, ns):
        sa_name = f"{release}-modelops-operator"
        token = kube.kubectl("create", "token", sa_name, "-n", ns, "--duration=1h").stdout.strip()
        admin = yaml.safe_load(Path(kube.kubeconfig).read_text())
        cluster = admin["clusters"][0]["cluster"]
        kc = tmp_path / "sa.kubeconfig"
        kc.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa", "namespace": ns}}]}))
        op = Operator(_ServiceAccountKube(kube, kc), tmp_path / "operator.log")
        op.start()
        try:
            kube.custom.create_namespaced_custom_object(GROUP, VERSION, user_ns, "modeldeployments", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": "churn"},
                "spec": {"model": {"name": "churn", "alias": "champion"}}})
            deadline = time.monotonic() + 30
            while True:
                obj = kube.custom.get_namespaced_custom_object(GROUP, VERSION, user_ns, "modeldeployments", "churn")
                status = obj.get("status") or {}
                if status.get("observedGeneration") == 1 and status.get("conditions"):
                    break
                assert time.monotonic() < deadline, f"not acknowledged under the chart's account: {status}\n" \
                    + op.log.read_text()[-3000:]
                time.sleep(0.2)
            log = op.log.read_text()
            assert "Forbidden" not in log and "Not enough permissions" not in log, log[-3000:]
        finally:
            op.kill()
            kube.kubectl("delete", "namespace", user_ns, "--wait=false", check=False)


#: Every call the console makes (issue 18), and what it must never be able to do.
CONSOLE_CALLS: list[tuple[str, str, str]] = [
    ("create", "tokenreviews.authentication.k8s.io", ""), ("create", "subjectaccessreviews.authorization.k8s.io", ""),
    *[(v, f"{p}.{GROUP}", "") for p in ("modeldeployments", "retrainschedules") for v in ("get", "list", "patch")],
    ("get", "inferenceservices.serving.kserve.io", ""), ("create", "events", ""), ("list", "events", ""),
]
CONSOLE_FORBIDDEN: list[tuple[str, str, str]] = [
    ("get", "secrets", ""), ("list", "secrets", ""), ("impersonate", "users", ""), ("impersonate", "groups", ""),
    ("impersonate", "serviceaccounts", ""), ("create", "serviceaccounts", "token"), ("create", "pods", ""),
    *[(v, f"{p}.{GROUP}", "status") for p in ("modeldeployments", "retrainschedules") for v in ("patch", "update")],
    *[(v, f"{p}.{GROUP}", "") for p in ("modeldeployments", "retrainschedules") for v in ("delete", "update",
                                                                                         "create", "approve")],
    ("patch", "inferenceservices.serving.kserve.io", ""), ("create", "jobs.batch", ""),
]


def test_console_install_grants_its_calls_only_and_the_approver_the_verb(kube_monitoring: Any,
                                                                        restricted_namespace: str) -> None:
    kube = kube_monitoring
    ns = restricted_namespace
    release = f"k{uuid.uuid4().hex[:6]}"
    with installed(kube, release, ns, "--set", "console.enabled=true"):
        sa = f"system:serviceaccount:{ns}:{release}-modelops-console"
        user_ns = "team-a"
        _ensure_namespaces(kube, (user_ns,))
        denied = [c for c in CONSOLE_CALLS if not can_i(kube, sa, *c, namespace=user_ns)]
        assert not denied, f"the chart does not grant the console: {denied}"
        allowed = [c for c in CONSOLE_FORBIDDEN if c[0] != "impersonate" and can_i(kube, sa, *c, namespace=user_ns)]
        allowed += [c for c in CONSOLE_FORBIDDEN if c[0] == "impersonate" and can_i(kube, sa, *c)]
        assert not allowed, f"the chart grants the console more than it needs: {allowed}"
        # the approver ClusterRole holds `approve`; nobody is bound to it by the chart
        kube.kubectl("-n", user_ns, "create", "rolebinding", f"{release}-approvers",
                     f"--clusterrole={release}-modelops-approver", "--user=carol")
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": "carol", "resourceAttributes": {
                      "group": GROUP, "resource": "modeldeployments", "verb": "approve", "namespace": user_ns}}}
        out = json.loads(kube.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout)
        assert out["status"]["allowed"] is True
        review["spec"]["resourceAttributes"]["namespace"] = "team-b"
        _ensure_namespaces(kube, ("team-b",))
        out = json.loads(kube.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout)
        assert not out["status"].get("allowed")
        kube.kubectl("-n", user_ns, "delete", "rolebinding", f"{release}-approvers", check=False)
