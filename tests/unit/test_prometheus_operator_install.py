"""The Prometheus Operator install step, pure parts: the release's RBAC/Deployment as modelops changes them
(namespace, our images, Deployment left out for a host process), the host process' argv, and reading the
configuration the operator generates."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import pytest
import yaml

from modelops_dev.e2e import prometheus_operator as po

pytestmark = pytest.mark.unit


def release() -> list[dict[str, object]]:
    """The shape of the module's example/rbac/prometheus-operator (trimmed to what is changed)."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prometheus-operator", "namespace": "default"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "prometheus-operator"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "prometheus-operator"},
         "subjects": [{"kind": "ServiceAccount", "name": "prometheus-operator", "namespace": "default"}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": po.DEPLOYMENT, "namespace": "default"},
         "spec": {"template": {"spec": {"containers": [
             {"name": po.CONTAINER, "image": "quay.io/prometheus-operator/prometheus-operator:v0.93.1",
              "args": ["--kubelet-service=kube-system/kubelet",
                       "--prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1"]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "prometheus-operator", "namespace": "default"}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
         "metadata": {"name": "prometheus-operator", "namespace": "default"}},
    ]


def test_pod_operator_our_images_in_our_namespace() -> None:
    out = po.operator_manifests(release(), po.Options(namespace="mon"))
    kinds = [d["kind"] for d in out]
    assert kinds == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]
    assert out[0]["metadata"]["name"] == "mon"
    assert all(d["metadata"]["namespace"] == "mon" for d in out if d["kind"] in ("ServiceAccount", "Deployment",
                                                                                  "Service"))
    assert "namespace" not in out[2]["metadata"]
    assert out[3]["subjects"][0]["namespace"] == "mon"
    c = out[4]["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "modelops/prometheus-operator:dev" and c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"] == ["--kubelet-service=kube-system/kubelet",
                         "--prometheus-config-reloader=modelops/prometheus-config-reloader:dev"]
    assert release()[3]["metadata"]["namespace"] == "default"  # the input is not changed


def test_host_operator_leaves_out_the_deployment_and_its_service() -> None:
    out = po.operator_manifests(release(), po.Options(operator="host"))
    assert [d["kind"] for d in out] == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    argv, env = po.host_operator(Path("/c/bin/operator"), Path("/k/config"), 8123, namespaces=["a", "b"])
    assert argv[0] == "/c/bin/operator" and "--web.listen-address=127.0.0.1:8123" in argv
    assert "--namespaces=a,b" in argv and env == {"KUBECONFIG": "/k/config"}


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="expected pod or host"):
        po.operator_manifests(release(), po.Options(operator="daemon"))
    with pytest.raises(ValueError, match="no Deployment"):
        po.operator_manifests(release()[:3], po.Options())
    with pytest.raises(ValueError, match=r"no prometheus\.yaml\.gz"):
        po.generated_config({"metadata": {"name": "prometheus-x"}, "data": {}})
    with pytest.raises(FileNotFoundError, match="build-serving prometheus-operator"):
        po.load_dir(Path("/nonexistent/crds"))


def test_generated_config_is_read_from_the_gzipped_secret() -> None:
    config = {"global": {"scrape_interval": "30s"}, "scrape_configs": [{"job_name": "podMonitor/ns/m/0"}]}
    data = base64.b64encode(gzip.compress(yaml.safe_dump(config).encode())).decode()
    assert po.generated_config({"data": {"prometheus.yaml.gz": data}}) == config
