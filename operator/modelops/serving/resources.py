"""PURE: how many CPUs this container may use (the cgroup CPU limit, not the node's core count)."""

from __future__ import annotations

import math
import os
from pathlib import Path


def cpu_limit(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs granted by the cgroup quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), capped by the affinity mask.

    A pod with `limits.cpu: 1500m` on a 64-core node must not start 64 threads; it gets 2.
    """
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        available = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is None:
        return max(1, available)
    return max(1, min(available, math.ceil(quota)))


def _cgroup_quota(root: Path) -> float | None:
    v2 = root / "cpu.max"
    try:
        text = v2.read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        if text:
            return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period
