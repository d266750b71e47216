"""Fixtures of the rollout cluster tests: the shared control plane, KServe's CRD + controller stand-in, a real
MLflow server, a real Prometheus scraping real `modelops serve` processes, and the operator process.

The model servers serve real scikit-learn models built like the trainer writes them (tests/integration/serving/
model_dirs.py), registered in MLflow; each server loads the version of its side from the registry. Prometheus
labels each server target with namespace / isvc / side (in a cluster these come from pod labels through
relabelling); the analysis queries select on them and on the server's own labels (status, ...). A load
generator splits requests between the stable and canary servers by the weights the InferenceService status
reports (what the KServe/Knative router does in a cluster).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.rollout.helpers import ModelServers, PrometheusProc
from tests.fixtures.operator import Operator
from tests.integration.serving import model_dirs


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProc]:
    prom = PrometheusProc(tmp_path_factory.mktemp("prometheus"))
    prom.start()
    yield prom
    prom.stop()


#: The feature a broken model version requires and clients do not send (so it answers 422 to their traffic).
NEW_FEATURE = "tenure"


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MLflow model directories, built once: 'v1' and 'v2' (a retrained model, other data) accept the clients'
    rows; 'v2-new-feature' was trained with one more required feature, which clients do not send yet."""
    root = tmp_path_factory.mktemp("models")
    return {
        "v1": model_dirs.build_sklearn(root / "v1", "linear", "binary", seed=0, version="1"),
        "v2": model_dirs.build_sklearn(root / "v2", "linear", "binary", seed=1, version="2"),
        "v2-new-feature": model_dirs.build_sklearn(root / "v2-new-feature", "linear", "binary", seed=1,
                                                   version="2", extra_numeric=(NEW_FEATURE,)),
    }


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


