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
    t0 = time.monotonic()
    last_line = ["starting"]
    done = threading.Event()

    def beat() -> None:
        while not done.wait(heartbeat):
            progress(f"  ... {time.monotonic() - t0:5.0f}s, still: {last_line[0]}")

    ticker = threading.Thread(target=beat, daemon=True)
    ticker.start()
    proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-40:], line]
        if line.startswith("["):
            last_line[0] = line.split("] ", 1)[-1]
        progress(f"  {line}")
    rc = proc.wait()
    done.set()
    if rc != 0:
        raise ClusterError(f"building the Kubernetes binaries failed (exit {rc}):\n" + "\n".join(tail))
    progress(f"built in {time.monotonic() - t0:.0f}s")
    return versions.bin_dir()
