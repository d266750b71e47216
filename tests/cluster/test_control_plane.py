"""The local control plane itself: the real components work together, and `down` leaves nothing behind."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelops_dev.cluster import versions
from modelops_dev.cluster.local import LocalCluster

pytestmark = pytest.mark.cluster


def _wait(check: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise TimeoutError(f"{what} not met after {timeout}s")


def test_server_reports_its_true_version(kube: Any) -> None:
    info = json.loads(kube.kubectl("version", "-o", "json").stdout)
    assert info["serverVersion"]["gitVersion"] == versions.K8S_VERSION
    assert info["clientVersion"]["gitVersion"] == versions.K8S_VERSION


def test_jobs_create_pods_and_the_scheduler_runs(kube: Any, namespace: str) -> None:
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="hello"),
        spec=client.V1JobSpec(backoff_limit=0, template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="c", image="busybox:1", command=["true"])]))))
    kube.batch.create_namespaced_job(namespace, job)
    pods = _wait(lambda: kube.core.list_namespaced_pod(namespace, label_selector="job-name=hello").items,
                 what="kube-controller-manager creating the Job's Pod")
    # No node has joined: the scheduler must have tried and said why the Pod is not placed.
    pod_name = pods[0].metadata.name

    def unschedulable() -> bool:
        pod = kube.core.read_namespaced_pod(pod_name, namespace)
        return any(c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
                   for c in (pod.status.conditions or []))

    _wait(unschedulable, what="kube-scheduler marking the Pod Unschedulable")


def test_garbage_collection_follows_owner_references(kube: Any, namespace: str) -> None:
    owner = kube.core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="owner")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    kube.core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="child", owner_references=[ref])))
    kube.core.delete_namespaced_config_map("owner", namespace)

    def child_gone() -> bool:
        try:
            kube.core.read_namespaced_config_map("child", namespace)
            return False
        except ApiException as e:
            return e.status == 404

    _wait(child_gone, what="garbage collector deleting the child")


def test_namespace_deletion_completes(kube: Any) -> None:
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="to-delete")))
    kube.core.create_namespaced_config_map("to-delete", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x")))
    kube.core.delete_namespace("to-delete")

    def gone() -> bool:
        try:
            kube.core.read_namespace("to-delete")
            return False
        except ApiException as e:
            return e.status == 404

    _wait(gone, what="namespace controller finishing the deletion")


def test_service_account_tokens_and_rbac_are_real(kube: Any, namespace: str) -> None:
    kube.core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="reader")))
    token = kube.core.create_namespaced_service_account_token("reader", namespace, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
    cfg = client.Configuration()
    cfg.host = kube.cluster.state().server
    cfg.ssl_ca_cert = str(Path(kube.cluster.root) / "pki" / "ca.crt")
    cfg.api_key = {"authorization": f"Bearer {token}"}
    as_sa = client.CoreV1Api(client.ApiClient(cfg))
    with pytest.raises(ApiException) as err:
        as_sa.list_namespaced_pod(namespace)
    assert err.value.status == 403
    kube.rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="pod-reader"),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])]))
    kube.rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="pod-reader"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)]))
    _wait(lambda: _can_list(as_sa, namespace), what="RBAC granting the new Role")
    with pytest.raises(ApiException) as err:  # still nothing beyond the Role
        as_sa.list_namespaced_secret(namespace)
    assert err.value.status == 403


def _can_list(api: client.CoreV1Api, ns: str) -> bool:
    try:
        api.list_namespaced_pod(ns)
        return True
    except ApiException:
        return False


def test_up_then_down_leaves_no_process(tmp_path: Path) -> None:
    cluster = LocalCluster(name="leak-check", root=tmp_path / "c")
    status = cluster.up(progress=lambda _m: None)
    assert status["running"], status
    pids = [c["pid"] for c in status["components"].values()]
    assert len(pids) == 4 and all(psutil.pid_exists(p) for p in pids)
    # ports are free ports, not fixed ones: a second cluster can run beside the session's
    assert len({c["port"] for c in status["components"].values()}) == 4
    cluster.down(progress=lambda _m: None)
    root = str(tmp_path)
    leftovers = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and root in " ".join(proc.info["cmdline"] or []):
                leftovers.append((proc.pid, proc.info["cmdline"]))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    assert leftovers == []
    assert not cluster.status()["running"]
