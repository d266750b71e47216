"""The whole modelops loop on a real node, shared by `modelops demo` and the e2e tier (tests/e2e).

    install   namespace, storage, Prometheus, the data server, KServe's InferenceService CRD, the chart
              (operator, bundled MLflow, drift exporter), the KServe stand-in controller
    train v1  a RetrainSchedule; a manual request -> a Job running the trainer image -> MLflow version 1
    serve     a ModelDeployment (Standard mode, canary rollout with Prometheus analysis) -> v1 serves
    drift     traffic from `generate-data`'s generator, then shifted traffic -> drift exporter -> Prometheus
              -> the RetrainSchedule's drift trigger -> a Job -> version 2 (challenger)
    canary    the ModelDeployment rolls v2 out step by step, each analysed in Prometheus
    promote   MLflow's champion alias moves to 2; the InferenceService serves v2 alone

Every stage appends to a Timeline (timestamps, what happened, versions, weights) that the demo prints and
plots and the tests assert on. Nothing here is pretend: the stand-ins (KServe's controller, the traffic
split, the payload logger) are named in modelops_dev/e2e/kserve_standin.py and modelops_dev/e2e/traffic.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops_dev.e2e.kserve_standin import KSERVE_RELEASE, kserve_crd_file
from modelops_dev.e2e.kube import Kube, KubeError
from modelops_dev.e2e.traffic import TrafficClient

MODEL = "churn"
#: images the loop needs on the node
IMAGES = ("modelops/operator:dev", "modelops/trainer:dev", "modelops/model-server:dev",
          "modelops/drift-exporter:dev", "modelops/prometheus:dev")
STORAGE_CLASS = "modelops-e2e"
SHIFT = 0.8


class LoopError(AssertionError):
    """A stage did not reach its goal; the message says which and what was seen."""


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "manifests" / "e2e").is_dir() and (parent / "charts" / "modelops").is_dir():
            return parent
    raise LoopError("manifests/e2e and charts/modelops not found: run from a modelops checkout")


# ---- timeline -------------------------------------------------------------------------------------------
@dataclass
class Timeline:
    t0: float = field(default_factory=time.time)
    events: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    echo: Callable[[str], None] = print

    def event(self, stage: str, message: str, **data: Any) -> None:
        now = time.time()
        self.events.append({"t": round(now - self.t0, 1), "time": time.strftime("%H:%M:%S", time.gmtime(now)),
                            "stage": stage, "message": message, **data})
        self.echo(f"{time.strftime('%H:%M:%S', time.gmtime(now))} +{now - self.t0:6.1f}s  [{stage:8}] {message}")

    def sample(self, **values: Any) -> None:
        self.samples.append({"t": round(time.time() - self.t0, 1), **values})

    def stage(self, name: str, started: float) -> None:
        self.stages[name] = round(time.time() - started, 1)

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "samples": self.samples, "stage_seconds": self.stages}


# ---- manifests (pure) -----------------------------------------------------------------------------------
def release_name(namespace: str) -> str:
    """The Helm release: the namespace's name when it starts with "modelops" (the chart's fullname is then
    the release name), so that objects read as `modelops-demo-mlflow`; ClusterRoles stay unique per release."""
    return namespace if namespace.startswith("modelops") else f"modelops-{namespace}"


def retrain_schedule(namespace: str, prometheus: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.dev/v1alpha1", "kind": "RetrainSchedule",
        "metadata": {"name": MODEL, "namespace": namespace},
        "spec": {
            "training": {
                "modelName": MODEL,
                "dataset": {"uri": f"http://data.{namespace}.svc:8000/reference.csv", "target": "churn",
                            "task": "classification", "format": "csv"},
                "search": {"trials": 4, "families": ["xgboost"], "timeoutSeconds": 300, "metric": "auc"},
                "promotion": {"minImprovement": 0.0},
                "mlflow": {"experiment": "churn-e2e"},
            },
            "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
            "triggers": {"drift": {
                "prometheusUrl": prometheus,
                "query": f'max(modelops_drift_share{{namespace="{namespace}", model="{MODEL}"}})',
                "threshold": 0.3, "comparison": ">=", "for": "20s", "cooldown": "1h", "checkInterval": "5s"}},
            "job": {"backoffLimit": 0, "activeDeadlineSeconds": 900},
            "concurrencyPolicy": "Forbid",
        },
    }


def model_deployment(namespace: str) -> dict[str, Any]:
    sel = 'namespace="{{namespace}}",isvc="{{name}}",side="{{side}}"'
    return {
        "apiVersion": "modelops.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": MODEL, "namespace": namespace},
        "spec": {
            "model": {"name": MODEL, "alias": "champion"},
            "registry": {"pollInterval": "5s"},
            "serving": {"deploymentMode": "Standard", "minReplicas": 1, "maxReplicas": 1,
                        "resources": {"requests": {"cpu": "100m", "memory": "384Mi"}, "limits": {"memory": "1Gi"}}},
            "logger": {"enabled": True, "mode": "all"},
            "rollout": {
                "strategy": "Canary",
                "steps": [{"weight": 25, "pause": "30s"}, {"weight": 60, "pause": "30s"}],
                "analysis": {
                    "interval": "15s", "failureLimit": 1, "inconclusiveLimit": 20,
                    "metrics": [
                        {"name": "success-rate",
                         "query": (f'sum(rate(modelops_serving_requests_total{{{sel},status!~"5.."}}[1m])) / '
                                   f"sum(rate(modelops_serving_requests_total{{{sel}}}[1m]))"),
                         "thresholdRange": {"min": 0.99}},
                        {"name": "latency-p99",
                         "query": ("histogram_quantile(0.99, sum by (le) (rate("
                                   f"modelops_serving_request_duration_seconds_bucket{{{sel}}}[1m])))"),
                         "thresholdRange": {"max": 0.5}},
                    ]},
            },
        },
    }


def storage(namespace: str, release: str, host_dir: Path) -> list[dict[str, Any]]:
    """A StorageClass with no provisioner and one hostPath PersistentVolume pre-bound to MLflow's claim:
    the artifacts MLflow writes are what the predictors mount (pvc://{release}-mlflow/artifacts/...)."""
    return [
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": STORAGE_CLASS},
         "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate",
         "reclaimPolicy": "Delete"},
        {"apiVersion": "v1", "kind": "PersistentVolume",
         "metadata": {"name": f"{namespace}-mlflow", "labels": {"modelops.dev/e2e": namespace}},
         "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                  "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"},
                  "claimRef": {"namespace": namespace, "name": f"{release}-mlflow"}}},
    ]


# ---- the loop -------------------------------------------------------------------------------------------
class Loop:
    def __init__(self, kube: Kube, namespace: str, timeline: Timeline, *, work_dir: Path,
                 standin_log: Path | None = None) -> None:
        self.kube, self.ns, self.tl = kube, namespace, timeline
        self.release = release_name(namespace)
        self.mlflow_svc = f"{self.release}-mlflow"
        self.exporter_svc = f"{self.release}-drift-exporter"
        self.work = work_dir
        self.work.mkdir(parents=True, exist_ok=True)
        self.standin_log = standin_log or self.work / "kserve-standin.log"
        self.traffic: TrafficClient | None = None
        self.standin: subprocess.Popen[bytes] | None = None
        self.root = repo_root()

    # ---- helpers ----------------------------------------------------------------------------------------
    def wait(self, what: str, check: Callable[[], Any], timeout: float, period: float = 2.0,
             on_tick: Callable[[], None] | None = None) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except (KubeError, OSError, ValueError) as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            if on_tick:
                on_tick()
            time.sleep(period)
        raise LoopError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")

    def mlflow(self, path: str, **params: str) -> Any:
        return self.kube.proxy_json(self.ns, self.mlflow_svc, 5000, f"api/2.0/mlflow/{path}", params=params)

    def versions(self) -> list[dict[str, Any]]:
        out = self.mlflow("model-versions/search", filter=f"name='{MODEL}'")
        return sorted(out.get("model_versions") or [], key=lambda v: int(v["version"]))

    def alias(self, alias: str) -> str | None:
        try:
            return str(self.mlflow("registered-models/alias", name=MODEL, alias=alias)["model_version"]["version"])
        except KubeError:
            return None

    def prom(self, query: str) -> float | None:
        out = self.kube.proxy_json(self.ns, "prometheus", 9090, "api/v1/query", params={"query": query})
        result = out["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def md(self) -> dict[str, Any]:
        return self.kube.get("modeldeployment", MODEL, self.ns) or {}

    def rs(self) -> dict[str, Any]:
        return self.kube.get("retrainschedule", MODEL, self.ns) or {}

    # ---- stages -----------------------------------------------------------------------------------------
    def _missing_images(self) -> list[str]:
        nodes = (self.kube.get("nodes") or {}).get("items") or []
        present = {name for n in nodes for img in n["status"].get("images") or [] for name in img.get("names") or []}
        return [i for i in IMAGES if not any(p == i or p.endswith("/" + i) for p in present)]

    def preflight(self) -> None:
        nodes = (self.kube.get("nodes") or {}).get("items") or []
        ready = [n["metadata"]["name"] for n in nodes
                 if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
        if not ready:
            raise LoopError("no Ready node in the current kubeconfig's cluster "
                            f"({self.kube.kubeconfig}); run: modelops cluster up --node")
        # the kubelet reports its images in node status periodically: just-loaded ones appear within ~a minute
        deadline = time.monotonic() + 90
        while (missing := self._missing_images()) and time.monotonic() < deadline:
            time.sleep(3)
        if missing:
            raise LoopError(f"images missing on the node: {missing}; run: make images && "
                            f"uv run modelops images build prometheus && modelops cluster load-images {' '.join(IMAGES)}")
        self.tl.event("install", f"node(s) ready: {', '.join(ready)}; images present: {len(IMAGES)}")

    def install(self) -> None:
        t = time.time()
        self.kube.kubectl("create", "namespace", self.ns, check=False)
        self.kube.kubectl("label", "namespace", self.ns, "modelops.dev/e2e=true", "--overwrite")
        host_dir = Path(os.environ.get("MODELOPS_E2E_STORAGE", "/var/lib/modelops/e2e")) / self.ns / "mlflow"
        host_dir.mkdir(parents=True, exist_ok=True)
        host_dir.chmod(0o777)  # the node is this machine (`cluster up --node`); MLflow runs as 10001
        self.kube.apply(storage(self.ns, self.release, host_dir))
        self.kube.kubectl("apply", "-n", self.ns, "-f", str(self.root / "manifests/e2e/prometheus.yaml"),
                          "-f", str(self.root / "manifests/e2e/data-server.yaml"))
        self.tl.event("install", "Prometheus (pod discovery + relabelling) and the data server applied")
        self.install_kserve_crd()
        prometheus = f"http://prometheus.{self.ns}.svc:9090"
        extra_env = [{"name": "MODELOPS_MLFLOW_ARTIFACTS_DESTINATION", "value": f"pvc://{self.mlflow_svc}/artifacts"},
                     {"name": "MODELOPS_RETRAIN_RESYNC_SECONDS", "value": "5"}]
        self.kube.helm("upgrade", "--install", self.release, str(self.root / "charts/modelops"), "-n", self.ns,
                       "-f", str(self.root / "manifests/e2e/values.yaml"),
                       "--set", f"operator.watchNamespaces={{{self.ns}}}", "--set", f"prometheus.url={prometheus}",
                       "--set-json", f"operator.extraEnv={json.dumps(extra_env)}",
                       "--wait", "--timeout", "8m")
        self.tl.event("install", f"helm release {self.release}: operator, MLflow (SQLite, artifacts on a PV), "
                                 "drift exporter ready")
        self.start_standin()
        self.kube.kubectl("rollout", "status", "-n", self.ns, "deployment/prometheus", "deployment/data",
                          "--timeout=300s", timeout=320)
        self.tl.event("install", "Prometheus and the data server ready")
        self.tl.stage("install", t)

    def install_kserve_crd(self) -> None:
        if self.kube.get("crd", "inferenceservices.serving.kserve.io"):
            self.tl.event("install", "KServe InferenceService CRD already installed")
            return
        try:
            crd = kserve_crd_file()
        except RuntimeError as exc:
            raise LoopError(str(exc)) from exc
        self.kube.kubectl("apply", "--server-side", "--field-manager=modelops-e2e", "-f", str(crd), timeout=300)
        # (kubectl wait fails at once while the new CRD has no status.conditions yet, so poll)
        self.wait("the InferenceService CRD to be Established", lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in ((self.kube.get("crd", "inferenceservices.serving.kserve.io") or {}).get("status") or {})
            .get("conditions") or []), 60, period=1)
        self.tl.event("install", f"KServe {KSERVE_RELEASE} InferenceService CRD installed (server-side apply)")

    def start_standin(self) -> None:
        log = self.standin_log.open("ab")
        self.standin = subprocess.Popen([sys.executable, "-m", "modelops_dev.e2e.kserve_standin", self.ns],
                                        env=self.kube.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        (self.work / "kserve-standin.pid").write_text(str(self.standin.pid))
        self.tl.event("install", f"KServe STAND-IN controller started (pid {self.standin.pid}, log {self.standin_log})")

    def train_v1(self) -> dict[str, Any]:
        t = time.time()
        prometheus = f"http://prometheus.{self.ns}.svc:9090"
        self.kube.apply(retrain_schedule(self.ns, prometheus))
        self.wait("the operator to see the RetrainSchedule", lambda: self.rs().get("status", {}).get("observedGeneration"),
                  120)
        self.kube.kubectl("annotate", "-n", self.ns, "retrainschedule", MODEL, "--overwrite",
                          f"modelops.dev/retrain-requested-at={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
        self.tl.event("train", "RetrainSchedule churn applied; manual run requested (v1 on reference.csv)")
        run = self.wait_run(lambda r: r.get("trigger") == "manual", "the manual run", 900)
        self.tl.event("train", f"v1 trained: Job {run['job']} {run['state']}, {run.get('trials')} trials, "
                               f"{run.get('metric')}={run.get('value')}, version {run.get('version')}",
                      version=run.get("version"))
        self.tl.stage("train_v1", t)
        return run

    def wait_run(self, match: Callable[[dict[str, Any]], bool], what: str, timeout: float) -> dict[str, Any]:
        seen: set[str] = set()

        def check() -> dict[str, Any] | None:
            for r in self.rs().get("status", {}).get("runs") or []:
                if not match(r):
                    continue
                if r["job"] not in seen:
                    seen.add(r["job"])
                    self.tl.event("train", f"Job {r['job']} created (trigger {r['trigger']})")
                if r.get("state") not in ("Pending", "Running", None):
                    return r
            return None

        run = self.wait(what, check, timeout, period=3)
        if run.get("state") != "Succeeded":
            raise LoopError(f"{what}: run {run['job']} ended {run.get('state')}: {run.get('message')}")
        return run

    def job_logs(self, job: str) -> str:
        return self.kube.kubectl("logs", "-n", self.ns, f"job/{job}", "--tail=-1", check=False)

    def serve_v1(self) -> None:
        t = time.time()
        self.kube.apply(model_deployment(self.ns))
        self.tl.event("serve", "ModelDeployment churn applied (alias champion, Standard mode, canary 25% -> 60%)")
        self.wait("v1 to serve (InferenceService Ready, ModelDeployment stable v1)",
                  lambda: self.md().get("status", {}).get("stable", {}).get("version") == "1" and self.isvc_ready(),
                  600, on_tick=None)
        self.tl.event("serve", "v1 serves: InferenceService churn Ready (Deployment churn-predictor)", version="1")
        self.tl.stage("serve_v1", t)

    def isvc(self) -> dict[str, Any]:
        return self.kube.get("inferenceservices.serving.kserve.io", MODEL, self.ns) or {}

    def isvc_ready(self) -> bool:
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in self.isvc().get("status", {}).get("conditions") or [])

    def record(self) -> None:
        """One sample for the plot: drift share, canary weight, versions."""
        try:
            drift = self.prom(f'max(modelops_drift_share{{namespace="{self.ns}", model="{MODEL}"}})')
            out = self.kube.proxy_json(self.ns, "prometheus", 9090, "api/v1/query", params={
                "query": f'max by (version) (modelops_drift_share{{namespace="{self.ns}", model="{MODEL}"}})'})
            per_version = {r["metric"].get("version", "?"): float(r["value"][1]) for r in out["data"]["result"]}
        except (KubeError, OSError, ValueError):
            drift, per_version = None, {}
        st = self.md().get("status", {})
        self.tl.sample(drift_share=drift, drift_by_version=per_version, weight=(st.get("rollout") or {}).get("weight") or 0,
                       stable=(st.get("stable") or {}).get("version"), canary=(st.get("canary") or {}).get("version"),
                       sent=dict(self.traffic.stats.sent) if self.traffic else {})

    def drift_and_retrain(self, baseline_seconds: float = 45) -> dict[str, Any]:
        t = time.time()
        self.traffic = TrafficClient(self.kube, self.ns, MODEL, self.exporter_svc).start()
        self.tl.event("drift", "traffic on (shift 0): 20 rows every 0.3 s; request/response CloudEvents to the "
                               "drift exporter")
        end = time.monotonic() + baseline_seconds
        while time.monotonic() < end:
            self.record()
            time.sleep(5)
        self.tl.event("drift", f"baseline: drift share {self.tl.samples[-1]['drift_share']}, "
                               f"requests {self.traffic.stats.sent}, errors {self.traffic.stats.errors}")
        if not sum(self.traffic.stats.sent.values()):
            raise LoopError(f"no request reached the model server: {self.traffic.stats.last_error}")
        # new labelled data lands, and the live population shifts the same way
        patch = {"spec": {"training": {"dataset": {"uri": f"http://data.{self.ns}.svc:8000/shifted.csv"}}}}
        self.kube.kubectl("patch", "-n", self.ns, "retrainschedule", MODEL, "--type=merge", "-p", json.dumps(patch))
        self.traffic.shift = SHIFT
        self.tl.event("drift", f"traffic shifted (generate-data --shift {SHIFT}); RetrainSchedule dataset -> shifted.csv")
        fired = self.wait("the drift trigger to fire a run",
                          lambda: next((r for r in self.rs().get("status", {}).get("runs") or []
                                        if r.get("trigger") == "drift"), None), 600, period=5, on_tick=self.record)
        drift_status = self.rs().get("status", {}).get("drift", {})
        self.tl.event("drift", f"drift trigger fired: Job {fired['job']} ({drift_status.get('message', '')}, "
                               f"value {drift_status.get('value')})", drift=drift_status.get("value"))
        run = self.wait_run(lambda r: r.get("trigger") == "drift", "the drift-triggered run", 900)
        self.tl.event("drift", f"v{run.get('version')} trained on shifted data: {run.get('metric')}={run.get('value')} "
                               f"vs champion v{run.get('championVersion')} {run.get('championValue')}: "
                               f"{run.get('verdict')}", version=run.get("version"))
        self.tl.stage("drift_retrain", t)
        return run

    def canary_and_promote(self, version: str) -> None:
        t = time.time()
        last: tuple[Any, ...] = ()

        def check() -> bool:
            self.record()
            st = self.md().get("status", {})
            ro = st.get("rollout") or {}
            now = (ro.get("state"), ro.get("step"), ro.get("weight"), ro.get("lastResult"))
            nonlocal last
            if now != last and ro.get("state"):
                last = now
                checks = ", ".join(f"{c['name']}={c.get('value', '-'):.4g} {c['result']}" if isinstance(
                    c.get("value"), (int, float)) else f"{c['name']} {c['result']}" for c in ro.get("lastChecks") or [])
                self.tl.event("canary", f"rollout {ro.get('state')} step {ro.get('step')} weight {ro.get('weight')}% "
                                        f"canary v{(st.get('canary') or {}).get('version')} "
                                        f"analysis {ro.get('lastResult')} {checks}".rstrip(),
                              weight=ro.get("weight"))
            hist = st.get("history") or []
            done = next((h for h in hist if h.get("version") == version), None)
            if done and done.get("result") != "Promoted":
                raise LoopError(f"v{version} was not promoted: {done}")
            return bool(done) and (st.get("stable") or {}).get("version") == version

        self.wait(f"v{version} to be promoted", check, 900, period=3)
        champion = self.wait("MLflow's champion alias to move", lambda: self.alias("champion") == version and version,
                             120)
        self.tl.event("promote", f"v{version} promoted: MLflow alias champion -> {champion}; InferenceService "
                                 f"predictor {self.isvc().get('spec', {}).get('predictor', {}).get('name')}",
                      version=version)
        self.tl.stage("canary_promote", t)

    def run(self) -> dict[str, Any]:
        t = time.time()
        try:
            self.preflight()
            self.install()
            v1 = self.train_v1()
            self.serve_v1()
            v2 = self.drift_and_retrain()
            self.canary_and_promote(str(v2["version"]))
        finally:
            if self.traffic:
                self.traffic.stop()
        self.tl.stage("total", t)
        return {"v1": v1, "v2": v2}

    def stop_standin(self) -> None:
        pid_file = self.work / "kserve-standin.pid"
        if self.standin is not None and self.standin.poll() is None:
            self.standin.terminate()
            self.standin.wait(15)
        pid_file.unlink(missing_ok=True)

    def uninstall(self) -> None:
        self.stop_standin()
        self.kube.helm("uninstall", self.release, "-n", self.ns, "--wait", "--timeout", "3m") if self.kube.get(
            "namespace", self.ns) else None
        self.kube.kubectl("delete", "namespace", self.ns, "--wait=true", "--timeout=180s", check=False, timeout=200)
        self.kube.kubectl("delete", "pv", "-l", f"modelops.dev/e2e={self.ns}", check=False)
