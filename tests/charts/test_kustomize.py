"""`kubectl apply -k manifests/kustomize/...` against the real API server, and the generated base is current."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.charts.chart import REPO

KUSTOMIZE = REPO / "manifests" / "kustomize"
OVERLAYS = sorted(p.parent for p in (KUSTOMIZE / "overlays").glob("*/kustomization.yaml"))


@pytest.mark.unit
def test_generated_base_matches_the_chart() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "render_kustomize.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def modelops_namespace(kube_monitoring: Any) -> Iterator[Any]:
    """The overlays' namespace, created first so that a dry-run validates the objects inside it too (a
    dry-run does not create it); removed with everything but the CRDs, which the session shares."""
    kube = kube_monitoring
    kube.kubectl("apply", "--server-side", "--field-manager=modelops-tests", "-f",
                 str(KUSTOMIZE / "base" / "namespace.yaml"))
    yield kube
    kube.kubectl("delete", "namespace", "modelops", "--wait=false", check=False)
    # the cluster-scoped objects too (RBAC, the admission policies and their bindings, which would otherwise
    # judge every later test's objects in this shared cluster), but not the CRDs
    cluster_scoped = ("ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                      "ValidatingAdmissionPolicyBinding")
    for doc in yaml.safe_load_all((KUSTOMIZE / "base" / "modelops.yaml").read_text()):
        if doc and doc.get("kind") in cluster_scoped:
            kube.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found", check=False)


@pytest.mark.cluster
@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_overlay_is_accepted_by_server_side_dry_run(modelops_namespace: Any, overlay: Any) -> None:
    kube = modelops_namespace
    rendered = kube.kubectl("kustomize", str(overlay)).stdout
    assert "kind: Deployment" in rendered
    proc = kube.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=modelops-tests",
                        "-k", str(overlay))
    assert "PodSecurity" not in proc.stderr, proc.stderr


@pytest.mark.cluster
def test_production_overlay_applies_for_real(modelops_namespace: Any) -> None:
    kube = modelops_namespace
    overlay = str(KUSTOMIZE / "overlays" / "production")
    kube.kubectl("apply", "--server-side", "--field-manager=modelops-tests", "-k", overlay, timeout=180)
    items = json.loads(kube.kubectl("get", "-k", overlay, "-o", "json").stdout)["items"]
    kinds = {i["kind"] for i in items}
    assert {"Namespace", "CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole",
            "ClusterRoleBinding", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds, kinds
    sm = next(i for i in items if i["kind"] == "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    ns = next(i for i in items if i["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
