# ruff: noqa: F811  (pytest injects the imported fixtures by parameter name)
"""The console against the real control plane, a real MLflow, a real Prometheus (scraping drift gauges)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cluster import kube, kube_crds, namespace  # noqa: F401
from tests.fixtures.console import (
    ConsoleProc,
    Users,
    create_with_status,
    install_console_rbac,
    make_users,
    md_status_awaiting,
    model_deployment,
    retrain_schedule,
    rs_status_awaiting,
    seed_model,
)
from tests.fixtures.gauge_exporter import gauge_exporter  # noqa: F401
from tests.fixtures.mlflow_server import mlflow_server  # noqa: F401
from tests.fixtures.prometheus import prometheus  # noqa: F401
from tests.fixtures.smtp_server import smtp_server  # noqa: F401


@dataclass
class Env:
    kube: Any
    namespace: str
    users: Users
    console_token: str
    mlflow_uri: str
    prometheus_url: str
    model: str
    run_ids: list[str]
    tmp: Path


@pytest.fixture
def console_env(kube_crds: Any, namespace: str, mlflow_server: Any, prometheus: Any, gauge_exporter: Any,
                tmp_path: Path) -> Env:
    token = install_console_rbac(kube_crds)
    users = make_users(kube_crds, namespace)
    model = f"churn-{namespace}"
    gauges = gauge_exporter()
    for feature, ratio in (("tenure", 1.6), ("balance", 0.4), ("age", 0.2)):
        gauges.set("modelops_drift_feature_score_ratio", ratio, model=model, version="1", feature=feature,
                   method="wasserstein_norm")
    gauges.set("modelops_drift_share", 1 / 3, model=model, version="1")
    prom = prometheus([gauges.target])
    prom.wait_for(f'modelops_drift_share{{model="{model}"}}', lambda v: v is not None, 30)
    run_ids = seed_model(mlflow_server.uri, model, 2, tmp_path)
    return Env(kube_crds, namespace, users, token, mlflow_server.uri, prom.url, model, run_ids, tmp_path)


@pytest.fixture
def seeded(console_env: Env) -> Env:
    """A RetrainSchedule holding version 2 for approval and a ModelDeployment whose canary (v2) waits."""
    e = console_env
    create_with_status(e.kube, e.namespace, "retrainschedules", retrain_schedule("churn-train", e.model),
                       rs_status_awaiting("2", e.run_ids[1]))
    create_with_status(e.kube, e.namespace, "modeldeployments", model_deployment("churn", e.model),
                       md_status_awaiting("2"))
    return e


@pytest.fixture
def console(seeded: Env) -> Iterator[ConsoleProc]:
    proc = ConsoleProc(seeded.kube, seeded.tmp / "console", seeded.console_token, seeded.mlflow_uri,
                       seeded.prometheus_url).start()
    try:
        yield proc
    finally:
        proc.stop()
