"""The KServe InferenceService a ModelDeployment wants, built purely from its spec and a serving plan.

Facts this builder depends on (KSERVE.md, checked against KServe v0.20's CRD and webhook):

- Deployment mode is the annotation `serving.kserve.io/deploymentMode`. KServe >= 0.17 renamed
  Serverless/RawDeployment to Knative/Standard and accepts both; older KServe only knows the old names, so
  the caller says which spelling the cluster understands (`legacy_mode_names`).
- Knative canary: `spec.predictor.canaryTrafficPercent` sends that share to the latest ready revision and
  the rest to the last revision rolled out at 100%. No field: a ready new revision takes 100%. 0 pins all
  traffic to the last rolled-out revision (used while rolling back, see `ServingPlan.pin_stable`).
- Standard canary (KServe >= 0.20): `spec.canary: [{trafficPercent, predictor: {name, ...}}]`; a canary
  predictor must not set maxReplicas/scaleMetric/scaleTarget/autoScaling and its minReplicas must not
  exceed the stable one's. Promotion moves the canary predictor *with its name* into `spec.predictor`, so
  every predictor here is named after the version it serves and promotion does not restart pods.
- KServe v0.20 reconciles a Standard canary with an empty component extension (`reconcileCanaryDeployments`:
  `componentExt := v1beta1.ComponentExtensionSpec{}`), so the canary's Service targets the model server's port,
  not the logger agent's (9081) that the stable predictor's Service targets: the agent is injected into the
  canary's Pod but KServe's Service sends it nothing. Nothing here can change that (the logger set below is
  what KServe ignores); modelops' route reaches such a canary through a Service of its own to the agent
  (decide/traffic_split.py `canary_backend`, desired/canary_service.py).
- A custom predictor container named `kserve-container` with env `STORAGE_URI` gets the storage
  initializer: the model appears under /mnt/models (KServe's CustomPredictor.GetStorageUri).
- KServe copies ALL of the InferenceService's labels and its annotations (all but a short disallow list:
  min/max-scale, last-applied-configuration, ...; predictor.go buildObjectMeta, v1beta1/configmap.go) into every
  predictor's Deployment *and pod template* (Standard) or Knative revision template (Knative). So nothing here
  may change between rollout steps in InferenceService metadata: a changed label or annotation restarts every
  predictor's Pods (Standard) or cuts a new Knative revision. The builder puts no per-step bookkeeping there:
  which canary was applied is read from the spec (decide/kserve_status.py), what modelops last applied is kept
  in the ModelDeployment's status (`status.inferenceServiceApplied`), and while modelops' HTTPRoute splits a
  Standard canary the canary's `trafficPercent` keeps the value it was created with (`canary_traffic_percent`;
  KServe v0.20 uses it only for the canary's replica count, which `minReplicas` overrides, and for status).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from modelops.api import (
    API_VERSION,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_PART_OF,
    MODEL_DEPLOYMENT,
)
from modelops.api.types import (
    KSERVE_CONTAINER,
    STORAGE_URI_ENV,
    ModelRef,
    ServingPlan,
    predictor_storage_uri,
    serving_name,
)
from modelops.api.vocabulary import MANAGER
from modelops.desired.drift_shards import exporter_url
from modelops.formats.artifacts import ENV_MODEL_SHA256
from modelops.formats.drift_url import VERSION_ANNOTATION, logger_url

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
ISVC_API_VERSION = f"{KSERVE_GROUP}/{KSERVE_VERSION}"
ISVC_PLURAL = "inferenceservices"
#: Annotation choosing the KServe deployment mode.
ANN_DEPLOYMENT_MODE = f"{KSERVE_GROUP}/deploymentMode"
#: Bookkeeping that modelops before issue 13's fix wrote on InferenceService metadata, changing it at every step
#: (KServe propagates it into the predictors' pod templates: every step restarted both predictors). No longer
#: written; on an InferenceService that still carries it, it is kept verbatim until the predictors change anyway
#: (`carry_legacy_metadata`), and the old hash annotation is read once as "what was applied" (kserve_status).
LEGACY_HASH_ANNOTATION = "modelops.dev/desired-hash"
LEGACY_LABELS = ("modelops.dev/stable-version", "modelops.dev/canary-version")
#: KServe writes no HTTPRoute for an InferenceService with this label value (see desired/http_route.py).
KSERVE_VISIBILITY_LABEL = "networking.kserve.io/visibility"
KSERVE_CLUSTER_LOCAL = "cluster-local"
MODEL_DIR = "/mnt/models"
#: The model server's REST port (`modelops serve` default, KServe's default for custom containers)
SERVER_PORT = 8080

#: The `restricted` Pod Security Standard for the predictor Pods (issue 16, L4); the model server image runs as
#: UID 10001, and KServe's runtimes as non-root users too.
POD_SECURITY: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                      "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}

Mode = Literal["Knative", "Standard"]
_MODES: dict[str, Mode] = {"knative": "Knative", "serverless": "Knative", "standard": "Standard",
                           "rawdeployment": "Standard"}
_LEGACY = {"Knative": "Serverless", "Standard": "RawDeployment"}


def normalize_mode(name: str | None) -> Mode | None:
    """Knative / Standard for either spelling (Serverless, RawDeployment are the pre-0.17 names)."""
    return _MODES.get((name or "").strip().lower())


def cluster_default_mode(deploy_config: str | None) -> Mode | None:
    """`deploy.defaultDeploymentMode` of KServe's inferenceservice-config ConfigMap (its `deploy` key).

    KServe's shipped examples carry `#` comment lines inside that JSON, so they are dropped before parsing.
    """
    if not deploy_config:
        return None
    text = "\n".join(ln for ln in deploy_config.splitlines() if not ln.strip().startswith("#"))
    try:
        value = json.loads(text).get("defaultDeploymentMode")
    except (ValueError, AttributeError):
        return None
    return normalize_mode(value)


def deployment_mode(spec: Mapping[str, Any], deploy_config: str | None) -> Mode:
    """Spec first, then the cluster's KServe default, then KServe's own default (Knative)."""
    serving = spec.get("serving") or {}
    return normalize_mode(serving.get("deploymentMode")) or cluster_default_mode(deploy_config) or "Knative"


def canary_support(mode: Mode, crd_has_canary: bool) -> tuple[bool, str]:
    """Whether a canary can be expressed, and if not, the condition message that says why.

    Before KServe 0.20 `canaryTrafficPercent` in Standard (RawDeployment) mode was silently ignored
    (kserve#5335): all traffic would go to the new version at once. Refuse instead of pretending.
    """
    if mode == "Knative" or crd_has_canary:
        return True, ""
    return False, ("canary rollouts in Standard (RawDeployment) mode need KServe >= 0.20 (spec.canary); the "
                   "InferenceService CRD in this cluster has no spec.canary and KServe would silently ignore "
                   "canaryTrafficPercent (kserve#5335). Upgrade KServe, use Knative mode, or set "
                   "spec.rollout.strategy: Immediate")


def predictor_name(ref: ModelRef) -> str:
    """A DNS-label name per version ("v12"), or per URI for plain storage URIs ("u" + 8 hex)."""
    return serving_name(ref)


@dataclass(frozen=True)
class Defaults:
    """Operator settings the builder needs (MODELOPS_SERVER_IMAGE, MODELOPS_DRIFT_EXPORTER_URL)."""

    server_image: str
    drift_exporter_url: str
    #: the drift exporter's shared secret (MODELOPS_DRIFT_TOKEN); the logger URL carries the namespace's HMAC
    drift_token: str = ""
    #: drift exporter shards (MODELOPS_DRIFT_EXPORTER_SHARDS); drift_exporter_url names the shard with {shard}
    drift_exporter_shards: int = 1


def _predictor(name: str, spec: Mapping[str, Any], ref: ModelRef, defaults: Defaults, *, canary: bool,
               predictor_name_: str | None, namespace: str = "") -> dict[str, Any]:
    serving: Mapping[str, Any] = spec.get("serving") or {}
    resources = serving.get("resources")
    env = [dict(e) for e in serving.get("env") or []]
    pred: dict[str, Any] = {}
    if predictor_name_:
        pred["name"] = predictor_name_
    if serving.get("runtime", "modelops") == "kserve":
        # `name` is the model container's name. KServe v0.20's CRD schema requires it on canary predictors, and
        # its validating webhook refuses it on the stable predictor ("the 'name' field is not allowed in standard
        # predictor", seen with the real webhook: tests/cluster/test_kserve_webhooks.py). The container is
        # `kserve-container` either way, so promotion (the canary rebuilt as spec.predictor) restarts nothing.
        model: dict[str, Any] = {"modelFormat": {"name": serving.get("modelFormat", "mlflow")},
                                 "protocolVersion": serving.get("protocolVersion", "v2"),
                                 "storageUri": ref.storage_uri}
        if canary:
            model = {"name": KSERVE_CONTAINER, **model}
        if serving.get("runtimeName"):
            model["runtime"] = serving["runtimeName"]
        if resources:
            model["resources"] = dict(resources)
        if env:
            model["env"] = env
        model["securityContext"] = dict(CONTAINER_SECURITY)
        pred["model"] = model
    else:
        container: dict[str, Any] = {
            "name": KSERVE_CONTAINER,
            "image": serving.get("image") or defaults.server_image,
            "command": ["modelops", "serve"],
            "args": ["--model-dir", MODEL_DIR],
            # declared, as KServe's custom-container examples do: Pod-based scraping (Prometheus' pod role, a
            # PodMonitor) finds the model server's /metrics by this port; undeclared, the real KServe's predictor
            # Pods had no scrape target and every canary analysis stayed "no data" (seen on the node)
            "ports": [{"containerPort": SERVER_PORT, "protocol": "TCP"}],
            "env": [{"name": STORAGE_URI_ENV, "value": ref.storage_uri},
                    {"name": "MODELOPS_MODEL_NAME", "value": name},
                    {"name": "MODELOPS_MODEL_VERSION", "value": ref.version or predictor_name(ref)},
                    *([{"name": ENV_MODEL_SHA256, "value": ref.digest}] if ref.digest else []),
                    *env],
        }
        if resources:
            container["resources"] = dict(resources)
        container["securityContext"] = dict(CONTAINER_SECURITY)
        pred["containers"] = [container]
    pred["securityContext"] = dict(POD_SECURITY)
    min_replicas = int(serving.get("minReplicas", 1))
    pred["minReplicas"] = min_replicas
    if not canary:
        pred["maxReplicas"] = int(serving.get("maxReplicas", 3))
        if serving.get("scaleMetric"):
            pred["scaleMetric"] = serving["scaleMetric"]
            pred["scaleTarget"] = int(serving["scaleTarget"])
    for src, dst in (("containerConcurrency", "containerConcurrency"), ("timeoutSeconds", "timeout"),
                     ("serviceAccountName", "serviceAccountName"), ("nodeSelector", "nodeSelector")):
        if serving.get(src) is not None:
            pred[dst] = serving[src]
    logger = spec.get("logger") or {}
    if logger.get("enabled", True):
        # the default exporter URL gets the namespace-bound token (modelops.drift.auth); a URL from the spec
        # is the author's own receiver and is used as given
        url = logger.get("url") or logger_url(
            exporter_url(defaults.drift_exporter_url, defaults.drift_exporter_shards, namespace, name),
            defaults.drift_token, namespace)
        # KServe's agent copies the listed Pod annotations into each event's ce-annotations: the exporter learns
        # which version answered a request (and so which reference profile to compare it with) from there
        pred["logger"] = {"mode": logger.get("mode", "all"), "url": url, "metadataAnnotations": [VERSION_ANNOTATION]}
        pred["annotations"] = {VERSION_ANNOTATION: ref.version or predictor_name(ref)}
    return pred


def inference_service(*, name: str, namespace: str, uid: str, spec: Mapping[str, Any], plan: ServingPlan,
                      mode: Mode, defaults: Defaults, legacy_mode_names: bool = False,
                      modelops_route: bool = False, canary_traffic_percent: int | None = None) -> dict[str, Any]:
    """The whole InferenceService manifest (for server-side apply: only the fields modelops owns).

    `modelops_route`: modelops serves this InferenceService's hostname with its own weighted HTTPRoute
    (desired/http_route.py), so KServe is told to write none: the label `networking.kserve.io/visibility:
    cluster-local` (KServe's RawHTTPRouteReconciler creates no route for it and reports IngressReady).
    `canary_traffic_percent`: the Standard canary's `trafficPercent` when the weight is not KServe's to apply
    (modelops' route splits; see `frozen_canary_percent`); None: `plan.weight`. Knative always gets
    `plan.weight` (Knative's own traffic block is the split). Metadata depends on the spec and the mode only,
    never on the plan: see the module doc."""
    serving: Mapping[str, Any] = spec.get("serving") or {}
    labels = {**(serving.get("labels") or {}),
              LABEL_PART_OF: "modelops", LABEL_MANAGED_BY: MANAGER,
              LABEL_OWNER_KIND: MODEL_DEPLOYMENT, LABEL_OWNER_NAME: name}
    if modelops_route and mode == "Standard":
        labels[KSERVE_VISIBILITY_LABEL] = KSERVE_CLUSTER_LOCAL
    annotations = {**(serving.get("annotations") or {}),
                   ANN_DEPLOYMENT_MODE: _LEGACY[mode] if legacy_mode_names else mode}
    isvc_spec: dict[str, Any]
    if mode == "Knative":
        serving_ref = plan.canary if plan.canary is not None else plan.stable
        predictor = _predictor(name, spec, serving_ref, defaults, canary=False, predictor_name_=None, namespace=namespace)
        if plan.canary is not None:
            predictor["canaryTrafficPercent"] = plan.weight
        elif plan.pin_stable:
            predictor["canaryTrafficPercent"] = 0
        isvc_spec = {"predictor": predictor}
    else:
        predictor = _predictor(name, spec, plan.stable, defaults, canary=False,
                               predictor_name_=predictor_name(plan.stable), namespace=namespace)
        isvc_spec = {"predictor": predictor}
        if plan.canary is not None:
            percent = plan.weight if canary_traffic_percent is None else canary_traffic_percent
            isvc_spec["canary"] = [{"trafficPercent": percent, "predictor": _predictor(
                name, spec, plan.canary, defaults, canary=True, predictor_name_=predictor_name(plan.canary),
                namespace=namespace)}]
    manifest: dict[str, Any] = {
        "apiVersion": ISVC_API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": name, "namespace": namespace, "labels": labels, "annotations": annotations,
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": MODEL_DEPLOYMENT, "name": name, "uid": uid,
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": isvc_spec,
    }
    return manifest


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """Hash of a manifest, kept in the ModelDeployment's status as what was applied. The legacy hash annotation is
    left out, as the operators that wrote it did: on an InferenceService they wrote, the annotation's value is this
    hash of the manifest with the legacy metadata carried over (read once on upgrade)."""
    body = json.loads(json.dumps(manifest))
    body.get("metadata", {}).get("annotations", {}).pop(LEGACY_HASH_ANNOTATION, None)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def serving_uris(isvc_spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The storage URIs of an InferenceService spec's predictors, stable first (the builder's layout; KServe's
    defaulter leaves storageUri and the STORAGE_URI env alone)."""
    return (predictor_storage_uri(isvc_spec.get("predictor") or {}),
            *(predictor_storage_uri(c.get("predictor") or {}) for c in isvc_spec.get("canary") or []))


def frozen_canary_percent(live: Mapping[str, Any] | None, canary_predictor: str) -> int | None:
    """The `trafficPercent` the live InferenceService gives the canary predictor of this name, if it has it.

    While modelops' HTTPRoute splits a Standard canary, that value stays as it was created (a changed ISVC spec is
    a new generation for KServe to act on, and the canary gate waits for it): the route carries the steps."""
    for c in ((live or {}).get("spec") or {}).get("canary") or []:
        if (c.get("predictor") or {}).get("name") == canary_predictor and isinstance(c.get("trafficPercent"), int):
            return int(c["trafficPercent"])
    return None


def carry_legacy_metadata(manifest: dict[str, Any], live: Mapping[str, Any] | None) -> dict[str, Any]:
    """Upgrade from a modelops that wrote per-step bookkeeping on InferenceService metadata (LEGACY_*).

    Dropping those keys changes every predictor's pod template (KServe propagates them), i.e. restarts the Pods.
    So while the live InferenceService serves the same models as `manifest` (same storage URIs, e.g. a rollout in
    flight across the upgrade), they are kept with their live values; they go with the first apply that changes a
    predictor, which replaces those Pods anyway. Returns `manifest`, completed in place."""
    meta = (live or {}).get("metadata") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k in LEGACY_LABELS}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k == LEGACY_HASH_ANNOTATION}
    if not (labels or annotations) or serving_uris((live or {}).get("spec") or {}) != serving_uris(manifest["spec"]):
        return manifest
    manifest["metadata"]["labels"].update(labels)
    manifest["metadata"]["annotations"].update(annotations)
    return manifest
