"""The whole modelops loop on a real node, shared by `modelops demo` and the e2e tier (tests/e2e).

    install   the serving stack (Gateway API CRDs, Traefik, KServe v0.20.0: manager, webhooks, agent and
              storage initializer images; modelops_dev.e2e.serving, idempotent), the model namespace under the
              `restricted` Pod Security Standard, storage, Prometheus, the data server, the chart (operator,
              bundled MLflow, drift exporter)
    train v1  a RetrainSchedule; a manual request -> a Job running the trainer image -> MLflow version 1
    serve     a ModelDeployment (Standard mode, canary rollout with Prometheus analysis) -> KServe realises
              the InferenceService (its webhooks inject the agent and the storage initializer) -> v1 serves
    drift     traffic from `generate-data`'s generator to the gateway only, then shifted traffic; KServe's
              agent logs every request/response to the drift exporter -> Prometheus -> the RetrainSchedule's
              drift trigger -> a Job -> version 2 (challenger)
    labels    the generator knows each row's truth: a share of the answered predictions get their label
              later, out of order, by inference id (the `Ce-Id` the client set, which KServe's agent puts on
              its logged events) at the exporter's /feedback -> realised and estimated quality per version
              in Prometheus, sampled into the timeline (modelops_dev.e2e.labels)
    canary    the ModelDeployment rolls v2 out step by step, each analysed in Prometheus; the operator's
              weighted HTTPRoute splits at Traefik, and the split is measured there (which version answered)
    promote   MLflow's champion alias moves to 2; the InferenceService serves v2 alone
    bad       (`bad_canary`) a version trained on data whose columns the clients do not send is rolled out:
              its answers fail analysis, the operator rolls it back through KServe

Every stage appends to a Timeline (timestamps, what happened, versions, weights) that the demo prints and
plots and the tests assert on. Nothing here stands in for KServe: its controller, webhooks, agent, storage
initializer and the gateway are the real ones (README "Real KServe").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelops_dev.e2e import gateway
from modelops_dev.e2e.gateway_traffic import (
    GatewayTraffic,
    route_weights,
    service_url,
    v2_inputs,
    weights_key,
)
from modelops_dev.e2e.kube import Kube, KubeError
from modelops_dev.e2e.labels import (
    LabelDelay,
    LabelFeed,
    TruthBook,
    exporter_label_counts,
    feedback_target,
    quality_by_version,
)
from modelops_dev.e2e.serving import ServingImages

MODEL = "churn"
#: images the loop needs on the node: modelops' own, then KServe's (manager, agent, storage initializer), Traefik
IMAGES = ("modelops/operator:dev", "modelops/trainer:dev", "modelops/model-server:dev",
          "modelops/drift-exporter:dev", "modelops/console:dev", "modelops/prometheus:dev",
          "modelops/prometheus-operator:dev", "modelops/prometheus-config-reloader:dev", *ServingImages().all())
#: The Prometheus of the loop: a `Prometheus` object in the model namespace, run by the Prometheus Operator and
#: configured only by the chart's ServiceMonitors, PodMonitor and PrometheusRule (selected by this label, which
#: manifests/e2e/values.yaml gives them through `monitoring.additionalLabels`). The operator's Service for it:
PROMETHEUS_NAME = "modelops"
PROMETHEUS_SELECTOR = {"modelops.dev/prometheus": "e2e"}
PROMETHEUS_SVC = "prometheus-operated"
#: the Prometheus module the image is built from (modelops_dev/images.py PROMETHEUS_VERSION v0.316.0)
PROMETHEUS_VERSION = "v3.16.0"
SAMPLE_CANARY = "manifests/samples/modeldeployment-canary.yaml"
DASHBOARD = "charts/modelops/dashboards/modelops-overview.json"
STORAGE_CLASS = "modelops-e2e"
SHIFT = 0.8
#: The model namespace runs under the `restricted` Pod Security Standard: the trainer, MLflow, the exporter
#: and the predictor Pods with KServe's injected agent and storage initializer must all be admitted.
NAMESPACE_LABELS = {"modelops.dev/e2e": "true", "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    # the chart's NetworkPolicies admit payload logs and MLflow clients from namespaces so labelled
                    "modelops.dev/serving": "enabled"}
#: Requests per canary step the split is measured over, and the tolerance (percentage points)
SPLIT_MIN_REQUESTS, SPLIT_TOLERANCE_PP = 400, 5.0


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


def sample_analysis(root: Path | None = None) -> dict[str, Any]:
    """The analysis of the canary sample (manifests/samples/modeldeployment-canary.yaml), unchanged: every 30 s,
    the built-in success-rate and latency-p99 over the chart's label convention (issue 14)."""
    doc = yaml.safe_load(((root or repo_root()) / SAMPLE_CANARY).read_text())
    return dict(doc["spec"]["rollout"]["analysis"])


def sample_serving(root: Path | None = None) -> dict[str, Any]:
    """The serving section of the canary sample (its resources: what its latency threshold was set for)."""
    doc = yaml.safe_load(((root or repo_root()) / SAMPLE_CANARY).read_text())
    return dict(doc["spec"]["serving"])


def model_deployment(namespace: str, pause: str = "60s", root: Path | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": MODEL, "namespace": namespace},
        "spec": {
            "model": {"name": MODEL, "alias": "champion"},
            "registry": {"pollInterval": "5s"},
            # one replica per version (the split is measured per predictor); the sample's resources, which its
            # latency threshold goes with: a 100m request left a predictor a small CPU share on a busy node
            "serving": {"deploymentMode": "Standard", "minReplicas": 1, "maxReplicas": 1,
                        "resources": sample_serving(root)["resources"]},
            "logger": {"enabled": True, "mode": "all"},
            # the chart's burn-rate rules and the dashboard's SLO panel read the thresholds the operator exports
            "slos": [{"name": "availability", "objective": 99.0}],
            "rollout": {
                "strategy": "Canary",
                "steps": [{"weight": 25, "pause": pause}, {"weight": 60, "pause": pause}],
                # a person approves the promotion in the console (modelops_dev.e2e.console)
                "approval": {"required": True},
                # the sample's analysis; more inconclusive analyses allowed while a predictor starts on the node
                "analysis": {**sample_analysis(root), "inconclusiveLimit": 20},
            },
        },
    }


def prometheus_objects(namespace: str) -> list[dict[str, Any]]:
    """The loop's Prometheus as Prometheus Operator users declare one: its ServiceAccount with the namespace's
    discovery rights, and a `Prometheus` selecting the chart's monitoring objects (and nothing else) in its own
    namespace. Admitted under the `restricted` Pod Security Standard (the operator's containers drop every
    capability and escalate nothing; the Pod runs as nobody with the runtime's seccomp profile)."""
    meta = {"name": "prometheus", "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": [
            {"apiGroups": [""], "resources": ["pods", "services", "endpoints"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "prometheus"},
         "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": namespace}]},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
         "metadata": {"name": PROMETHEUS_NAME, "namespace": namespace},
         "spec": {
             "image": "modelops/prometheus:dev", "version": PROMETHEUS_VERSION, "replicas": 1,
             "serviceAccountName": "prometheus",
             "serviceMonitorSelector": {"matchLabels": PROMETHEUS_SELECTOR},
             "podMonitorSelector": {"matchLabels": PROMETHEUS_SELECTOR},
             "ruleSelector": {"matchLabels": PROMETHEUS_SELECTOR},
             "scrapeInterval": "5s", "evaluationInterval": "5s", "retention": "6h",
             "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534,
                                 "seccompProfile": {"type": "RuntimeDefault"}},
             "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "768Mi"}}}},
    ]


def dashboard_queries(dashboard: dict[str, Any], namespace: str, model: str) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel (rows' nested panels too), with the dashboard's
    variables set to one namespace and model."""
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            walk(p.get("panels") or [])
            for t in p.get("targets") or []:
                if t.get("expr"):
                    expr = str(t["expr"]).replace("$namespace", namespace).replace("${namespace}", namespace)
                    out.append((str(p.get("title")), expr.replace("$model", model).replace("${model}", model)))
    walk(dashboard.get("panels") or [])
    return out


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


def predictor_state(deployment: dict[str, Any] | None, pods: list[dict[str, Any]]) -> dict[str, Any]:
    """What a restart of a predictor would change: its Deployment's generation and pod template (KServe writes
    the template; a changed template is a rolling restart), and its Pods (uid) with their containers' restart
    counts. Pods being deleted are left out (a finished rollout's old Pod may linger a moment)."""
    dep = deployment or {}
    template = json.dumps((dep.get("spec") or {}).get("template") or {}, sort_keys=True)
    return {
        "generation": (dep.get("metadata") or {}).get("generation"),
        "template_sha": hashlib.sha256(template.encode()).hexdigest()[:16] if dep else None,
        "pods": {p["metadata"]["uid"]: sum(int(c.get("restartCount") or 0)
                                           for c in (p.get("status") or {}).get("containerStatuses") or [])
                 for p in pods if not p["metadata"].get("deletionTimestamp")},
    }


def restart_problems(name: str, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """How `after` shows a restart of the predictor `name` since `before` (empty: none)."""
    out = []
    if before["generation"] != after["generation"] or before["template_sha"] != after["template_sha"]:
        out.append(f"{name}: Deployment generation {before['generation']} -> {after['generation']}, pod template "
                   f"{before['template_sha']} -> {after['template_sha']}")
    if set(before["pods"]) != set(after["pods"]):
        out.append(f"{name}: Pods {sorted(before['pods'])} -> {sorted(after['pods'])}")
    restarted = {uid: (n, after["pods"][uid]) for uid, n in before["pods"].items()
                 if uid in after["pods"] and after["pods"][uid] != n}
    if restarted:
        out.append(f"{name}: container restarts {restarted}")
    if not before["pods"]:
        out.append(f"{name}: no Pod at the first snapshot")
    return out


# ---- the loop -------------------------------------------------------------------------------------------
class Loop:
    def __init__(self, kube: Kube, namespace: str, timeline: Timeline, *, work_dir: Path) -> None:
        self.kube, self.ns, self.tl = kube, namespace, timeline
        self.release = release_name(namespace)
        self.mlflow_svc = f"{self.release}-mlflow"
        self.exporter_svc = f"{self.release}-drift-exporter"
        self.work = work_dir
        self.work.mkdir(parents=True, exist_ok=True)
        self.traffic: GatewayTraffic | None = None
        self.shift = 0.0
        #: what the gateway measured, one row per route setting (SplitMeter.report()) and per canary step
        self.splits: list[dict[str, Any]] = []
        self._forward: contextlib.ExitStack | None = None
        #: the dashboard's queries and what the e2e Prometheus answered (check_dashboard)
        self.dashboard: list[dict[str, Any]] = []
        self._pools: dict[float, Any] = {}
        self._cursor = 0
        self.root = repo_root()
        #: labels of the answered predictions, sent late to the exporter's /feedback (None: not sending)
        self.labels: LabelFeed | None = None
        #: (status, body) of the drift exporter's /metrics, from the shard the labels go to
        self._exporter_metrics: Callable[[], tuple[int, bytes]] | None = None
        self.label_delay = LabelDelay()
        self._truths: dict[float, list[int]] = {}
        self.book = TruthBook(f"churn-{uuid.uuid4().hex[:8]}", None)
        #: seconds the approval step waits for a person in the console before approving by request (the demo)
        self.approval_wait = 0.0
        #: how v2's promotion was approved (modelops_dev.e2e.console.approve_in_console)
        self.approval: dict[str, Any] = {}
        #: the predictors' state (predictor_state) at each canary step, and whether a traffic step restarted one
        self.restart_watch: list[dict[str, Any]] = []
        self.restarts: dict[str, Any] = {}
        #: version -> rows of it the drift exporter had ingested when it waited for approval as a canary
        self.canary_rows: dict[str, float | None] = {}

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

    def rows_ingested(self, version: str) -> float | None:
        """Rows of `version` the drift exporter received (requests joined with responses), as scraped."""
        try:
            return self.prom(f'sum(modelops_drift_rows_ingested_total{{model_namespace="{self.ns}",'
                             f'version="{version}"}})')
        except (LoopError, KubeError):
            return None

    def prom(self, query: str) -> float | None:
        result = self.prom_vector(query)
        return float(result[0]["value"][1]) if result else None

    def prom_vector(self, query: str) -> list[dict[str, Any]]:
        """An instant query's result vector, read from the operated Prometheus through the API server."""
        out = self.kube.proxy_json(self.ns, PROMETHEUS_SVC, 9090, "api/v1/query", params={"query": query})
        if out.get("status") != "success":
            raise LoopError(f"Prometheus query {query!r}: {out}")
        return list(out["data"]["result"])

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
                            f"uv run modelops images build prometheus console prometheus-operator prometheus-config-reloader && "
                            f"modelops cluster load-images {' '.join(IMAGES)}")
        self.tl.event("install", f"node(s) ready: {', '.join(ready)}; images present: {len(IMAGES)}")

    def install_serving(self) -> None:
        """The serving stack on whatever cluster the kubeconfig names (idempotent: server-side apply)."""
        from modelops_dev.e2e import kserve
        from modelops_dev.e2e.serving import install_serving

        check, run = kserve.run_kubectl(self.kube.kubectl_bin, self.kube.env)
        server = check("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").strip()
        seconds = install_serving(check, run, kubeconfig=Path(self.kube.kubeconfig), server=server,
                                  work=self.root / "build" / "e2e", progress=lambda m: self.tl.echo(m))
        self.tl.event("install", f"serving stack ready in {seconds:.0f}s: Gateway API CRDs, Traefik (Gateway "
                                 f"{gateway.GATEWAY_NAMESPACE}/{gateway.GATEWAY_NAME} Programmed), KServe v0.20.0 "
                                 "manager Pod, webhooks answering")

    def install_prometheus_operator(self) -> None:
        """The Prometheus Operator (its CRDs, RBAC, the operator as a Pod in `monitoring`) on whatever cluster the
        kubeconfig names, from its build cache (`modelops cluster install-prometheus-operator`; idempotent)."""
        from modelops_dev.cluster import versions
        from modelops_dev.e2e import kserve, prometheus_operator

        t = time.time()
        check, run = kserve.run_kubectl(self.kube.kubectl_bin, self.kube.env)
        prometheus_operator.install(kserve.Installer(check, run, progress=lambda m: self.tl.echo(m)),
                                    versions.serving_dir("prometheus-operator"), prometheus_operator.Options())
        self.tl.event("install", f"Prometheus Operator {versions.PROMETHEUS_OPERATOR_VERSION} running as a Pod in "
                                 f"{prometheus_operator.NAMESPACE} ({time.time() - t:.0f}s)")

    @property
    def prometheus_url(self) -> str:
        return f"http://{PROMETHEUS_SVC}.{self.ns}.svc:9090"

    def install(self) -> None:
        t = time.time()
        self.install_serving()
        self.install_prometheus_operator()
        self.kube.kubectl("create", "namespace", self.ns, check=False)
        self.kube.kubectl("label", "namespace", self.ns, *(f"{k}={v}" for k, v in NAMESPACE_LABELS.items()),
                          "--overwrite")
        host_dir = Path(os.environ.get("MODELOPS_E2E_STORAGE", "/var/lib/modelops/e2e")) / self.ns / "mlflow"
        # an earlier run in this namespace whose namespace was removed without `uninstall` (by hand) left its
        # volume Released (it never binds again: MLflow stayed Pending) and its MLflow store (its versions
        # would carry into this run): a run starts from neither
        self.kube.kubectl("delete", "pv", "-l", f"modelops.dev/e2e={self.ns}", check=False)
        if host_dir.exists():
            shutil.rmtree(host_dir)
        host_dir.mkdir(parents=True, exist_ok=True)
        host_dir.chmod(0o777)  # the node is this machine (`cluster up --node`); MLflow runs as 10001
        self.kube.apply(storage(self.ns, self.release, host_dir))
        # modelops' CRDs as this checkout has them: Helm installs a chart's crds/ once and never upgrades them,
        # so a cluster that ran an older chart would refuse the fields the loop's objects use
        self.kube.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=modelops-e2e",
                          "-f", str(self.root / "manifests/crds"), timeout=300)
        self.kube.kubectl("apply", "-n", self.ns, "-f", str(self.root / "manifests/e2e/data-server.yaml"))
        self.kube.apply(prometheus_objects(self.ns), server_side=True)
        self.tl.event("install", f"namespace {self.ns} (Pod Security: restricted, enforced); data server and a "
                                 f"`Prometheus` ({PROMETHEUS_NAME}: selects the chart's monitoring objects only)")
        extra_env = [{"name": "MODELOPS_MLFLOW_ARTIFACTS_DESTINATION", "value": f"pvc://{self.mlflow_svc}/artifacts"},
                     {"name": "MODELOPS_RETRAIN_RESYNC_SECONDS", "value": "5"}]
        # the chart's NetworkPolicies admit scrapes from the namespaces named here: Prometheus runs in this one
        scrapers = {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In",
                                          "values": [self.ns]}]}
        self.kube.helm("upgrade", "--install", self.release, str(self.root / "charts/modelops"), "-n", self.ns,
                       "-f", str(self.root / "manifests/e2e/values.yaml"),
                       "--set", f"operator.watchNamespaces={{{self.ns}}}", "--set", f"prometheus.url={self.prometheus_url}",
                       "--set-json", f"operator.extraEnv={json.dumps(extra_env)}",
                       "--set-json", f"networkPolicy.metricsNamespaceSelector={json.dumps(scrapers)}",
                       # MLflow may take its startup probe's whole allowance (values: startupSeconds 600) on a
                       # loaded node: the first run here waited 11 min for it at load average 25
                       "--wait", "--timeout", "12m")
        self.tl.event("install", f"helm release {self.release}: operator, MLflow (SQLite, artifacts on a PV), "
                                 "drift exporter ready; ServiceMonitors, PodMonitor, PrometheusRule")
        self.kube.kubectl("rollout", "status", "-n", self.ns, "deployment/data", "--timeout=300s", timeout=320)
        config = self.prometheus_config()
        self.kube.kubectl("rollout", "status", "-n", self.ns, f"statefulset/prometheus-{PROMETHEUS_NAME}",
                          "--timeout=300s", timeout=320)
        jobs = [j["job_name"] for j in config.get("scrape_configs") or []]
        self.wait("Prometheus to answer through its operated Service", lambda: self.prom("vector(1)") == 1.0, 180)
        self.tl.event("install", f"Prometheus ready (StatefulSet prometheus-{PROMETHEUS_NAME}, Service "
                                 f"{PROMETHEUS_SVC}); the operator generated its scrape jobs {jobs}")
        self.tl.stage("install", t)

    def prometheus_config(self) -> dict[str, Any]:
        """The configuration the Prometheus Operator generated from the chart's objects, once it has a job for
        each of them (the operator's and the drift exporter's ServiceMonitors, the model servers' PodMonitor)."""
        from modelops_dev.e2e import kserve, prometheus_operator

        check, _ = kserve.run_kubectl(self.kube.kubectl_bin, self.kube.env)
        r = self.release
        want = {f"serviceMonitor/{self.ns}/{r}-operator/0", f"serviceMonitor/{self.ns}/{r}-drift-exporter/0",
                f"podMonitor/{self.ns}/{r}-model-servers/0"}
        return prometheus_operator.wait_generated(
            check, self.ns, PROMETHEUS_NAME,
            lambda c: want <= {j.get("job_name") for j in c.get("scrape_configs") or []} and bool(c.get("rule_files")),
            timeout=300)

    def train_v1(self) -> dict[str, Any]:
        t = time.time()
        self.kube.apply(retrain_schedule(self.ns, self.prometheus_url))
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

    def wait_run(self, match: Callable[[dict[str, Any]], bool], what: str, timeout: float,
                 ok: tuple[str, ...] = ("Succeeded",)) -> dict[str, Any]:
        seen: set[str] = set()

        def check() -> dict[str, Any] | None:
            for r in self.rs().get("status", {}).get("runs") or []:
                if not match(r):
                    continue
                if r["job"] not in seen:
                    seen.add(r["job"])
                    self.tl.event("train", f"Job {r['job']} created (trigger {r['trigger']})")
                if r.get("state") not in ("Pending", "Running", None):
                    return dict(r)
            return None

        run = self.wait(what, check, timeout, period=3)
        if run.get("state") not in ok:
            raise LoopError(f"{what}: run {run['job']} ended {run.get('state')}: {run.get('message')}")
        return dict(run)

    def job_logs(self, job: str) -> str:
        return self.kube.kubectl("logs", "-n", self.ns, f"job/{job}", "--tail=-1", check=False)

    def serve_v1(self) -> None:
        t = time.time()
        self.kube.apply(model_deployment(self.ns))
        self.tl.event("serve", "ModelDeployment churn applied (alias champion, Standard mode, canary 25% -> 60%)")
        self.wait("v1 to serve (InferenceService Ready, ModelDeployment stable v1)",
                  lambda: self.md().get("status", {}).get("stable", {}).get("version") == "1" and self.isvc_ready(),
                  600, on_tick=None)
        self.tl.event("serve", f"v1 serves: InferenceService churn Ready (KServe Deployment {MODEL}-v1-predictor)", version="1")
        self.tl.stage("serve_v1", t)

    def storage_initializer_check(self) -> dict[str, Any]:
        """KServe's storage initializer, injected by its pod mutator, admitted under the namespace's `restricted`
        Pod Security Standard and downloading a model over http:// (the loop's own predictors mount their
        pvc:// models directly, which KServe does without an init container). Returns the Pod."""
        t = time.time()
        name = "fetch-check"
        pod_sec = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
        ctr_sec = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}
        isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": name, "namespace": self.ns,
                             "annotations": {"serving.kserve.io/deploymentMode": "Standard"},
                             "labels": {"networking.kserve.io/visibility": "cluster-local"}},
                "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 1, "securityContext": pod_sec, "containers": [{
                    "name": "kserve-container", "image": "modelops/trainer:dev",
                    "command": ["sh", "-c", "wc -l /mnt/models/model.bin && exec sleep 3600"],
                    "env": [{"name": "STORAGE_URI", "value": f"http://data.{self.ns}.svc:8000/model.bin"}],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                    "securityContext": ctr_sec}]}}}
        self.kube.apply(isvc)

        def fetched() -> dict[str, Any] | None:
            pods = (self.kube.get("pods", namespace=self.ns, selector=f"serving.kserve.io/inferenceservice={name}")
                    or {}).get("items") or []
            for p in pods:
                init = {s["name"]: s for s in p["status"].get("initContainerStatuses") or []}
                done = ((init.get("storage-initializer") or {}).get("state") or {}).get("terminated") or {}
                if done.get("exitCode") == 0 and p["status"].get("phase") == "Running":
                    return dict(p)
            return None

        try:
            pod = self.wait("the storage initializer to fetch http://data/model.bin under Pod Security restricted",
                            fetched, 300, period=3)
            log = self.kube.kubectl("logs", "-n", self.ns, pod["metadata"]["name"], "-c", "kserve-container")
            self.tl.event("serve", f"KServe's storage initializer ran in Pod {pod['metadata']['name']} (restricted "
                                   f"namespace) and fetched the model: {log.strip()[:80]}")
            return {"pod": pod, "log": log}
        finally:
            self.kube.kubectl("delete", "inferenceservices.serving.kserve.io", name, "-n", self.ns, "--wait=false",
                              check=False)
            self.tl.stage("storage_initializer", t)

    def isvc(self) -> dict[str, Any]:
        return self.kube.get("inferenceservices.serving.kserve.io", MODEL, self.ns) or {}

    def isvc_ready(self) -> bool:
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in self.isvc().get("status", {}).get("conditions") or [])

    # ---- traffic: to the gateway only --------------------------------------------------------------------
    def _pool(self, shift: float) -> Any:
        from modelops_pipelines.generate import TARGET, generate_churn

        if shift not in self._pools:
            # a different seed from the training data's, the same generator and shift knob; the truth of each
            # row (the generator's `churn`) is kept for the labels sent later
            frame = generate_churn(rows=4000, seed=100, shift=shift)
            self._truths[shift] = frame[TARGET].astype(int).tolist()
            self._pools[shift] = frame.drop(columns=[TARGET])
        return self._pools[shift]

    def _body(self) -> dict[str, Any]:
        """One V2 inference request of 20 rows at the current shift (called by the sender threads); its `id`
        (sent as `Ce-Id` too) is the business key its labels come back with."""
        shift = self.shift
        pool = self._pool(shift)
        start = self._cursor % (len(pool) - 20)
        self._cursor += 20
        return self.book.request(v2_inputs(pool.iloc[start:start + 20]), self._truths[shift][start:start + 20])

    def start_labels(self) -> LabelFeed:
        """Labels to the drift exporter's /feedback, through the API server's service proxy (as every other
        call of the loop into the cluster), authenticated as the chart deploys the exporter: with the
        namespace-bound token the operator wrote into the InferenceService's logger URL."""
        url = self.wait("the InferenceService's logger URL (the operator writes the exporter's)", lambda: (
            ((self.isvc().get("spec") or {}).get("predictor") or {}).get("logger") or {}).get("url"), 120)
        kind, ns, name, port, path = feedback_target(url)

        def post(items: list[dict[str, Any]]) -> dict[str, Any]:
            status, data = self.kube.proxy(ns, name, port, path, method="POST", body=items, kind=kind, timeout=30)
            if status != 200:  # the path carries the namespace's token: not in the message
                raise LoopError(f"POST {name}:{port}/feedback/ns/{ns}/...: HTTP {status}: {data[:300]!r}")
            return dict(json.loads(data))

        self._exporter_metrics = lambda: self.kube.proxy(ns, name, port, "metrics", kind=kind, timeout=30)
        self.labels = LabelFeed(post, self.label_delay, seed=7).start()
        self.book.feed = self.labels
        self.tl.event("labels", f"labels on: {self.label_delay.share:.0%} of the answered predictions, "
                                f"median delay {self.label_delay.median:.0f}s (up to {self.label_delay.maximum:.0f}s, "
                                f"out of order) -> {kind}/{name}:{port} /feedback/ns/{ns} (the logger URL's token)")
        return self.labels

    def label_report(self, settle_s: float = 0.0) -> dict[str, Any]:
        """What the feed sent and was answered, and (`exporter`) the exporter's own final accounting of the
        labels: a label that came before the agent's logged prediction is answered `early` and joins, or is
        counted unmatched, only later (modelops_dev.e2e.labels.exporter_label_counts).

        With `settle_s`, first wait (at most that long) until the exporter has caught up with what the agents
        logged: its count of early labels still waiting stops falling between two reads 5 s apart. KServe's
        agent logs asynchronously, so right after the traffic the last labels' predictions may still be on
        their way; they are not lost."""
        if not self.labels:
            return {}
        if settle_s > 0 and self._exporter_metrics is not None:
            deadline, last = time.monotonic() + settle_s, float("inf")
            while time.monotonic() < deadline:
                try:
                    status, data = self._exporter_metrics()
                    waiting = exporter_label_counts(data.decode())["early_waiting"] if status == 200 else last
                except (ValueError, OSError, KubeError):
                    waiting = last
                if waiting == 0 or waiting >= last:
                    break
                last = waiting
                time.sleep(5)
        rep = self.labels.report()
        try:
            assert self._exporter_metrics is not None
            status, data = self._exporter_metrics()
            if status != 200:
                raise LoopError(f"the exporter's /metrics: HTTP {status}: {data[:300]!r}")
            rep["exporter"] = exporter_label_counts(data.decode())
        except Exception as exc:  # a report: what failed is in it, and the check reading it fails
            rep["exporter"] = {"error": repr(exc)[:300]}
        return rep

    def quality(self) -> dict[str, Any]:
        """Realised and estimated quality per version, and joined labels, as Prometheus has them now."""
        sel = f'model_namespace="{self.ns}", model="{MODEL}"'
        out: dict[str, Any] = {}
        for key, series in (("realised", "modelops_quality_realised"), ("estimated", "modelops_quality_estimated")):
            out[key] = quality_by_version(self.prom_vector(f"max by (version, metric) ({series}{{{sel}}})"))
        out["joined"] = {r["metric"].get("version", "?"): float(r["value"][1]) for r in self.prom_vector(
            f"max by (version) (modelops_quality_joined_labels{{{sel}}})")}
        return out

    def labels_event(self, stage: str) -> None:
        """What the labels did so far, and the quality per version Prometheus has (for the timeline)."""
        rep = self.label_report()
        try:
            q = self.quality()
        except (KubeError, OSError, ValueError, LoopError) as exc:
            q = {"error": repr(exc)[:200]}

        def fmt(d: dict[str, dict[str, float]]) -> str:
            return "; ".join(f"v{v} " + ", ".join(f"{m}={x:.3f}" for m, x in sorted(ms.items()))
                             for v, ms in sorted(d.items())) or "-"
        self.tl.event(stage, f"labels: {rep.get('sent', 0)} sent of {rep.get('scheduled', 0)} scheduled for "
                             f"{rep.get('predictions', 0)} predictions, exporter: {rep.get('outcomes', {})}; "
                             f"realised {fmt(q.get('realised') or {})}; estimated {fmt(q.get('estimated') or {})}",
                      labels=rep, quality=q)

    def route(self) -> dict[str, Any]:
        name = (self.md().get("status", {}).get("traffic") or {}).get("route") or f"{MODEL}-traffic"
        return self.kube.get("httproutes.gateway.networking.k8s.io", name, self.ns) or {}

    def start_traffic(self) -> GatewayTraffic:
        """Senders to Traefik's Service (the Gateway's data plane) with the InferenceService's host: the path a
        client of the cluster takes (gateway -> modelops' HTTPRoute -> a predictor Service -> KServe's agent ->
        the model server). The agent, not this client, logs the payloads to the drift exporter."""
        traffic = self.wait("the operator's HTTPRoute (ModelDeployment status.traffic)", lambda: (
            self.md().get("status", {}).get("traffic") or {}).get("hostname") and route_weights(self.route(), MODEL)
            and (self.md().get("status", {}).get("traffic") or {}), 180)
        self._pool(0.0), self._pool(SHIFT)
        self.start_labels()
        self._forward = contextlib.ExitStack()
        base, via = self._forward.enter_context(service_url(self.kube.kubectl_bin, self.kube.env, gateway.NAMESPACE,
                                                           gateway.NAME, gateway.WEB_PORT))
        self.traffic = GatewayTraffic(base, traffic["hostname"], MODEL, self._body,
                                      lambda: route_weights(self.route(), MODEL), senders=4, pace=0.25,
                                      settle=5.0, on_answer=self.book.answered).start()
        self.tl.event("drift", f"traffic on to the gateway only (svc {gateway.NAMESPACE}/{gateway.NAME} via {via}, Host "
                               f"{traffic['hostname']}, route {traffic.get('route')} split by "
                               f"{traffic.get('splitBy')}): 4 senders, 20 rows per request")
        return self.traffic

    def stop_traffic(self) -> None:
        if self.traffic:
            self.traffic.stop()
        if self.labels:
            self.labels.stop()
        if self._forward:
            self._forward.close()
            self._forward = None

    def answered(self) -> dict[str, int]:
        return dict(self.traffic.answers) if self.traffic else {}

    def record(self) -> None:
        """One sample for the plot: drift share, canary weight, versions, answers per version at the gateway."""
        try:
            drift = self.prom(f'max(modelops_drift_share{{namespace="{self.ns}", model="{MODEL}"}})')
            per_version = {r["metric"].get("version", "?"): float(r["value"][1]) for r in self.prom_vector(
                f'max by (version) (modelops_drift_share{{namespace="{self.ns}", model="{MODEL}"}})')}
        except (KubeError, OSError, ValueError, LoopError):
            drift, per_version = None, {}
        try:
            quality = self.quality() if self.labels else {}
        except (KubeError, OSError, ValueError):
            quality = {}
        st = self.md().get("status", {})
        self.tl.sample(drift_share=drift, drift_by_version=per_version, weight=(st.get("rollout") or {}).get("weight") or 0,
                       stable=(st.get("stable") or {}).get("version"), canary=(st.get("canary") or {}).get("version"),
                       sent=self.answered(), quality=quality,
                       labels={"sent": self.labels.sent, "outcomes": dict(self.labels.outcomes)} if self.labels else {})

    def drift_and_retrain(self, baseline_seconds: float = 25) -> dict[str, Any]:
        t = time.time()
        self.start_traffic()
        end = time.monotonic() + baseline_seconds
        while time.monotonic() < end:
            self.record()
            time.sleep(5)
        assert self.traffic is not None
        self.tl.event("drift", f"baseline: drift share {self.tl.samples[-1]['drift_share']}, answers "
                               f"{self.answered()}, last error {self.traffic.last_error or '-'}")
        self.labels_event("labels")
        if not any(k.isdigit() for k in self.answered()):
            raise LoopError(f"no answer from the model server through the gateway: {self.traffic.last_error}")
        # new labelled data lands, and the live population shifts the same way
        patch = {"spec": {"training": {"dataset": {"uri": f"http://data.{self.ns}.svc:8000/shifted.csv"}}}}
        self.kube.kubectl("patch", "-n", self.ns, "retrainschedule", MODEL, "--type=merge", "-p", json.dumps(patch))
        self.shift = SHIFT
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
        self.labels_event("labels")
        self.tl.stage("drift_retrain", t)
        return run

    def _follow_rollout(self, version: str, stage: str) -> Callable[[], dict[str, Any] | None]:
        """A check for `wait`: logs every rollout change, returns the history entry of `version` once there."""
        last: list[tuple[Any, ...]] = [()]

        def check() -> dict[str, Any] | None:
            self.record()
            st = self.md().get("status", {})
            ro = st.get("rollout") or {}
            now = (ro.get("state"), ro.get("step"), ro.get("weight"), ro.get("lastResult"))
            if now != last[0] and ro.get("state"):
                last[0] = now
                checks = ", ".join(f"{c['name']}={c.get('value', '-'):.4g} {c['result']}" if isinstance(
                    c.get("value"), (int, float)) else f"{c['name']} {c['result']}" for c in ro.get("lastChecks") or [])
                sides = self.latency_by_side(st) if ro.get("lastResult") else {}
                self.tl.event(stage, f"rollout {ro.get('state')} step {ro.get('step')} weight {ro.get('weight')}% "
                                     f"canary v{(st.get('canary') or {}).get('version')} "
                                     f"analysis {ro.get('lastResult')} {checks}; route "
                                     f"{route_weights(self.route(), MODEL)}"
                                     + (f"; now: {self._fmt_sides(sides)}" if sides else ""), weight=ro.get("weight"),
                              latency=sides)
            return next((h for h in st.get("history") or [] if h.get("version") == version), None)
        return check

    def latency_by_side(self, status: dict[str, Any]) -> dict[str, Any]:
        """The built-in latency-p99 and latency-p50 of both sides over the analysis interval, as Prometheus has
        them now, with this machine's load average: whether a slow canary is slower than the stable version
        beside it, or the node is slow for both (the analysis itself judges the canary only)."""
        from modelops.decide.analysis import render, served_version
        from modelops.decide.builtin_metrics import builtin_query

        interval = str(model_deployment(self.ns)["spec"]["rollout"]["analysis"].get("interval") or "30s")
        out: dict[str, Any] = {"load": [round(x, 1) for x in os.getloadavg()]}
        for side in ("stable", "canary"):
            version = served_version(status.get(side))
            if not version:
                continue
            ctx = {"namespace": self.ns, "name": MODEL, "version": version, "interval": interval}
            try:
                out[f"v{version}"] = {q: self.prom(render(builtin_query(f"latency-{q}"), ctx)) for q in ("p99", "p50")}
                out[f"v{version}"]["rps"] = self.prom(render(builtin_query("request-rate"), ctx))
            except (KubeError, OSError, ValueError, LoopError) as exc:
                out[f"v{version}"] = {"error": repr(exc)[:200]}
        return out

    @staticmethod
    def _fmt_sides(sides: dict[str, Any]) -> str:
        def f(x: Any) -> str:
            return f"{x:.4g}" if isinstance(x, (int, float)) else "-"
        parts = [f"{k} p99 {f(v.get('p99'))} p50 {f(v.get('p50'))} at {f(v.get('rps'))}/s"
                 for k, v in sides.items() if isinstance(v, dict)]
        return "; ".join(parts) + f" (load average {sides.get('load')})"

    def measured_splits(self, stable: str, canary: str, weights: tuple[int, ...]) -> list[dict[str, Any]]:
        """The split measured at the gateway for each canary step's route weights, and whether it matches."""
        assert self.traffic is not None
        rows = []
        for w in weights:
            key = weights_key({f"v{stable}": 100 - w, f"v{canary}": w})
            c: dict[str, int] = self.traffic.meter.counts.get(key) or {}
            rows.append({"weights": dict(key), "requests": sum(c.values()), "answers": dict(c),
                         "measured": {k: round(v, 1) for k, v in self.traffic.meter.measured(key).items()},
                         "problem": self.traffic.meter.check(key, SPLIT_TOLERANCE_PP, SPLIT_MIN_REQUESTS)})
        return rows

    def predictor_snapshot(self) -> dict[str, dict[str, Any]]:
        """`predictor_state` of every predictor of the InferenceService (stable and canary), by predictor name;
        KServe names their Deployments `{isvc}-{predictor}-predictor`."""
        spec = self.isvc().get("spec") or {}
        names = [str((spec.get("predictor") or {}).get("name") or "")]
        names += [str((c.get("predictor") or {}).get("name") or "") for c in spec.get("canary") or []]
        out: dict[str, dict[str, Any]] = {}
        for name in filter(None, names):
            dep = self.kube.get("deployment", f"{MODEL}-{name}-predictor", self.ns)
            match = (((dep or {}).get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
            pods = ((self.kube.get("pods", namespace=self.ns, selector=selector) or {}).get("items") or []
                    if selector else [])
            out[name] = predictor_state(dep, pods)
        return out

    def _watch_restarts(self, version: str) -> Callable[[], None]:
        """A tick for the canary wait: the predictors' state when the canary first gets traffic at the gateway
        (its route weight > 0), then at every change of the rollout's step or weight (self.restart_watch)."""
        last: list[Any] = [None]

        def tick() -> None:
            ro = self.md().get("status", {}).get("rollout") or {}
            key = (ro.get("step"), ro.get("weight"), ro.get("state"))
            if key == last[0] or not route_weights(self.route(), MODEL).get(f"v{version}"):
                return
            states = self.predictor_snapshot()
            if f"v{version}" not in states:
                return
            last[0] = key
            self.restart_watch.append({"t": round(time.time() - self.tl.t0, 1), "step": key[0], "weight": key[1],
                                       "state": key[2], "predictors": states})
        return tick

    def canary_and_promote(self, version: str, stable: str = "1") -> None:
        from modelops_dev.e2e.console import approve_in_console

        t = time.time()
        follow = self._follow_rollout(version, "canary")
        watch = self._watch_restarts(version)
        self.restart_watch = []

        def held_for_approval() -> Any:
            done = follow()
            watch()
            return done or (self.md().get("status", {}).get("rollout") or {}).get("state") == "AwaitingApproval"
        held = self.wait(f"v{version} to pass analysis and wait for approval", held_for_approval, 1200, period=3)
        if held is True:
            # every traffic step is behind us, promotion not yet begun: the predictors as they are now
            self.restart_watch.append({"t": round(time.time() - self.tl.t0, 1), "step": None, "weight": None,
                                       "state": "AwaitingApproval", "predictors": self.predictor_snapshot()})
            self.restarts = self.restart_report(f"v{stable}", f"v{version}")
            self.tl.event("canary", f"predictors from the canary's first traffic to approval: {self.restarts['summary']}",
                          restarts=self.restarts)
            # the canary's payloads reach the drift exporter through KServe's agent (modelops' Service to it)
            rows = self.rows_ingested(version)
            self.canary_rows[version] = rows
            self.tl.event("canary", f"v{version} as the canary: {rows} of its rows ingested by the drift exporter "
                                    "(logged by KServe's agent in the canary's Pod)", version=version)
            self.approval = approve_in_console(self, MODEL, version, self.approval_wait)
        done = self.wait(f"v{version} to be promoted", follow, 600, period=3)
        if done.get("result") != "Promoted":
            raise LoopError(f"v{version} was not promoted: {done}")
        self.wait(f"v{version} to be stable", lambda: (self.md().get("status", {}).get("stable") or {}).get(
            "version") == version, 120)
        champion = self.wait("MLflow's champion alias to move", lambda: self.alias("champion") == version and version,
                             120)
        # the operator moves the route off v{stable} first and changes the InferenceService once the gateway
        # serves that route (KServe deletes the old predictor's Service at once): a few seconds after the status
        self.wait(f"the InferenceService to serve v{version} alone (KServe: no canary in spec or status, the "
                  f"v{stable} Deployment gone)", lambda: self.isvc().get("spec", {}).get("predictor", {}).get("name")
                  == f"v{version}" and not self.isvc().get("spec", {}).get("canary")
                  and not self.isvc().get("status", {}).get("canaryStatuses")
                  and not self.kube.get("deployment", f"{MODEL}-v{stable}-predictor", self.ns), 120)
        steps = [int(s["weight"]) for s in model_deployment(self.ns)["spec"]["rollout"]["steps"]]
        self.splits = self.measured_splits(stable, version, tuple(steps))
        for row in self.splits:
            self.tl.event("canary", f"split at the gateway for route weights {row['weights']}: measured "
                                    f"{row['measured']} over {row['requests']} answers"
                                    f"{' -- ' + row['problem'] if row['problem'] else ''}")
        self.tl.event("promote", f"v{version} promoted: MLflow alias champion -> {champion}; InferenceService "
                                 f"predictor {self.isvc().get('spec', {}).get('predictor', {}).get('name')}",
                      version=version)
        self.labels_event("labels")
        self.tl.stage("canary_promote", t)

    def restart_report(self, stable: str, canary: str) -> dict[str, Any]:
        """Whether the traffic steps restarted a predictor: the first snapshot of `restart_watch` (the canary's
        first traffic) against each later one, for the stable and the canary predictor."""
        snaps = self.restart_watch
        problems: list[str] = []
        if len(snaps) < 2:
            problems.append(f"{len(snaps)} predictor snapshot(s) taken during the canary: nothing to compare")
        for snap in snaps[1:]:
            for name in (stable, canary):
                first, now = snaps[0]["predictors"].get(name), snap["predictors"].get(name)
                if first is None or now is None:
                    problems.append(f"{name}: no Deployment at t={snaps[0]['t'] if first is None else snap['t']}s")
                    continue
                problems += [f"at {snap['state']} step {snap['step']} weight {snap['weight']}%: {p}"
                             for p in restart_problems(name, first, now)]
        first = snaps[0]["predictors"] if snaps else {}
        summary = ("unchanged: " + "; ".join(
            f"{n} generation {first[n]['generation']}, Pods {len(first[n]['pods'])}, restarts "
            f"{sum(first[n]['pods'].values())}" for n in (stable, canary) if n in first)
            + f" over {len(snaps)} snapshots") if not problems else "RESTARTED: " + " | ".join(problems)
        return {"snapshots": snaps, "problems": sorted(set(problems)), "summary": summary}

    def bad_canary(self) -> dict[str, Any]:
        """A version that fails analysis, rolled back through KServe. It is trained (for real, by the trainer
        Job) on data whose first column is renamed, so its model requires an input the clients do not send:
        its predictor answers them 422. The trainer's gate cannot score the champion on that data and holds the
        version back (GateFailed); a person then points the `challenger` alias at it anyway (MLflow's API),
        which is what starts a canary. Analysis (2xx share >= 0.99 per side) fails, the operator rolls it back."""
        t = time.time()
        champion = self.alias("champion")
        before = {r["job"] for r in self.rs().get("status", {}).get("runs") or []}
        patch = {"spec": {"training": {"dataset": {"uri": f"http://data.{self.ns}.svc:8000/incompatible.csv"}}}}
        self.kube.kubectl("patch", "-n", self.ns, "retrainschedule", MODEL, "--type=merge", "-p", json.dumps(patch))
        self.kube.kubectl("annotate", "-n", self.ns, "retrainschedule", MODEL, "--overwrite",
                          f"modelops.dev/retrain-requested-at={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
        self.tl.event("bad", "RetrainSchedule dataset -> incompatible.csv (customer_age renamed); manual run requested")
        run = self.wait_run(lambda r: r["job"] not in before, "the run on incompatible data", 900,
                            ok=("Succeeded", "GateFailed"))
        bad = str(run.get("version") or "")
        if not bad:
            raise LoopError(f"the run on incompatible data registered no version: {run}")
        self.tl.event("bad", f"v{bad} trained: {run.get('state')} ({run.get('verdict')}: {run.get('message', '')[:160]})",
                      version=bad)
        status, body = self.kube.proxy(self.ns, self.mlflow_svc, 5000, "api/2.0/mlflow/registered-models/alias",
                                       method="POST", body={"name": MODEL, "alias": "challenger", "version": bad})
        if status != 200:
            raise LoopError(f"setting the challenger alias to v{bad}: HTTP {status}: {body[:300]!r}")
        self.tl.event("bad", f"MLflow alias challenger -> {bad} (set by hand, as a person overriding the gate would)")
        done = self.wait(f"v{bad} to be rolled back", self._follow_rollout(bad, "bad"), 900, period=3)
        self.tl.event("bad", f"v{bad}: {done.get('result')} ({done.get('reason')}); champion {self.alias('champion')}",
                      version=bad)
        self.wait("the InferenceService back to one predictor (KServe: no canary in spec or status, the canary "
                  "Deployment gone)", lambda: not self.isvc().get("spec", {}).get("canary")
                  and not self.isvc().get("status", {}).get("canaryStatuses")
                  and not self.kube.get("deployment", f"{MODEL}-v{bad}-predictor", self.ns), 300)
        self.tl.stage("bad_canary", t)
        return {"version": bad, "history": done, "champion_before": champion, "run": run}

    def check_operator_metrics(self) -> dict[str, list[str]]:
        """The operator's own series, scraped through the chart's ServiceMonitor (job = its metrics Service):
        `modelops_rollout_*` and `modelops_retrain_*` of this namespace's objects must exist."""
        job = f"{self.release}-operator-metrics"
        found: dict[str, list[str]] = {}
        # reconciles are counted per kind (no namespace label): those of this release's operator, by its job
        for prefix, where in (("modelops_rollout_", f'namespace="{self.ns}"'), ("modelops_retrain_", f'namespace="{self.ns}"'),
                              ("modelops_reconcile_", f'job="{job}"')):
            rows = self.prom_vector(f'count by (__name__, job) ({{__name__=~"{prefix}.*", {where}}})')
            found[prefix] = sorted(f"{r['metric']['__name__']} (job {r['metric'].get('job')})" for r in rows)
            if not rows:
                raise LoopError(f"no {prefix}* series ({where}) in Prometheus: the chart's ServiceMonitor did not get "
                                "the operator's /metrics scraped")
            jobs = {r["metric"].get("job") for r in rows}
            if jobs != {job}:
                raise LoopError(f"{prefix}* series come from jobs {jobs}, not the chart's ServiceMonitor ({job})")
        self.tl.event("metrics", "the operator's own series scraped through the chart's ServiceMonitor: "
                      + "; ".join(f"{k}*: {len(v)}" for k, v in found.items()))
        return found

    def check_dashboard(self) -> list[dict[str, Any]]:
        """Every panel of the shipped Grafana dashboard (charts/modelops/dashboards) queried against this
        Prometheus with its variables set to this namespace and model: a panel without data fails. A panel shows
        data when one of its queries does (an error counter that never counted has no series; its panel shows
        the reconciles next to it); every query's result is listed."""
        dashboard = json.loads((self.root / DASHBOARD).read_text())
        rows: list[dict[str, Any]] = []
        for title, expr in dashboard_queries(dashboard, self.ns, MODEL):
            try:
                result, error = self.prom_vector(expr), ""
            except (KubeError, LoopError, OSError, ValueError) as exc:
                result, error = [], str(exc)[:300]
            first = result[0] if result else {}
            rows.append({"panel": title, "query": expr, "series": len(result), "error": error,
                         "example": {"labels": {k: v for k, v in (first.get("metric") or {}).items()},
                                     "value": (first.get("value") or [None, None])[1]} if first else None})
        panels: dict[str, bool] = {}
        for r in rows:
            panels[r["panel"]] = panels.get(r["panel"], False) or r["series"] > 0
        for r in rows:
            self.tl.echo(f"  dashboard panel {r['panel']!r}: {r['series']} series"
                         f"{' e.g. ' + json.dumps(r['example']) if r['example'] else ''}{' ' + r['error'] if r['error'] else ''}")
        self.dashboard = rows
        empty = [t for t, ok in panels.items() if not ok]
        if not panels or empty:
            raise LoopError(f"dashboard panels without data in the e2e Prometheus: {empty or 'no panels'}; "
                            f"queries: {json.dumps([r for r in rows if r['panel'] in empty])[:3000]}")
        self.tl.event("metrics", f"every dashboard panel returns data ({len(panels)} panels, {len(rows)} queries)")
        return rows

    def version_tags(self, version: str) -> dict[str, str]:
        mv = self.mlflow("model-versions/get", name=MODEL, version=version)["model_version"]
        return {t["key"]: t["value"] for t in mv.get("tags") or []}

    def run(self, bad_canary: bool = True) -> dict[str, Any]:
        t = time.time()
        out: dict[str, Any] = {}
        try:
            self.preflight()
            self.install()
            out["v1"] = self.train_v1()
            self.serve_v1()
            out["v2"] = self.drift_and_retrain()
            self.canary_and_promote(str(out["v2"]["version"]))
            if bad_canary:
                out["bad"] = self.bad_canary()
            out["operator_metrics"] = self.check_operator_metrics()
            out["dashboard"] = self.check_dashboard()
        finally:
            self.stop_traffic()
        self.tl.stage("total", t)
        return out

    def uninstall(self) -> None:
        """The model namespace and its volume; the serving stack (shared by every namespace) stays.

        Nothing of the run is kept, so its Pods are not drained one termination grace after another (MLflow,
        the predictors' drain, Prometheus: 49 s of a warm `modelops demo`): `helm uninstall` removes the
        release's objects, cluster-scoped ones included, without waiting; the namespace is deleted, which stops
        any new Pod in it; its Pods are then force-deleted; and the namespace's disappearance is what is
        waited for."""
        self.stop_traffic()
        if self.kube.get("namespace", self.ns):
            self.kube.helm("uninstall", self.release, "-n", self.ns, "--ignore-not-found", "--timeout", "2m")
            self.kube.kubectl("delete", "namespace", self.ns, "--wait=false", check=False)
            self.kube.kubectl("delete", "pods", "--all", "-n", self.ns, "--grace-period=0", "--force",
                              check=False, timeout=120)
            self.kube.kubectl("wait", "--for=delete", f"namespace/{self.ns}", "--timeout=180s", check=False,
                              timeout=200)
        self.kube.kubectl("delete", "pv", "-l", f"modelops.dev/e2e={self.ns}", check=False)
