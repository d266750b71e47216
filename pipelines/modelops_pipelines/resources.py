"""How many threads training may use: the container's CPU limit, not the host's core count.

In a Pod with `resources.limits.cpu: 2` on a 64-core node, `os.cpu_count()` says 64; starting 64 threads
gets the container throttled by CFS and makes training slower, not faster. The limit lives in the cgroup:
v2 `cpu.max` ("<quota> <period>" or "max <period>"), v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`
(quota -1 = unlimited). Every ancestor cgroup may limit too, so the smallest limit on the path wins; the
CPU affinity mask (cpuset, taskset) bounds it as well.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

#: environment override for the thread count (a positive integer)
N_JOBS_ENV = "MODELOPS_N_JOBS"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_limit(fs_root: Path, cgroup_path: str) -> float | None:
    """Smallest cpu.max quota/period on the path from the cgroup to the root, None if unlimited."""
    best: float | None = None
    rel = Path(cgroup_path.lstrip("/"))
    candidates = [rel, *rel.parents]
    for part in candidates:
        raw = _read(fs_root / part / "cpu.max")
        if raw is None:
            continue
        fields = raw.split()
        if len(fields) >= 1 and fields[0] != "max":
            period = float(fields[1]) if len(fields) > 1 else 100000.0
            quota = float(fields[0])
            if quota > 0 and period > 0:
                limit = quota / period
                best = limit if best is None else min(best, limit)
    return best


def _v1_limit(cpu_dir: Path, cgroup_path: str) -> float | None:
    best: float | None = None
    rel = Path(cgroup_path.lstrip("/"))
    for part in [rel, *rel.parents]:
        quota_raw = _read(cpu_dir / part / "cpu.cfs_quota_us")
        period_raw = _read(cpu_dir / part / "cpu.cfs_period_us")
        if quota_raw is None or period_raw is None:
            continue
        try:
            quota, period = float(quota_raw), float(period_raw)
        except ValueError:
            continue
        if quota > 0 and period > 0:
            limit = quota / period
            best = limit if best is None else min(best, limit)
    return best


def _cgroup_paths(proc_cgroup: str | Path, controller: str) -> tuple[str, str]:
    """Our cgroup's path in the unified (v2) hierarchy and in `controller`'s v1 hierarchy, from
    /proc/self/cgroup ("/" where it names none)."""
    v2_path, v1_path = "/", "/"
    for line in (_read(Path(proc_cgroup)) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, path = parts
        if hier == "0" and controllers == "":
            v2_path = path or "/"
        elif controller in controllers.split(","):
            v1_path = path or "/"
    return v2_path, v1_path


def cgroup_cpu_limit(fs_root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup") -> float | None:
    """The CPU limit in cores from cgroup v2 or v1, or None when no limit is set."""
    root = Path(fs_root)
    v2_path, v1_path = _cgroup_paths(proc_cgroup, "cpu")
    limits: list[float] = []
    if (root / "cgroup.controllers").exists():  # unified (v2) hierarchy mounted at the root
        lim = _v2_limit(root, v2_path)
        if lim is not None:
            limits.append(lim)
    else:
        for cpu_dir in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
            if cpu_dir.is_dir():
                # Inside a container the cgroup namespace usually makes our own cgroup the mount root;
                # try the path from /proc/self/cgroup first, then the mount root itself.
                for path in dict.fromkeys([v1_path, "/"]):
                    lim = _v1_limit(cpu_dir, path)
                    if lim is not None:
                        limits.append(lim)
                        break
                break
        unified = root / "unified"
        if not limits and (unified / "cgroup.controllers").exists():  # hybrid layout
            lim = _v2_limit(unified, v2_path)
            if lim is not None:
                limits.append(lim)
    return min(limits) if limits else None


def available_cpus(fs_root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup",
                   env: dict[str, str] | None = None) -> int:
    """Threads to give estimators: MODELOPS_N_JOBS, else min(cgroup limit rounded up, affinity), at least 1."""
    environ = os.environ if env is None else env
    override = environ.get(N_JOBS_ENV)
    if override:
        try:
            value = int(override)
        except ValueError as exc:
            raise ValueError(f"{N_JOBS_ENV} must be a positive integer, not {override!r}") from exc
        if value < 1:
            raise ValueError(f"{N_JOBS_ENV} must be a positive integer, not {override!r}")
        return value
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    limit = cgroup_cpu_limit(fs_root, proc_cgroup)
    if limit is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(limit - 1e-9)))


#: cgroup memory limits at or above this are "unlimited" (v1 reports a huge page-rounded number)
_UNLIMITED = 1 << 60


def _int(raw: str | None) -> int | None:
    if raw is None or raw == "max":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 0 < value < _UNLIMITED else None


def cgroup_memory_limit(fs_root: str | Path = "/sys/fs/cgroup",
                        proc_cgroup: str | Path = "/proc/self/cgroup") -> int | None:
    """The smallest memory limit in bytes on our cgroup's path (v2 memory.max, v1 memory.limit_in_bytes)."""
    root = Path(fs_root)
    v2_path, v1_path = _cgroup_paths(proc_cgroup, "memory")
    limits: list[int] = []
    if (root / "cgroup.controllers").exists():
        rel = Path(v2_path.lstrip("/"))
        for part in [rel, *rel.parents]:
            value = _int(_read(root / part / "memory.max"))
            if value is not None:
                limits.append(value)
    elif (root / "memory").is_dir():
        for path in dict.fromkeys([v1_path, "/"]):
            rel = Path(path.lstrip("/"))
            for part in [rel, *rel.parents]:
                value = _int(_read(root / "memory" / part / "memory.limit_in_bytes"))
                if value is not None:
                    limits.append(value)
    return min(limits) if limits else None


def memory_budget(fs_root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup") -> int | None:
    """Bytes this process may use: the cgroup limit, the address-space rlimit (`ulimit -v`) and the
    machine's memory, whichever is smallest; None when none is known."""
    candidates: list[int] = []
    limit = cgroup_memory_limit(fs_root, proc_cgroup)
    if limit is not None:
        candidates.append(limit)
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        if 0 < soft < _UNLIMITED and soft != resource.RLIM_INFINITY:
            candidates.append(int(soft))
    except (ImportError, OSError, ValueError):
        pass
    with contextlib.suppress(ValueError, OSError, AttributeError):
        candidates.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return min(candidates) if candidates else None
