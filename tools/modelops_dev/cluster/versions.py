"""The one place where the versions of the Kubernetes toolchain are pinned.

Kubernetes 1.37.2 is the newest release whose go line (1.26.0) the installed Go satisfies;
etcd comes from the same module graph (3.7.x, k8s.io/kubernetes' own requirement).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Kubernetes release the control plane, kubelet and kubectl are built at.
K8S_VERSION = os.environ.get("MODELOPS_K8S_VERSION", "v1.37.2")
#: Helm release installed with `go install`.
HELM_VERSION = os.environ.get("MODELOPS_HELM_VERSION", "v3.22.0")


def cache_root() -> Path:
    """Where builds are cached, keyed by version: $MODELOPS_CACHE or ~/.cache/modelops."""
    return Path(os.environ.get("MODELOPS_CACHE", Path.home() / ".cache" / "modelops"))


def bin_dir() -> Path:
    return cache_root() / "k8s" / K8S_VERSION / "bin"


def build_stamp() -> Path:
    return cache_root() / "k8s" / K8S_VERSION / f".complete-{HELM_VERSION}"

#: CoreDNS, built from its Go module for the node's cluster DNS (`modelops cluster up --node`).
COREDNS_VERSION = os.environ.get("MODELOPS_COREDNS_VERSION", "v1.15.0")
#: The sandbox ("pause") image tag Kubernetes 1.37 expects (kubeadm's constants.PauseVersion).
PAUSE_VERSION = "3.10.2"

#: KServe release whose controller manager, agent and install manifests the e2e tier builds and installs
#: (cluster/build_serving.sh). v0.20.0 is the newest release the Go module proxy serves here.
KSERVE_VERSION = os.environ.get("MODELOPS_KSERVE_VERSION", "v0.20.0")
#: Gateway API CRDs (standard channel): the version KServe's go.mod requires (build_serving.sh checks it).
GATEWAY_API_VERSION = os.environ.get("MODELOPS_GATEWAY_API_VERSION", "v1.5.1")
#: Traefik, the Gateway API implementation of the e2e tier: pure Go (no Envoy binary), honours weighted
#: HTTPRoute backendRefs. v3.6.12 is the newest v3 whose module builds from the proxy alone: from v3.7 on its
#: go.mod replaces github.com/traefik/traefik/dynamic/ext with a directory that is its own module and is not
#: published on the proxy.
TRAEFIK_VERSION = os.environ.get("MODELOPS_TRAEFIK_VERSION", "v3.6.12")
#: The Prometheus Operator (cmd/operator) and its CRDs (example/prometheus-operator-crd), from
#: github.com/prometheus-operator/prometheus-operator. v0.93.1 is the newest release the Go module proxy serves
#: whole here: v0.94.x and v0.95.x are served, but their pkg/client submodule (which the main module needs) is
#: not (403 "not available"), and the proxy does not serve v0.95.x of the main module at all.
PROMETHEUS_OPERATOR_VERSION = os.environ.get("MODELOPS_PROMETHEUS_OPERATOR_VERSION", "v0.93.1")


def serving_dir(part: str) -> Path:
    """Cache directory of one serving part (kserve, gateway-api, traefik, prometheus-operator) at its pinned
    version."""
    version = {"kserve": KSERVE_VERSION, "gateway-api": GATEWAY_API_VERSION, "traefik": TRAEFIK_VERSION,
               "prometheus-operator": PROMETHEUS_OPERATOR_VERSION}[part]
    return cache_root() / part / version
