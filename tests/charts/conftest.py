"""Chart tests share the `cluster` tier's real control plane (tests/fixtures/cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.charts.chart import prometheus_operator_crds

#: The Prometheus Operator kinds the chart renders (the others of the module are installed too).
MONITORING_PLURALS = ("servicemonitors", "podmonitors", "prometheusrules")


@pytest.fixture(scope="session")
def kube_monitoring(kube_crds: Any) -> Any:
    """The control plane with the modelops CRDs and every Prometheus Operator CRD (server-side apply:
    several are larger than the client-side apply annotation limit)."""
    kube_crds.kubectl("apply", "--server-side", "--field-manager=modelops-tests", "-f",
                      str(prometheus_operator_crds()), timeout=300)
    for plural in MONITORING_PLURALS:
        kube_crds.wait_served("monitoring.coreos.com", "v1", plural)
    return kube_crds


@pytest.fixture
def restricted_namespace(kube: Any) -> Iterator[str]:
    """A fresh namespace whose Pods must pass the `restricted` Pod Security Standard (enforced by the
    API server's PodSecurity admission, not by this test)."""
    import uuid

    from kubernetes import client

    name = f"r-{uuid.uuid4().hex[:8]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest",
              "pod-security.kubernetes.io/warn": "restricted"}
    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        yield name
    finally:
        kube.core.delete_namespace(name)
