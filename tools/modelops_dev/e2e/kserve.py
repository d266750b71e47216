"""KServe on any cluster the kubeconfig names, installed the way KServe's own manifests do.

What is installed (KServe v0.20.0, its module's `config/`, built by `modelops cluster build-serving`):

- `config/overlays/standalone/kserve` rendered with `kubectl kustomize`: the namespace, the CRDs (server-side
  apply: the InferenceService CRD is far over the client-side annotation limit), RBAC, the
  `inferenceservice-config` ConfigMap, the default ClusterStorageContainer, the controller manager Deployment
  and Service, and the admission webhooks (InferenceService defaulter and validator, the pod mutator that
  injects the agent and the storage initializer, the TrainedModel / InferenceGraph / (Cluster)ServingRuntime
  validators); plus `config/runtimes` (the ClusterServingRuntimes, which the "model format" InferenceServices
  resolve against).
- Changes to that render, all in `kserve_manifests` (pure) and nothing else:
  * no cert-manager: the webhook serving certificate (Secret `kserve-webhook-server-cert`) is signed by a CA
    given by the caller (the local cluster's CA on `modelops cluster up --node`, else a CA made for this
    install) and its bundle is written into every webhook's `clientConfig.caBundle`; cert-manager's
    `inject-ca-from` annotations are dropped;
  * the manager's image is ours (built from KServe's Go module), `imagePullPolicy: IfNotPresent`, and the
    kube-rbac-proxy sidecar (quay.io image, metrics auth only) is left out: the manager serves metrics on
    127.0.0.1 only; its single replica runs without leader election (`Options.leader_elect`);
  * the default ClusterStorageContainer (the storage initializer KServe injects for http(s)://, s3://, ...)
    gets our image and a securityContext the `restricted` Pod Security Standard admits;
  * inferenceservice-config: Standard as the default deployment mode, Gateway API ingress on (the Gateway
    `kserve/kserve-ingress-gateway`, see modelops/e2e/gateway.py), the agent (logger, batcher) and the storage
    initializer images set to ours, and the agent's CPU request lowered to fit a 2-core node;
  * `manager="host"`: for a control plane without a node (the cluster tier) the manager runs as a host
    process and the webhooks call it by URL (`https://127.0.0.1:PORT/...`) instead of through the Service;
    the Deployment is then left out. On a cluster with nodes the manager always runs as a Pod.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "kserve"
MANAGER = "kserve-controller-manager"
WEBHOOK_SERVICE = "kserve-webhook-server-service"
WEBHOOK_SECRET = "kserve-webhook-server-cert"
CONFIG_MAP = "inferenceservice-config"
GATEWAY = "kserve/kserve-ingress-gateway"
#: The kustomization KServe's own release manifests are built from (kserve.yaml of a release).
OVERLAY = "overlays/standalone/kserve"
RUNTIMES = "runtimes"
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
#: What the `restricted` Pod Security Standard asks of a container (the Pod sets runAsNonRoot and seccomp too)
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"}}


@dataclass(frozen=True)
class Images:
    controller: str = "modelops/kserve-controller:dev"
    agent: str = "modelops/kserve-agent:dev"
    storage_initializer: str = "modelops/kserve-storage-initializer:dev"

    def all(self) -> tuple[str, ...]:
        return (self.controller, self.agent, self.storage_initializer)


@dataclass(frozen=True)
class Certs:
    """PEM text: the CA bundle the API server trusts, and the webhook server's certificate and key."""

    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class Options:
    images: Images = field(default_factory=Images)
    gateway: str = GATEWAY
    ingress_domain: str = "example.com"
    default_mode: str = "Standard"
    #: "pod" (a Deployment behind the webhook Service) or "host" (a process on this machine, webhooks by URL)
    manager: str = "pod"
    #: for manager="host": the address the API server reaches the webhook server at
    host_webhook: str = ""
    agent_cpu_request: str = "10m"
    #: KServe's manifests run the (single-replica) manager with --leader-elect. Its 5 s lease renewals failed on
    #: a loaded 2-core node (API server answering in > 5 s), and the manager exited ("leader election lost") and
    #: crash-looped; one replica needs no election, so it is off unless asked for.
    leader_elect: bool = False
    storage_initializer_cpu_request: str = "10m"


# ------------------------------------------------------------------------------------------------ pure
def _edit_json(data: Mapping[str, str], key: str, edit: Callable[[dict[str, Any]], None]) -> str:
    text = "\n".join(ln for ln in str(data.get(key) or "{}").splitlines() if not ln.strip().startswith("#"))
    value = json.loads(text)
    edit(value)
    return json.dumps(value, indent=2)


def configure(cm: dict[str, Any], opts: Options) -> dict[str, Any]:
    """inferenceservice-config with our defaults (see the module docstring)."""
    out = copy.deepcopy(cm)
    data = out.setdefault("data", {})

    def deploy(v: dict[str, Any]) -> None:
        v["defaultDeploymentMode"] = opts.default_mode

    def ingress(v: dict[str, Any]) -> None:
        v.update({"enableGatewayApi": True, "kserveIngressGateway": opts.gateway, "ingressDomain": opts.ingress_domain,
                  "ingressClassName": "", "disableIstioVirtualHost": True})

    def image(name: str, cpu: str) -> Callable[[dict[str, Any]], None]:
        def set_(v: dict[str, Any]) -> None:
            v["image"] = name
            v["cpuRequest"] = cpu
        return set_

    def storage(v: dict[str, Any]) -> None:
        v.update({"image": opts.images.storage_initializer, "cpuRequest": opts.storage_initializer_cpu_request,
                  # no modelcar sidecar (an OCI-image model feature; its image is not built here)
                  "enableModelcar": False})

    data["deploy"] = _edit_json(data, "deploy", deploy)
    data["ingress"] = _edit_json(data, "ingress", ingress)
    for key in ("agent", "logger", "batcher"):
        data[key] = _edit_json(data, key, image(opts.images.agent, opts.agent_cpu_request))
    data["storageInitializer"] = _edit_json(data, "storageInitializer", storage)
    return out


def _webhook_path(hook: Mapping[str, Any]) -> str:
    return str(((hook.get("clientConfig") or {}).get("service") or {}).get("path") or "/")


def kserve_manifests(docs: Iterable[Mapping[str, Any]], certs: Certs, opts: Options) -> list[dict[str, Any]]:
    """KServe's rendered manifests, changed as the module docstring says (pure)."""
    if opts.manager not in ("pod", "host"):
        raise ValueError(f"manager={opts.manager!r}: expected pod or host")
    if opts.manager == "host" and not opts.host_webhook:
        raise ValueError("manager=host needs host_webhook (host:port the API server reaches the webhooks at)")
    ca_b64 = base64.b64encode(certs.ca.encode()).decode()
    out: list[dict[str, Any]] = []
    seen_manager = False
    for src in docs:
        doc = copy.deepcopy(dict(src))
        kind = doc.get("kind")
        meta = doc.setdefault("metadata", {})
        if str(doc.get("apiVersion", "")).startswith("cert-manager.io/"):
            continue  # Issuer / Certificate: the Secret below replaces them
        (meta.get("annotations") or {}).pop("cert-manager.io/inject-ca-from", None)
        if kind in WEBHOOK_KINDS:
            for hook in doc.get("webhooks") or []:
                cc = hook.setdefault("clientConfig", {})
                if opts.manager == "host":
                    path = _webhook_path(hook)
                    cc.pop("service", None)
                    cc["url"] = f"https://{opts.host_webhook}{path}"
                cc["caBundle"] = ca_b64
        elif kind == "CustomResourceDefinition":
            conv = (doc.get("spec") or {}).get("conversion") or {}
            if conv.get("strategy") == "Webhook":
                cc = conv.setdefault("webhook", {}).setdefault("clientConfig", {})
                cc["caBundle"] = ca_b64
            doc.pop("status", None)
        elif kind == "Deployment" and meta.get("name") == MANAGER:
            seen_manager = True
            if opts.manager == "host":
                continue
            pod = doc["spec"]["template"]["spec"]
            pod["containers"] = [c for c in pod["containers"] if c.get("name") != "kube-rbac-proxy"]
            for c in pod["containers"]:
                if c.get("name") == "manager":
                    c["image"] = opts.images.controller
                    c["imagePullPolicy"] = "IfNotPresent"
                    if not opts.leader_elect:
                        c["args"] = [a for a in c.get("args") or [] if a != "--leader-elect"]
                    # the manifests give it 100m, which a busy 2-core node turns into minutes of start-up
                    c.setdefault("resources", {}).setdefault("limits", {})["cpu"] = "1"
        elif kind == "ConfigMap" and meta.get("name") == CONFIG_MAP:
            doc = configure(doc, opts)
        elif kind == "ClusterStorageContainer":
            # since v0.16 the init container for http(s)://, s3://, gs://, ... comes from here, not from the
            # ConfigMap's storageInitializer.image (seen on the node: kserve/storage-initializer:latest was injected)
            c = doc.setdefault("spec", {}).setdefault("container", {})
            c["image"] = opts.images.storage_initializer
            c["imagePullPolicy"] = "IfNotPresent"
            c.setdefault("resources", {}).setdefault("requests", {})["cpu"] = opts.storage_initializer_cpu_request
            # KServe injects this container as written here: without a securityContext a namespace that
            # enforces the `restricted` Pod Security Standard refuses every predictor Pod that downloads its model
            c["securityContext"] = dict(RESTRICTED_CONTAINER)
        elif kind == "Service" and meta.get("name") in (WEBHOOK_SERVICE, f"{MANAGER}-metrics-service") \
                and opts.manager == "host":
            continue
        out.append(doc)
    if not seen_manager:
        raise ValueError(f"the rendered manifests have no Deployment {MANAGER}: not KServe's config/?")
    out.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": WEBHOOK_SECRET, "namespace": NAMESPACE,
                             "labels": {"app.kubernetes.io/name": "kserve", "app.kubernetes.io/managed-by": "modelops-e2e"}},
                "data": {"tls.crt": base64.b64encode(certs.cert.encode()).decode(),
                         "tls.key": base64.b64encode(certs.key.encode()).decode(),
                         "ca.crt": ca_b64}})
    return out


HASH_ANNOTATION = "modelops.dev/manifest-hash"


def with_hash(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`doc` annotated with the sha256 of its content (pure), so an unchanged CRD can be recognised cheaply."""
    out = copy.deepcopy(dict(doc))
    ann = out.setdefault("metadata", {}).setdefault("annotations", {})
    ann.pop(HASH_ANNOTATION, None)
    ann[HASH_ANNOTATION] = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()[:20]
    return out


def changed(docs: list[dict[str, Any]], applied: Mapping[str, str]) -> list[dict[str, Any]]:
    """The docs whose hash differs from the one the cluster holds ({name: hash}) (pure)."""
    return [d for d in docs if applied.get(d["metadata"]["name"]) != d["metadata"]["annotations"][HASH_ANNOTATION]]


def split_crds(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    return crds, [d for d in docs if d.get("kind") != "CustomResourceDefinition"]


# ---------------------------------------------------------------------------------------- side effects
def render(kubectl: Callable[..., str], config_dir: Path, overlay: str = OVERLAY) -> list[dict[str, Any]]:
    """`kubectl kustomize` of one of KServe's kustomizations (kubectl's built-in kustomize)."""
    text = kubectl("kustomize", str(config_dir / overlay), timeout=300)
    return [d for d in yaml.safe_load_all(text) if d]


def webhook_certs(pki_root: Path, hosts: tuple[str, ...]) -> Certs:
    """A serving certificate for the webhook Service (and `hosts`), signed by the CA under `pki_root`: the
    local cluster's own CA when that directory is the cluster's, else a CA made there for this install."""
    from modelops_dev.cluster.pki import Pki

    pki = Pki(pki_root)
    names = (f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc", f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc.cluster.local",
             f"{WEBHOOK_SERVICE}.{NAMESPACE}", *hosts)
    tag = "-".join(h.replace(":", "_") for h in hosts) or "svc"
    pair = pki.issue(f"kserve-webhook-{tag}", f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc", server=True, hosts=names)
    return Certs(ca=pki.ca.cert.read_text(), cert=pair.cert.read_text(), key=pair.key.read_text())


def _dry_run_probe(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "modelops-webhook-probe", "namespace": namespace,
                         "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://probe/m"}}}}


def webhooks_answer(kubectl_run: Callable[..., Any], namespace: str = "default") -> tuple[bool, str]:
    """A server-side dry-run create of a small InferenceService: True once KServe's webhooks answer
    (a connection error or an unknown authority while the manager starts means not yet)."""
    proc = kubectl_run("create", "--dry-run=server", "-o", "json", "-f", "-",
                       stdin=json.dumps(_dry_run_probe(namespace)))
    if proc.returncode != 0:
        return False, (proc.stderr or proc.stdout).strip()[-500:]
    # the webhooks' failurePolicy is Fail: an accepted dry-run means both the defaulter and the validator answered
    return True, ""


@dataclass
class Installer:
    """Applies the manifests through `kubectl` (server-side apply) and waits for the manager and webhooks."""

    kubectl: Callable[..., str]
    kubectl_run: Callable[..., Any]
    progress: Callable[[str], None] = print

    def apply(self, docs: list[dict[str, Any]], what: str, attempts: int = 3) -> None:
        body = "\n---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
        for attempt in range(1, attempts + 1):
            try:
                self.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=modelops-e2e", "-f", "-",
                             stdin=body, timeout=600)
                break
            except RuntimeError as exc:
                # KServe's CRDs are megabytes: on a loaded API server one apply can pass its 60 s request timeout.
                # Server-side apply is idempotent, so the same apply is tried again.
                if attempt == attempts or "Timeout" not in str(exc):
                    raise
                self.progress(f"  {what}: the API server timed out (attempt {attempt}/{attempts}); applying again")
        self.progress(f"  {what}: {len(docs)} objects applied (server-side)")

    def applied_hashes(self, kind: str, names: list[str]) -> dict[str, str]:
        """{name: modelops.dev/manifest-hash} of the objects of `kind` the cluster holds among `names`."""
        path = "{.metadata.annotations." + HASH_ANNOTATION.replace(".", "\\.") + "}"
        out = self.kubectl("get", kind, *names, "--ignore-not-found",
                           "-o", "jsonpath={range .items[*]}{.metadata.name}{\"\\t\"}" + path + "{\"\\n\"}{end}",
                           timeout=300)
        return dict(ln.split("\t", 1) for ln in out.splitlines() if "\t" in ln)

    def wait_crds(self, crds: list[dict[str, Any]], timeout: float = 120) -> None:
        names = [c["metadata"]["name"] for c in crds]
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending and time.monotonic() < deadline:
            out = json.loads(self.kubectl("get", "crd", *pending, "-o", "json"))
            pending = [i["metadata"]["name"] for i in out.get("items", [])
                       if not any(c["type"] == "Established" and c["status"] == "True"
                                  for c in (i.get("status") or {}).get("conditions") or [])]
            if pending:
                time.sleep(1)
        if pending:
            raise TimeoutError(f"CRDs not Established after {timeout:.0f}s: {pending}")

    def wait_webhooks(self, timeout: float = 600, namespace: str = "default") -> float:
        t0 = time.monotonic()
        last = ""
        while time.monotonic() - t0 < timeout:
            ok, last = webhooks_answer(self.kubectl_run, namespace)
            if ok:
                return time.monotonic() - t0
            time.sleep(3)
        raise TimeoutError(f"KServe's webhooks did not answer within {timeout:.0f}s; last: {last}")


def install(installer: Installer, config_dir: Path, certs: Certs, opts: Options,
            start_host_manager: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Render, change, apply (CRDs first), start the manager, wait for the webhooks; the ClusterServingRuntimes
    last (KServe's own webhook validates them). Returns the applied objects. With manager="host" the caller's
    `start_host_manager` starts the process once its ConfigMap exists (KServe reads it at start-up)."""
    t0 = time.monotonic()
    docs = kserve_manifests(render(installer.kubectl, config_dir), certs, opts)
    runtimes = render(installer.kubectl, config_dir, RUNTIMES)
    crds, rest = split_crds(docs)
    crds = [with_hash(c) for c in crds]
    # KServe's CRDs are megabytes of schema: a server-side apply of them costs the API server tens of seconds
    # even when nothing changed, so the ones it already holds unchanged (same content hash) are not sent again
    todo = changed(crds, installer.applied_hashes("crd", [c["metadata"]["name"] for c in crds]))
    if todo:
        installer.apply(todo, "KServe CRDs")
    else:
        installer.progress(f"  KServe CRDs: {len(crds)} unchanged")
    installer.wait_crds(crds)
    installer.apply(rest, f"KServe (manager as a {opts.manager} process, webhooks, RBAC, inferenceservice-config)")
    if opts.manager == "pod":
        installer.kubectl("rollout", "status", "-n", NAMESPACE, f"deployment/{MANAGER}", "--timeout=600s",
                          timeout=620)
    else:
        if start_host_manager is None:
            raise ValueError("manager=host needs start_host_manager")
        start_host_manager()
    waited = installer.wait_webhooks()
    installer.progress(f"  KServe webhooks answer ({waited:.0f}s after the manager started)")
    installer.apply(runtimes, "KServe ClusterServingRuntimes")
    installer.progress(f"  KServe installed in {time.monotonic() - t0:.0f}s")
    return docs + runtimes


def host_manager(binary: Path, kubeconfig: Path, certs: Certs, work: Path, webhook_port: int, probe_port: int,
                 metrics_port: int) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) of the manager as a host process (manager="host"): KServe's args
    (config/default) with ports of our choosing. controller-runtime reads the serving certificate from
    $TMPDIR/k8s-webhook-server/serving-certs/tls.{crt,key} (its default CertDir), KServe its own namespace
    from POD_NAMESPACE, and the client config from KUBECONFIG."""
    cert_dir = work / "tmp" / "k8s-webhook-server" / "serving-certs"
    cert_dir.mkdir(parents=True, exist_ok=True)
    (cert_dir / "tls.crt").write_text(certs.cert)
    (cert_dir / "tls.key").write_text(certs.key)
    (cert_dir / "tls.key").chmod(0o600)
    argv = [str(binary), f"--metrics-addr=127.0.0.1:{metrics_port}", f"--health-probe-addr=127.0.0.1:{probe_port}",
            f"--webhook-port={webhook_port}"]
    env = {"KUBECONFIG": str(kubeconfig), "TMPDIR": str(work / "tmp"), "POD_NAMESPACE": NAMESPACE,
           "SECRET_NAME": WEBHOOK_SECRET}
    return argv, env


def run_kubectl(kubectl_bin: str, env: Mapping[str, str]) -> tuple[Callable[..., str], Callable[..., Any]]:
    """(kubectl returning stdout or raising, kubectl returning the CompletedProcess) for the Installer."""
    def run(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([kubectl_bin, *args], env=dict(env), text=True, capture_output=True, input=stdin,
                              timeout=timeout)

    def check(*args: str, stdin: str | None = None, timeout: float = 120) -> str:
        proc = run(*args, stdin=stdin, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:4])}: {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    return check, run
