# ruff: noqa: F811  (pytest injects the imported fixtures by parameter name)
"""Fixtures of the rollout cluster tests: the shared control plane, KServe's CRD + controller stand-in, a real
MLflow server, a real Prometheus scraping real model-server processes, and the operator process.

Prometheus labels each model server target with namespace / isvc / side (in a cluster these come from pod
labels through relabelling); the analysis queries select on them. A load generator splits requests between
the stable and canary servers by the weights the InferenceService status reports (what the KServe/Knative
router does in a cluster).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.rollout.helpers import ModelServers, PrometheusProc
from tests.fixtures.cluster import kube, kube_crds, namespace  # noqa: F401
from tests.fixtures.kserve import kserve  # noqa: F401
from tests.fixtures.mlflow_server import mlflow_server  # noqa: F401
from tests.fixtures.operator import Operator


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProc]:
    prom = PrometheusProc(tmp_path_factory.mktemp("prometheus"))
    prom.start()
    yield prom
    prom.stop()


@pytest.fixture
def servers(prometheus: PrometheusProc, tmp_path: Path) -> Iterator[ModelServers]:
    s = ModelServers(tmp_path, prometheus)
    yield s
    s.stop()
    prometheus.set_targets([])


def _operator(kube: Any, log: Path, env: dict[str, str]) -> Iterator[Operator]:
    op = Operator(kube, log)
    op.extra_env = {"MODELOPS_LOG_LEVEL": "INFO", **env}
    op.start()
    yield op
    if op.proc and op.proc.poll() is None:
        op.kill()


@pytest.fixture
def uri_operator(kube_crds: Any, kserve: Any, tmp_path: Path) -> Iterator[Operator]:
    """The operator for ModelDeployments of plain storage URIs (no MLflow, no Prometheus)."""
    yield from _operator(kube_crds, tmp_path / "operator.log", {})


@pytest.fixture
def rollout_operator(kube_crds: Any, kserve: Any, mlflow_server: Any, prometheus: PrometheusProc,
                     tmp_path: Path) -> Iterator[Operator]:
    """The operator wired to the test's real MLflow server and Prometheus."""
    yield from _operator(kube_crds, tmp_path / "operator.log", {
        "MODELOPS_MLFLOW_TRACKING_URI": mlflow_server.uri, "MODELOPS_PROMETHEUS_URL": prometheus.url})


