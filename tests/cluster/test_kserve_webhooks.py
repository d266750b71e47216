"""Every InferenceService modelops writes, judged by KServe v0.20.0's own admission webhooks (its defaulter and
validator live, the manager built from KServe's Go module; tests/fixtures/kserve_live.py), not only by its CRD
schema: server-side dry-runs, so nothing is stored and no node is needed.

- every sample ModelDeployment in manifests/samples/, turned into the InferenceService the builder makes of
  it at a stable step and at a canary step (Knative samples in Knative mode: see the test about Knative);
- every shape the builder produces: Standard stable, Standard with a canary, Standard with modelops' route
  (cluster-local), custom container, KServe runtime by model format;
- five InferenceServices that KServe's CRD schema accepts but KServe's validating webhook must reject (each
  message is the webhook's own), which shows the webhook is really consulted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops.decide.rollout import ModelRef, ServingPlan
from modelops.desired.inference_service import Defaults, deployment_mode, inference_service
from tests.fixtures.kserve import install_kserve_crd
from tests.fixtures.kserve_live import LiveKServe, dry_run_create

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted(p for p in (REPO / "manifests" / "samples").glob("modeldeployment-*.yaml"))
UID = "00000000-0000-0000-0000-000000000001"
D = Defaults("modelops/model-server:dev", "http://modelops-drift-exporter.mlops.svc:8080/events")
V1 = ModelRef("pvc://modelops-mlflow/artifacts/1/abc/artifacts/model", "1")
V2 = ModelRef("pvc://modelops-mlflow/artifacts/1/def/artifacts/model", "2")
WEBHOOK = 'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request'


def accepted(live: LiveKServe, manifest: dict[str, Any]) -> dict[str, Any]:
    proc = dry_run_create(live, manifest)
    assert proc.returncode == 0, (f"KServe rejected {manifest['metadata']['name']}:\n{proc.stderr}\n"
                                  f"{json.dumps(manifest['spec'], indent=1)}\n--- manager log ---\n{live.log_tail()}")
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def build(spec: dict[str, Any], plan: ServingPlan, name: str = "m", **kw: Any) -> dict[str, Any]:
    mode = deployment_mode(spec, json.dumps({"defaultDeploymentMode": "Standard"}))
    return inference_service(name=name, namespace="default", uid=UID, spec=spec, plan=plan, mode=mode, defaults=D,
                             **kw)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("step", ["stable", "canary"])
def test_every_sample_is_accepted_by_kserves_webhooks(kserve_live: LiveKServe, sample: Path, step: str) -> None:
    md = yaml.safe_load(sample.read_text())
    plan = ServingPlan(V1) if step == "stable" else ServingPlan(V1, V2, 25)
    manifest = build(md["spec"], plan, name=md["metadata"]["name"])
    out = accepted(kserve_live, manifest)
    # KServe's defaulter ran (it fills the deployment mode annotation it resolved) and kept our predictor
    assert out["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] in ("Standard", "Knative",
                                                                                  "RawDeployment", "Serverless")
    assert out["spec"]["predictor"].get("name") == manifest["spec"]["predictor"].get("name")


SHAPES: dict[str, tuple[dict[str, Any], ServingPlan, dict[str, Any]]] = {
    "standard-stable": ({"serving": {"deploymentMode": "Standard"}}, ServingPlan(V1), {}),
    "standard-canary": ({"serving": {"deploymentMode": "Standard", "minReplicas": 1, "maxReplicas": 2}},
                        ServingPlan(V1, V2, 25), {}),
    "standard-canary-modelops-route": ({"serving": {"deploymentMode": "Standard"}}, ServingPlan(V1, V2, 60),
                                       {"modelops_route": True}),
    "custom-container": ({"serving": {"deploymentMode": "Standard", "image": "modelops/model-server:dev",
                                      "resources": {"requests": {"cpu": "100m", "memory": "384Mi"}},
                                      "env": [{"name": "X", "value": "1"}]}}, ServingPlan(V1, V2, 10), {}),
    "kserve-runtime-sklearn": ({"serving": {"deploymentMode": "Standard", "runtime": "kserve", "modelFormat": "sklearn",
                                            "protocolVersion": "v2"}}, ServingPlan(V1, V2, 25), {}),
    "kserve-runtime-xgboost-named": ({"serving": {"deploymentMode": "Standard", "runtime": "kserve",
                                                  "modelFormat": "xgboost", "runtimeName": "kserve-xgbserver"}},
                                     ServingPlan(V1), {}),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_builder_shape_is_accepted_by_kserves_webhooks(kserve_live: LiveKServe, shape: str) -> None:
    spec, plan, kw = SHAPES[shape]
    manifest = build({"model": {"name": "churn"}, "logger": {"mode": "all"}, **spec}, plan, name="churn", **kw)
    out = accepted(kserve_live, manifest)
    if plan.canary is not None:
        assert [c["predictor"]["name"] for c in out["spec"]["canary"]] == ["v2"]
        assert out["spec"]["canary"][0]["trafficPercent"] == plan.weight


def _standard(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": "default",
                         "annotations": {"serving.kserve.io/deploymentMode": "Standard"}}, "spec": spec}


def _model(uri: str, name: str | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"modelFormat": {"name": "sklearn"}, "storageUri": uri}
    if name:
        m["name"] = name
    return m


WRONG: dict[str, tuple[dict[str, Any], str]] = {
    "canary-in-knative-mode": (
        {**_standard({"predictor": {"name": "v1", "model": _model("pvc://m/1")},
                      "canary": [{"trafficPercent": 10, "predictor": {"name": "v2", "model": _model("pvc://m/2", "kserve-container")}}]},
                     "wrong-knative"),
         "metadata": {"name": "wrong-knative", "namespace": "default",
                      "annotations": {"serving.kserve.io/deploymentMode": "Knative"}}},
        "canary is only supported in Standard deployment mode"),
    "canary-named-like-the-stable": (
        _standard({"predictor": {"name": "v1", "model": _model("pvc://m/1")},
                   "canary": [{"trafficPercent": 10, "predictor": {"name": "v1", "model": _model("pvc://m/2", "kserve-container")}}]},
                  "wrong-samename"),
        'canary predictor.name "v1" conflicts with stable predictor name'),
    "duplicated-canaries": (
        _standard({"predictor": {"name": "v1", "model": _model("pvc://m/1")},
                   "canary": [{"trafficPercent": 10, "predictor": {"name": "v2", "model": _model("pvc://m/2", "kserve-container")}},
                              {"trafficPercent": 10, "predictor": {"name": "v2", "model": _model("pvc://m/3", "kserve-container")}}]},
                  "wrong-dup"),
        'canary predictor.name "v2" is duplicated'),
    "canary-shares-over-100": (
        _standard({"predictor": {"name": "v1", "model": _model("pvc://m/1")},
                   "canary": [{"trafficPercent": 60, "predictor": {"name": "v2", "model": _model("pvc://m/2", "kserve-container")}},
                              {"trafficPercent": 50, "predictor": {"name": "v3", "model": _model("pvc://m/3", "kserve-container")}}]},
                  "wrong-sum"),
        "sum of canary trafficPercent values (110) must be <= 100"),
    "canary-more-replicas-than-stable": (
        _standard({"predictor": {"name": "v1", "minReplicas": 1, "model": _model("pvc://m/1")},
                   "canary": [{"trafficPercent": 10, "predictor": {"name": "v2", "minReplicas": 3,
                                                                   "model": _model("pvc://m/2", "kserve-container")}}]},
                  "wrong-replicas"),
        'canary "v2" minReplicas (3) must not exceed stable predictor minReplicas (1)'),
}


@pytest.fixture(scope="module")
def crd_only(kube: Any) -> Any:
    """The session control plane with KServe's CRD and no KServe webhook: what the schema alone accepts."""
    install_kserve_crd(kube)
    return kube


@pytest.mark.parametrize("case", WRONG)
def test_wrong_inference_services_are_rejected_by_kserves_webhook(kserve_live: LiveKServe, crd_only: Any,
                                                                  case: str) -> None:
    manifest, message = WRONG[case]
    # KServe's CRD schema alone accepts it (an API server with the same CRD and no KServe webhook) ...
    schema_only = crd_only.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(manifest), check=False)
    assert schema_only.returncode == 0, f"the CRD schema already rejects {case}: {schema_only.stderr}"
    # ... and KServe's validating webhook rejects it, with its own message
    proc = dry_run_create(kserve_live, manifest)
    assert proc.returncode != 0, f"{case} was accepted: {proc.stdout[:500]}"
    assert WEBHOOK in proc.stderr and message in proc.stderr, proc.stderr
