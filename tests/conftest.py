"""Shared pytest wiring: the shared fixtures, and every test carrying exactly one tier marker (ARCHITECTURE.md)."""

from __future__ import annotations

import pytest

#: The real processes the tiers share (tests/fixtures), registered once for the whole tree: a fixture
#: starts its process only when a test asks for it by name. A conftest.py may still define a fixture of
#: the same name for its folder (tests/cluster/rollout has its own `prometheus`).
pytest_plugins = [
    "tests.fixtures.cluster",  # kube, kube_crds, namespace: the control plane of the cluster tier
    "tests.fixtures.operator",  # operator
    "tests.fixtures.kserve",  # kserve: KServe's CRD and a status stand-in
    "tests.fixtures.kserve_live",  # kserve_live: KServe v0.20.0's own manager and webhooks (no node)
    "tests.fixtures.kubelet_standin",  # kubelet_standin
    "tests.fixtures.mlflow_server",  # mlflow_server
    "tests.fixtures.prometheus",  # prometheus
    "tests.fixtures.gauge_exporter",  # gauge_exporter
]

TIERS = ("unit", "integration", "cluster", "e2e", "bench")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tiers = [m.name for m in item.iter_markers() if m.name in TIERS]
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid}: needs exactly one tier marker of {TIERS}, has {tiers}")
