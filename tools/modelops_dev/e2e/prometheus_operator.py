"""The Prometheus Operator on any cluster the kubeconfig names, installed from its own release manifests.

What is installed (the version pinned in modelops_dev/cluster/versions.py, built by
`modelops cluster build-serving prometheus-operator` into ~/.cache/modelops/prometheus-operator/<version>):

- the module's CRDs (`example/prometheus-operator-crd`: Prometheus, ServiceMonitor, PodMonitor, PrometheusRule,
  ...), server-side applied (several are far over the client-side apply annotation limit) and waited for;
- the module's RBAC and Deployment (`example/rbac/prometheus-operator`), changed in `operator_manifests` (pure)
  only: moved into `namespace`, the operator image is ours (built from the module's cmd/operator) with
  `imagePullPolicy: IfNotPresent`, and the config-reloader image is the caller's;
- `operator="host"`: for a control plane without a node (the cluster tier) the operator runs as a host process
  on this machine with the kubeconfig's credentials (it reads $KUBECONFIG) and the Deployment is left out. It
  still writes the objects a Prometheus runs on (the config Secret, the rule-file ConfigMaps, the StatefulSet).

What the operator generates for a `Prometheus` named P in namespace N (what the tests and the e2e loop read):
the Secret `prometheus-P` (key `prometheus.yaml.gz`: the gzipped scrape configuration, one job per
ServiceMonitor/PodMonitor endpoint named `serviceMonitor/NS/NAME/I` or `podMonitor/NS/NAME/I`) and the
ConfigMaps `prometheus-P-rulefiles-K` (one key per PrometheusRule, `NS-NAME-UID.yaml`).
"""

from __future__ import annotations

import copy
import gzip
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelops_dev.e2e.kserve import Installer, split_crds

NAMESPACE = "monitoring"
DEPLOYMENT = "prometheus-operator"
CONTAINER = "prometheus-operator"
CLUSTER_SCOPED = frozenset({"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"})


@dataclass(frozen=True)
class Options:
    namespace: str = NAMESPACE
    image: str = "modelops/prometheus-operator:dev"
    config_reloader_image: str = "modelops/prometheus-config-reloader:dev"
    #: "pod" (the release's Deployment) or "host" (a process on this machine; the Deployment is left out)
    operator: str = "pod"


# ------------------------------------------------------------------------------------------------ pure
def _set_arg(args: list[str], flag: str, value: str) -> list[str]:
    kept = [a for a in args if not a.startswith(f"{flag}=")]
    return [*kept, f"{flag}={value}"]


def operator_manifests(docs: Iterable[Mapping[str, Any]], opts: Options) -> list[dict[str, Any]]:
    """The release's RBAC/Deployment/Service manifests, changed as the module docstring says (pure)."""
    if opts.operator not in ("pod", "host"):
        raise ValueError(f"operator={opts.operator!r}: expected pod or host")
    out: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": opts.namespace}}]
    seen_deployment = False
    for src in docs:
        doc = copy.deepcopy(dict(src))
        kind = doc.get("kind")
        meta = doc.setdefault("metadata", {})
        if kind == "ServiceMonitor":
            continue  # the operator's self-monitoring: not part of what modelops relies on
        if kind not in CLUSTER_SCOPED:
            meta["namespace"] = opts.namespace
        if kind == "ClusterRoleBinding":
            for subject in doc.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = opts.namespace
        if kind == "Deployment" and meta.get("name") == DEPLOYMENT:
            seen_deployment = True
            if opts.operator == "host":
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if c.get("name") == CONTAINER:
                    c["image"] = opts.image
                    c["imagePullPolicy"] = "IfNotPresent"
                    c["args"] = _set_arg(list(c.get("args") or []), "--prometheus-config-reloader",
                                         opts.config_reloader_image)
        if kind == "Service" and opts.operator == "host":
            continue  # it selects the Deployment's Pods
        out.append(doc)
    if not seen_deployment:
        raise ValueError(f"the manifests have no Deployment {DEPLOYMENT}: not the module's example/rbac/prometheus-operator?")
    return out


def host_operator(binary: Path, kubeconfig: Path, listen_port: int, namespaces: Iterable[str] = (),
                  config_reloader_image: str = Options.config_reloader_image) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) of the operator as a host process: the client config from $KUBECONFIG
    (the operator's pkg/k8s reads it when --apiserver is not given), /metrics and /healthz on 127.0.0.1."""
    argv = [str(binary), f"--web.listen-address=127.0.0.1:{listen_port}",
            f"--prometheus-config-reloader={config_reloader_image}",
            # no kubelet Service/Endpoints (that is for scraping kubelets, not used here)
            "--kubelet-service=",
            # a Prometheus without selectors gets no configuration instead of an unmanaged one
            "--disable-unmanaged-prometheus-configuration=true"]
    ns = list(namespaces)
    if ns:
        argv.append(f"--namespaces={','.join(ns)}")
    return argv, {"KUBECONFIG": str(kubeconfig)}


def generated_config(secret: Mapping[str, Any]) -> dict[str, Any]:
    """The Prometheus configuration in the operator's `prometheus-P` Secret (gzipped, base64 in .data)."""
    import base64

    data = (secret.get("data") or {}).get("prometheus.yaml.gz")
    if not data:
        raise ValueError(f"Secret {secret.get('metadata', {}).get('name')} has no prometheus.yaml.gz")
    parsed = yaml.safe_load(gzip.decompress(base64.b64decode(data)))
    if not isinstance(parsed, dict):
        raise ValueError("prometheus.yaml.gz is not a YAML mapping")
    return parsed


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reads a bare `=` (YAML 1.1's "value" tag) as a tag it cannot construct; the
    operator's CRDs list `=` among enum values (relabel actions). YAML 1.2, which Kubernetes reads, has a string."""


def _value_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node)) if isinstance(node, yaml.ScalarNode) else str(node.value)


_Loader.add_constructor("tag:yaml.org,2002:value", _value_as_string)


# ---------------------------------------------------------------------------------------- side effects
def load_dir(directory: Path) -> list[dict[str, Any]]:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is missing; run: modelops cluster build-serving prometheus-operator")
    docs: list[dict[str, Any]] = []
    for f in sorted(directory.glob("*.yaml")):
        docs += [d for d in yaml.load_all(f.read_text(), Loader=_Loader) if d]
    return docs


def install(installer: Installer, cache_dir: Path, opts: Options,
            start_host_operator: Callable[[], None] | None = None, timeout: float = 600) -> list[dict[str, Any]]:
    """Apply the CRDs (server-side, waited for Established), then the operator's namespace, RBAC and Deployment;
    wait for the Deployment (operator="pod") or start the host process (operator="host")."""
    t0 = time.monotonic()
    crds, _ = split_crds(load_dir(cache_dir / "crds"))
    if not crds:
        raise ValueError(f"no CustomResourceDefinitions in {cache_dir / 'crds'}")
    installer.apply(crds, "Prometheus Operator CRDs")
    installer.wait_crds(crds)
    rest = operator_manifests(load_dir(cache_dir / "rbac"), opts)
    installer.apply(rest, f"Prometheus Operator (as a {opts.operator} process, RBAC)")
    if opts.operator == "pod":
        installer.kubectl("rollout", "status", "-n", opts.namespace, f"deployment/{DEPLOYMENT}",
                          f"--timeout={int(timeout)}s", timeout=timeout + 20)
    else:
        if start_host_operator is None:
            raise ValueError("operator=host needs start_host_operator")
        start_host_operator()
    installer.progress(f"  Prometheus Operator installed in {time.monotonic() - t0:.0f}s")
    return crds + rest


def wait_generated(kubectl: Callable[..., str], namespace: str, prometheus: str,
                   ready: Callable[[dict[str, Any]], bool], timeout: float = 120) -> dict[str, Any]:
    """Poll the operator's config Secret for `prometheus` until `ready(config)`; return the configuration."""
    deadline = time.monotonic() + timeout
    last: Any = "no Secret yet"
    while time.monotonic() < deadline:
        try:
            secret = json.loads(kubectl("get", "secret", "-n", namespace, f"prometheus-{prometheus}", "-o", "json"))
            config = generated_config(secret)
            if ready(config):
                return config
            last = [j.get("job_name") for j in config.get("scrape_configs") or []]
        except (RuntimeError, ValueError) as e:
            last = str(e)[-300:]
        time.sleep(1)
    raise TimeoutError(f"the operator did not generate the expected configuration for {namespace}/{prometheus} "
                       f"within {timeout:.0f}s; last: {last}")
