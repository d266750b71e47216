"""How `modelops cluster load-images` names images in containerd (skipping the ones already there)."""

from __future__ import annotations

import pytest

from modelops_dev.cluster.node import normalize_ref

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("ref", "stored"), [
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("modelops/operator:dev", "docker.io/modelops/operator:dev"),
    ("registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10.2"),
    ("localhost:5000/modelops/trainer:dev", "localhost:5000/modelops/trainer:dev"),
    ("localhost/x:1", "localhost/x:1"),
])
def test_references_as_containerd_stores_them(ref: str, stored: str) -> None:
    assert normalize_ref(ref) == stored
