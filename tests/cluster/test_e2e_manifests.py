"""What the e2e loop and `modelops demo` apply, checked by the real API server without a node: server-side
dry-run of the RetrainSchedule and ModelDeployment (CRD schema and CEL rules), the storage, the `Prometheus`
(against the Prometheus Operator's own CRDs) and data-server manifests, the chart rendered with the e2e values
(its ServiceMonitors, PodMonitor and PrometheusRule included), and the InferenceService the operator builds
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


def install_prometheus_operator_crds(kube: Any) -> None:
    """The Prometheus Operator's CRDs from its build cache (server-side applied, as the loop installs them)."""
    from modelops_dev.cluster import versions
    from modelops_dev.cluster.build import serving_ready
    from modelops_dev.e2e import kserve, prometheus_operator

    if not serving_ready("prometheus-operator"):
        pytest.fail("the Prometheus Operator is not built; run: modelops cluster build-serving prometheus-operator",
                    pytrace=False)
    crds, _ = kserve.split_crds(prometheus_operator.load_dir(versions.serving_dir("prometheus-operator") / "crds"))
    check, run = kserve.run_kubectl(str(kube.bin_dir / "kubectl"), kube.env())
    installer = kserve.Installer(check, run, progress=lambda _m: None)
    installer.apply(crds, "Prometheus Operator CRDs")
    installer.wait_crds(crds)


def test_loop_resources_pass_the_api_server(kube_crds: Any, namespace: str) -> None:
    install_prometheus_operator_crds(kube_crds)
    prom = f"http://{loop.PROMETHEUS_SVC}.{namespace}.svc:9090"
    dry_run(kube_crds, [loop.retrain_schedule(namespace, prom), loop.model_deployment(namespace)], namespace)
    dry_run(kube_crds, loop.storage(namespace, loop.release_name(namespace), Path("/tmp/x")), namespace)
    dry_run(kube_crds, loop.prometheus_objects(namespace), namespace)
    kube_crds.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(REPO / "manifests/e2e/data-server.yaml"))


def test_chart_with_e2e_values_passes_the_api_server(kube_crds: Any, namespace: str) -> None:
    install_prometheus_operator_crds(kube_crds)  # the e2e values render the chart's monitoring objects always
    release = loop.release_name(namespace)
    # --validate: rendered against the live API server (capabilities, kubeVersion), not helm's defaults
    proc = subprocess.run(
        [str(kube_crds.bin_dir / "helm"), "template", "--validate", release, str(REPO / "charts/modelops"), "-n", namespace,
         "-f", str(REPO / "manifests/e2e/values.yaml"), "--set", f"operator.watchNamespaces={{{namespace}}}",
         "--set", f"prometheus.url=http://{loop.PROMETHEUS_SVC}.{namespace}.svc:9090"],
        capture_output=True, text=True, env=kube_crds.env())
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "PersistentVolumeClaim", "ConfigMap", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
    # the loop's `Prometheus` selects them by the label the e2e values add
    for d in docs:
        if d["kind"] in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
            assert loop.PROMETHEUS_SELECTOR.items() <= d["metadata"]["labels"].items(), d["metadata"]
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
