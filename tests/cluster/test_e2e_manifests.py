"""What the e2e loop and `modelops demo` apply, checked by the real API server without a node: server-side
dry-run of the RetrainSchedule and ModelDeployment (CRD schema and CEL rules), the storage, Prometheus and
data-server manifests, the chart rendered with the e2e values, and the InferenceService the operator builds
for that ModelDeployment (KServe's real CRD; its live webhooks judge it in tests/cluster/test_kserve_webhooks.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_dev.e2e import loop
from tests.fixtures.kserve import install_kserve_crd

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def dry_run(kube: Any, objs: list[dict[str, Any]], namespace: str) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
    kube.kubectl("apply", "--dry-run=server", "--server-side", "--field-manager=e2e-test", "-n", namespace,
                 "-f", "-", input=body)


def test_loop_resources_pass_the_api_server(kube_crds: Any, namespace: str) -> None:
    prom = f"http://prometheus.{namespace}.svc:9090"
    dry_run(kube_crds, [loop.retrain_schedule(namespace, prom), loop.model_deployment(namespace)], namespace)
    dry_run(kube_crds, loop.storage(namespace, loop.release_name(namespace), Path("/tmp/x")), namespace)
    for f in ("prometheus.yaml", "data-server.yaml"):
        kube_crds.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(REPO / "manifests/e2e" / f))


def test_chart_with_e2e_values_passes_the_api_server(kube_crds: Any, namespace: str) -> None:
    release = loop.release_name(namespace)
    # --validate: rendered against the live API server (capabilities, kubeVersion), not helm's defaults
    proc = subprocess.run(
        [str(kube_crds.bin_dir / "helm"), "template", "--validate", release, str(REPO / "charts/modelops"), "-n", namespace,
         "-f", str(REPO / "manifests/e2e/values.yaml"), "--set", f"operator.watchNamespaces={{{namespace}}}",
         "--set", f"prometheus.url=http://prometheus.{namespace}.svc:9090"],
        capture_output=True, text=True, env=kube_crds.env())
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "PersistentVolumeClaim", "ConfigMap"} <= kinds
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == f"{release}-mlflow"  # what the storage() PV is pre-bound to
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "MODELOPS_NAMESPACES" in d.get("data", {}))
    assert config["data"]["MODELOPS_MLFLOW_TRACKING_URI"] == f"http://{release}-mlflow.{namespace}.svc:5000"
    # the e2e values name KServe's namespace: the chart grants the operator its inferenceservice-config there
    elsewhere = [d for d in docs if d["metadata"].get("namespace") not in (None, namespace)]
    assert {(d["kind"], d["metadata"]["namespace"]) for d in elsewhere} == {("Role", "kserve"), ("RoleBinding", "kserve")}
    kube_crds.kubectl("create", "namespace", "kserve", check=False)
    dry_run(kube_crds, elsewhere, "kserve")
    dry_run(kube_crds, [d for d in docs if d not in elsewhere], namespace)


def test_operator_built_isvc_for_the_e2e_deployment(kube_crds: Any, namespace: str) -> None:
    from modelops.decide.rollout import ModelRef, ServingPlan
    from modelops.desired.inference_service import Defaults, inference_service

    install_kserve_crd(kube_crds)
    md = loop.model_deployment(namespace)
    claim = f"{loop.release_name(namespace)}-mlflow"
    plan = ServingPlan(stable=ModelRef(version="1", storage_uri=f"pvc://{claim}/artifacts/1/m-a/artifacts"),
                       canary=ModelRef(version="2", storage_uri=f"pvc://{claim}/artifacts/1/m-b/artifacts"),
                       weight=25)
    isvc = inference_service(name="churn", namespace=namespace, uid="00000000-0000-0000-0000-000000000001",
                             spec=md["spec"], plan=plan, mode="Standard",
                             defaults=Defaults("modelops/model-server:dev", "http://x/events"), modelops_route=True)
    isvc["metadata"]["ownerReferences"] = []
    assert isvc["spec"]["predictor"]["name"] == "v1" and isvc["spec"]["canary"][0]["predictor"]["name"] == "v2"
    dry_run(kube_crds, [isvc], namespace)
