"""STAND-IN FOR KSERVE'S CONTROLLER (e2e tier and `modelops demo` only; not part of the product).

KServe's own controller (Go, plus cert-manager, webhooks, a Gateway API implementation for Standard-mode
canaries) cannot be built or run on these machines, so this small Python controller realises
InferenceServices in Standard (RawDeployment) mode the way KServe v0.20 does, with real Kubernetes objects:

- per predictor a Deployment and a ClusterIP Service: the stable one `{isvc}-predictor`, each canary
  `{isvc}-{canary name}-predictor` (KServe's names);
- the predictor's containers as written in the InferenceService (`kserve-container` with `STORAGE_URI`);
- storage: a `pvc://CLAIM/PATH` STORAGE_URI is mounted read-only with subPath PATH at /mnt/models, which is
  what KServe's storage initializer does for PVCs (it skips the init container for pvc://). Other schemes
  would need the storage-initializer image (downloads): the InferenceService gets Ready=False with reason
  `StorageUriUnsupported` instead;
- status like KServe's: `conditions` (PredictorReady, IngressReady, Ready, CanaryPredictorReady),
  `components.predictor.{url, traffic[]}`, `canaryStatuses[] {name, ready, trafficPercent}`,
  `deploymentMode`, `observedGeneration`, `url`, `address`. "ready" means the Deployment is rolled out
  (observedGeneration current, updated and available replicas >= 1).

What it does NOT do, said here and in its log at start-up:
- traffic splitting: KServe splits by weighted Gateway API HTTPRoute backendRefs. Here each side is a plain
  Service; the e2e traffic client (modelops_dev.e2e.traffic) splits requests by the weights in status.
- the payload-logger agent sidecar: the traffic client posts the request/response CloudEvents in KServe's
  logger format itself (see modelops_dev.e2e.traffic).
- promotion without restart: KServe reuses the canary's pods when the canary predictor moves into
  spec.predictor; here the stable Deployment rolls to the new template (pods restart).
- Knative mode: refused with Ready=False, reason `DeploymentModeUnsupported`.

Run: `python -m modelops_dev.e2e.kserve_standin` (uses the current kubeconfig, or in-cluster config).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
MANAGED_LABEL = "modelops.dev/kserve-stand-in"
HASH_ANNOTATION = "modelops.dev/kserve-stand-in-hash"
MODEL_DIR = "/mnt/models"
BANNER = ("modelops KServe STAND-IN controller: this is NOT KServe's controller. It realises Standard-mode "
          "InferenceServices as Deployments + Services and fills their status; no HTTPRoute traffic split, "
          "no logger sidecar (see modelops_dev/e2e/kserve_standin.py)")

log = logging.getLogger("kserve-stand-in")


#: Where KServe's InferenceService CRD comes from: its Go module (no registry, no GitHub download).
KSERVE_MODULE = "github.com/kserve/kserve"
KSERVE_RELEASE = "v0.20.0"
ISVC_CRD_FILE = "config/crd/full/serving.kserve.io_inferenceservices.yaml"


def kserve_crd_file(release: str = KSERVE_RELEASE) -> Path:
    """KServe's InferenceService CRD in the Go module cache (`go mod download`s the module once).

    Raises RuntimeError naming the command when Go is missing or the download fails."""
    cmd = ["go", "mod", "download", "-json", f"{KSERVE_MODULE}@{release}"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "GOFLAGS": "-mod=mod"}, cwd="/")
    except FileNotFoundError as exc:
        raise RuntimeError(f"'go' is not installed; it downloads KServe's CRD from the Go module proxy "
                           f"({' '.join(cmd)})") from exc
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (needs the Go module proxy or a warm GOMODCACHE):\n{out.stderr}")
    path = Path(json.loads(out.stdout)["Dir"]) / ISVC_CRD_FILE
    if not path.exists():
        raise RuntimeError(f"{path} is missing from {KSERVE_MODULE}@{release}")
    return path


def _ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def deployment_name(isvc: str, predictor: str | None) -> str:
    """KServe's names: `{isvc}-predictor` for the stable predictor, `{isvc}-{name}-predictor` for a canary."""
    return f"{isvc}-{predictor}-predictor" if predictor else f"{isvc}-predictor"


def storage_mount(storage_uri: str) -> tuple[str, str] | None:
    """(claim, subPath) of a pvc:// URI; None for any other scheme."""
    if not storage_uri.startswith("pvc://"):
        return None
    rest = storage_uri[len("pvc://"):]
    claim, _, path = rest.partition("/")
    return claim, path.strip("/")


def _storage_uri(predictor: Mapping[str, Any]) -> str:
    for c in predictor.get("containers") or []:
        for e in c.get("env") or []:
            if e.get("name") == "STORAGE_URI":
                return str(e.get("value") or "")
    return str((predictor.get("model") or {}).get("storageUri") or "")


def predictor_objects(isvc: Mapping[str, Any], predictor: Mapping[str, Any], *, canary: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Deployment, Service) for one predictor of `isvc` (pure)."""
    meta = isvc["metadata"]
    name = deployment_name(meta["name"], predictor.get("name") if canary else None)
    containers = [dict(c) for c in predictor.get("containers") or []]
    if not containers:
        raise ValueError("only custom predictors (spec.predictor.containers) are realised by the stand-in; "
                         "built-in runtimes need KServe's ServingRuntimes")
    mount = storage_mount(_storage_uri(predictor))
    if mount is None:
        raise ValueError(f"STORAGE_URI {_storage_uri(predictor)!r}: the stand-in mounts pvc:// only (other schemes "
                         "need KServe's storage-initializer image)")
    claim, sub = mount
    for c in containers:
        c.setdefault("imagePullPolicy", "IfNotPresent")
        c.setdefault("ports", [{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
        c["readinessProbe"] = c.get("readinessProbe") or {"httpGet": {"path": "/v2/health/ready", "port": 8080},
                                                          "periodSeconds": 2, "failureThreshold": 3}
        mounts = list(c.get("volumeMounts") or [])
        if c.get("name") == "kserve-container":
            mounts.append({"name": "kserve-pvc-source", "mountPath": MODEL_DIR, "subPath": sub, "readOnly": True})
        mounts.append({"name": "tmp", "mountPath": "/tmp"})
        c["volumeMounts"] = mounts
        c.setdefault("securityContext", {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                         "runAsNonRoot": True, "runAsUser": 10001,
                                         "seccompProfile": {"type": "RuntimeDefault"}})
    labels = {ISVC_LABEL: meta["name"], "component": "predictor", "app": name, MANAGED_LABEL: "true"}
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", "name": meta["name"],
             "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}
    pod_spec: dict[str, Any] = {
        "containers": containers,
        "volumes": [{"name": "kserve-pvc-source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}},
                    {"name": "tmp", "emptyDir": {}}],
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
    }
    if predictor.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = predictor["serviceAccountName"]
    if predictor.get("nodeSelector"):
        pod_spec["nodeSelector"] = predictor["nodeSelector"]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels, "ownerReferences": [owner]},
        "spec": {"replicas": int(predictor.get("minReplicas", 1) or 1),
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }
    deployment["metadata"]["annotations"] = {HASH_ANNOTATION: _hash(deployment)}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels, "ownerReferences": [owner]},
        "spec": {"selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }
    return deployment, service


def _cond(type_: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    c: dict[str, Any] = {"type": type_, "status": "True" if ok else "False", "lastTransitionTime": _ts()}
    if not ok:
        c["reason"] = reason or "NotReady"
        if message:
            c["message"] = message
    return c


def rolled_out(dep: Mapping[str, Any] | None) -> bool:
    """A Deployment whose current template is available (what `kubectl rollout status` waits for)."""
    if not dep:
        return False
    st, spec = dep.get("status") or {}, dep.get("spec") or {}
    want = int(spec.get("replicas", 1))
    return (st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
            and int(st.get("updatedReplicas") or 0) >= want and int(st.get("availableReplicas") or 0) >= want
            and int(st.get("replicas") or 0) == int(st.get("updatedReplicas") or 0))


def isvc_status(isvc: Mapping[str, Any], stable_ready: bool, canaries: list[tuple[str, int, bool]],
                error: str = "", error_reason: str = "") -> dict[str, Any]:
    """KServe-shaped status from the observed readiness of each predictor (pure)."""
    meta = isvc["metadata"]
    ns, name = meta["namespace"], meta["name"]
    stable_name = str((isvc["spec"].get("predictor") or {}).get("name") or "")
    if error:
        conditions = [_cond("PredictorReady", False, error_reason, error), _cond("Ready", False, error_reason, error)]
        return {"conditions": conditions, "observedGeneration": meta.get("generation"), "deploymentMode": "Standard",
                "modelStatus": {"transitionStatus": "InvalidSpec"}}
    host = f"{deployment_name(name, None)}.{ns}.svc.cluster.local"
    canary_share = sum(p for _, p, _ in canaries)
    traffic = [{"revisionName": stable_name or deployment_name(name, None), "percent": 100 - canary_share,
                "latestRevision": not canaries, "tag": "stable",
                "url": f"http://{host}"}]
    traffic += [{"revisionName": cname, "percent": pct, "latestRevision": True, "tag": "canary",
                 "url": f"http://{deployment_name(name, cname)}.{ns}.svc.cluster.local"} for cname, pct, _ in canaries]
    conditions = [_cond("IngressReady", stable_ready, "PredictorNotReady", "the predictor Service has no ready Pod"),
                  _cond("PredictorReady", stable_ready, "PredictorNotReady", "the predictor Deployment is not available"),
                  _cond("Ready", stable_ready, "PredictorNotReady", "the predictor Deployment is not available")]
    if canaries:
        ok = all(r for *_, r in canaries)
        conditions.append({"type": "CanaryPredictorReady", "status": "True" if ok else "False",
                           "reason": "AllCanariesReady" if ok else "CanariesNotReady", "lastTransitionTime": _ts()})
    status: dict[str, Any] = {
        "observedGeneration": meta.get("generation"), "deploymentMode": "Standard", "conditions": conditions,
        "components": {"predictor": {"url": f"http://{host}", "traffic": traffic}},
        "canaryStatuses": [{"name": c, "ready": r, "trafficPercent": p,
                            "modelStatus": {"transitionStatus": "UpToDate" if r else "InProgress"}}
                           for c, p, r in canaries] or None,
        "modelStatus": {"transitionStatus": "UpToDate" if stable_ready else "InProgress"},
    }
    if stable_ready:
        status["url"] = f"http://{host}"
        status["address"] = {"url": f"http://{host}"}
    return status


class StandIn:
    """The reconcile loop (polling: a handful of InferenceServices, a 1 s period is plenty)."""

    def __init__(self, period: float = 1.0, namespace: str | None = None, kubeconfig: str | None = None) -> None:
        from kubernetes import client, config

        cfg = client.Configuration()
        try:
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        except Exception:  # in a Pod
            config.load_incluster_config(client_configuration=cfg)
        self.api = client.ApiClient(cfg)
        self.custom = client.CustomObjectsApi(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.period = period
        self.namespace = namespace
        self._stop = False

    def stop(self, *_: object) -> None:
        self._stop = True

    def run(self) -> None:
        log.warning(BANNER)
        while not self._stop:
            try:
                items = (self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
                         if self.namespace else self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL))["items"]
                for isvc in items:
                    try:
                        self.reconcile(isvc)
                    except Exception as exc:
                        log.exception("reconcile %s/%s: %s", isvc["metadata"]["namespace"],
                                      isvc["metadata"]["name"], exc)
            except Exception as exc:
                log.warning("list InferenceServices: %s", exc)
            time.sleep(self.period)

    def _apply(self, obj: dict[str, Any]) -> None:
        from kubernetes.client.rest import ApiException

        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        if obj["kind"] == "Deployment":
            try:
                cur = self.apps.read_namespaced_deployment(name, ns)
                if (cur.metadata.annotations or {}).get(HASH_ANNOTATION) == obj["metadata"]["annotations"][HASH_ANNOTATION]:
                    return
                self.apps.replace_namespaced_deployment(name, ns, {**obj, "metadata": {
                    **obj["metadata"], "resourceVersion": cur.metadata.resource_version}})
                log.info("updated Deployment %s/%s", ns, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.apps.create_namespaced_deployment(ns, obj)
                log.info("created Deployment %s/%s", ns, name)
        else:
            try:
                self.core.read_namespaced_service(name, ns)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.core.create_namespaced_service(ns, obj)
                log.info("created Service %s/%s", ns, name)

    def _deployment(self, ns: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.api.sanitize_for_serialization(self.apps.read_namespaced_deployment(name, ns))  # type: ignore[no-any-return]
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def reconcile(self, isvc: dict[str, Any]) -> None:
        meta, spec = isvc["metadata"], isvc["spec"]
        ns = meta["namespace"]
        mode = (meta.get("annotations") or {}).get(MODE_ANNOTATION, "")
        wanted: set[str] = set()
        canaries: list[tuple[str, int, bool]] = []
        error = reason = ""
        stable_ready = False
        if mode not in ("Standard", "RawDeployment"):
            error, reason = (f"deployment mode {mode or '(cluster default)'}: the KServe stand-in realises Standard "
                             "(RawDeployment) mode only", "DeploymentModeUnsupported")
        else:
            try:
                dep, svc = predictor_objects(isvc, spec["predictor"], canary=False)
                self._apply(dep)
                self._apply(svc)
                wanted.add(dep["metadata"]["name"])
                stable_ready = rolled_out(self._deployment(ns, dep["metadata"]["name"]))
                for c in spec.get("canary") or []:
                    cdep, csvc = predictor_objects(isvc, c["predictor"], canary=True)
                    self._apply(cdep)
                    self._apply(csvc)
                    wanted.add(cdep["metadata"]["name"])
                    canaries.append((c["predictor"]["name"], int(c.get("trafficPercent", 0)),
                                     rolled_out(self._deployment(ns, cdep["metadata"]["name"]))))
            except ValueError as exc:
                error, reason = str(exc), "StorageUriUnsupported"
        self._prune(ns, meta["name"], wanted)
        status = isvc_status(isvc, stable_ready, canaries, error, reason)
        old = isvc.get("status") or {}
        before = {c["type"]: c for c in old.get("conditions") or []}
        for c in status["conditions"]:
            prev = before.get(c["type"])
            if prev and prev.get("status") == c["status"]:
                c["lastTransitionTime"] = prev.get("lastTransitionTime", c["lastTransitionTime"])
        if all(old.get(k) == v for k, v in status.items() if v is not None) and \
                all(old.get(k) is None for k, v in status.items() if v is None):
            return
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, meta["name"], {"status": status},
                                                          _content_type="application/merge-patch+json")
        log.info("status %s/%s: ready=%s canaries=%s %s", ns, meta["name"], stable_ready, canaries, error)

    def _prune(self, ns: str, isvc: str, wanted: set[str]) -> None:
        """Canary Deployments/Services of `isvc` that the spec no longer lists (rollback or promotion)."""
        sel = f"{ISVC_LABEL}={isvc},{MANAGED_LABEL}=true"
        for dep in self.apps.list_namespaced_deployment(ns, label_selector=sel).items:
            if dep.metadata.name not in wanted:
                self.apps.delete_namespaced_deployment(dep.metadata.name, ns, propagation_policy="Background")
                log.info("deleted Deployment %s/%s", ns, dep.metadata.name)
        for svc in self.core.list_namespaced_service(ns, label_selector=sel).items:
            if svc.metadata.name not in wanted:
                self.core.delete_namespaced_service(svc.metadata.name, ns)
                log.info("deleted Service %s/%s", ns, svc.metadata.name)


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s kserve-STAND-IN %(levelname)s %(message)s")
    ns = sys.argv[1] if len(sys.argv) > 1 else None
    standin = StandIn(namespace=ns)
    signal.signal(signal.SIGTERM, standin.stop)
    signal.signal(signal.SIGINT, standin.stop)
    standin.run()


if __name__ == "__main__":
    main()
