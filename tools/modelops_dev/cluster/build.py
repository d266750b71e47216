"""Build (once per version) the Kubernetes binaries, etcd and helm from the Go module proxy, with progress."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from importlib import resources
from pathlib import Path

from modelops_dev.cluster import versions
from modelops_dev.cluster.process import ClusterError, Progress

#: Everything `modelops cluster` and the tests run from the build cache.
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
            "kubectl", "helm")


def binaries_ready() -> bool:
    return versions.build_stamp().exists() and all((versions.bin_dir() / b).exists() for b in BINARIES)


def ensure_binaries(progress: Progress = print, heartbeat: float = 30.0) -> Path:
    """Return the bin directory, building what is missing. A warm cache returns at once."""
    if binaries_ready():
        return versions.bin_dir()
    if shutil.which("go") is None:
        raise ClusterError("Go is required to build Kubernetes from the Go module proxy; install Go >= 1.26")
    script = resources.files("modelops_dev.cluster").joinpath("build_k8s.sh")
    env = {**os.environ, "K8S_VERSION": versions.K8S_VERSION, "HELM_VERSION": versions.HELM_VERSION,
           "MODELOPS_CACHE": str(versions.cache_root())}
    progress(f"building Kubernetes {versions.K8S_VERSION}, etcd and helm {versions.HELM_VERSION} from the "
             f"Go module proxy into {versions.bin_dir()} (cold: tens of minutes on 2 cores; cached by version)")
    _run_script(script, env, progress, heartbeat, "building the Kubernetes binaries")
    return versions.bin_dir()


#: What cluster/build_serving.sh leaves in the cache, per part (relative to versions.serving_dir(part)).
SERVING_OUTPUTS = {"kserve": ("bin/manager", "bin/agent", "config/crd/full"),
                   "gateway-api": ("standard/gateway.networking.k8s.io_httproutes.yaml",),
                   "traefik": ("bin/traefik",),
                   "prometheus-operator": ("bin/operator", "bin/prometheus-config-reloader",
                                           "crds/monitoring.coreos.com_prometheuses.yaml",
                                           "rbac/prometheus-operator-cluster-role.yaml")}


def serving_ready(part: str) -> bool:
    root = versions.serving_dir(part)
    return (root / ".complete").exists() and all((root / p).exists() for p in SERVING_OUTPUTS[part])


def ensure_serving(parts: tuple[str, ...] = ("gateway-api", "kserve", "traefik"), progress: Progress = print,
                   heartbeat: float = 30.0) -> dict[str, Path]:
    """Build (once per version) KServe's manager and agent, the Gateway API CRDs, Traefik and (asked for by
    name) the Prometheus Operator with its CRDs; return their cache directories. A warm cache returns at once."""
    unknown = set(parts) - set(SERVING_OUTPUTS)
    if unknown:
        raise ClusterError(f"unknown serving parts {sorted(unknown)}; known: {list(SERVING_OUTPUTS)}")
    todo = [p for p in parts if not serving_ready(p)]
    if todo:
        if shutil.which("go") is None:
            raise ClusterError(f"Go is required to build {', '.join(todo)} from the Go module proxy; "
                               "install Go >= 1.26")
        script = resources.files("modelops_dev.cluster").joinpath("build_serving.sh")
        env = {**os.environ, "KSERVE_VERSION": versions.KSERVE_VERSION,
               "GATEWAY_API_VERSION": versions.GATEWAY_API_VERSION, "TRAEFIK_VERSION": versions.TRAEFIK_VERSION,
               "PROMETHEUS_OPERATOR_VERSION": versions.PROMETHEUS_OPERATOR_VERSION,
               "MODELOPS_CACHE": str(versions.cache_root()), "SERVING_PARTS": " ".join(todo)}
        pinned = {"kserve": f"KServe {versions.KSERVE_VERSION}",
                  "gateway-api": f"Gateway API {versions.GATEWAY_API_VERSION}",
                  "traefik": f"Traefik {versions.TRAEFIK_VERSION}",
                  "prometheus-operator": f"Prometheus Operator {versions.PROMETHEUS_OPERATOR_VERSION}"}
        progress(f"building {', '.join(pinned[p] for p in todo)} from the Go module proxy into "
                 f"{versions.cache_root()} (cold: tens of minutes on 2 cores; cached by version)")
        _run_script(script, env, progress, heartbeat, "building the serving stack")
    return {p: versions.serving_dir(p) for p in parts}


def _run_script(script: object, env: dict[str, str], progress: Progress, heartbeat: float, what: str) -> None:
    """Run a build script, echoing its lines (but Go's per-module download lines) with a heartbeat naming its
    current step; a failure raises with the script's last lines."""
    t0 = time.monotonic()
    last_line = ["starting"]
    done = threading.Event()

    def beat() -> None:
        while not done.wait(heartbeat):
            progress(f"  ... {time.monotonic() - t0:5.0f}s, still: {last_line[0]}")

    threading.Thread(target=beat, daemon=True).start()
    proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-40:], line]
        if line.startswith("["):
            last_line[0] = line.split("] ", 1)[-1]
        if not line.startswith("go: downloading"):
            progress(f"  {line}")
    rc = proc.wait()
    done.set()
    if rc != 0:
        raise ClusterError(f"{what} failed (exit {rc}):\n" + "\n".join(tail))
    progress(f"  {what}: {time.monotonic() - t0:.0f}s")
