"""Rendering the modelops chart with the helm binary that `modelops cluster build` puts in the build cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_dev.cluster.versions import PROMETHEUS_OPERATOR_VERSION

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelops"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
#: Kubernetes version `helm template` assumes (the version the local control plane is built at).
KUBE_VERSION = "1.37.2"
#: The Go module whose example/ holds the Prometheus Operator CRDs the chart's monitoring objects need.
PROM_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
#: The version `modelops cluster build-serving prometheus-operator` builds (the CRDs the operator runs with).
PROM_OPERATOR_VERSION = PROMETHEUS_OPERATOR_VERSION


def helm_bin() -> str:
    from modelops_dev.cluster import versions

    path = versions.bin_dir() / "helm"
    if not path.exists():
        found = shutil.which("helm")
        if found is None:
            pytest.fail(f"helm is not built ({path}); run: modelops cluster build", pytrace=False)
        return found
    return str(path)


def helm(*args: str, env: dict[str, str] | None = None, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([helm_bin(), *args], text=True, capture_output=True, timeout=timeout,
                          env=env or dict(os.environ))
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def template_args(values: Sequence[Path] = (), sets: Sequence[str] = (), release: str = "modelops",
                  namespace: str = "modelops", api_versions: Sequence[str] = ()) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    for a in api_versions:
        args += ["--api-versions", a]
    return args


def render(values: Sequence[Path] = (), sets: Sequence[str] = (), release: str = "modelops",
           namespace: str = "modelops", api_versions: Sequence[str] = (),
           include_crds: bool = False) -> list[dict[str, Any]]:
    args = template_args(values, sets, release, namespace, api_versions)
    if include_crds:
        args.append("--include-crds")
    out = helm(*args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pod_specs(objs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, pod template) of every workload in a rendering."""
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]
        elif o["kind"] == "Pod":
            yield f"Pod/{o['metadata']['name']}", o


def prometheus_operator_crds() -> Path:
    """The CRD directory of the Prometheus Operator Go module, downloaded through the Go module proxy."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is required to fetch the Prometheus Operator CRDs from the Go module proxy "
                    f"(go mod download {PROM_OPERATOR_MODULE}@{PROM_OPERATOR_VERSION})", pytrace=False)
    proc = subprocess.run([go, "mod", "download", "-json", f"{PROM_OPERATOR_MODULE}@{PROM_OPERATOR_VERSION}"],
                          text=True, capture_output=True, timeout=600, cwd="/",
                          env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"})
    if proc.returncode != 0:
        pytest.fail(f"go mod download {PROM_OPERATOR_MODULE}@{PROM_OPERATOR_VERSION} failed:\n{proc.stdout}"
                    f"{proc.stderr}", pytrace=False)
    crds = Path(json.loads(proc.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    assert crds.is_dir(), crds
    return crds
