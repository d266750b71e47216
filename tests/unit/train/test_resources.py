from pathlib import Path

import pytest

from modelops_pipelines.resources import available_cpus, cgroup_cpu_limit

pytestmark = pytest.mark.unit


def _v2(root: Path, path: str, cpu_max: dict[str, str]) -> Path:
    (root / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpu memory")
    for rel, value in cpu_max.items():
        d = root / rel.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(value)
    proc = root.parent / "proc-cgroup"
    proc.write_text(f"0::{path}\n")
    return proc


def test_v2_quota(tmp_path):
    root = tmp_path / "cg"
    proc = _v2(root, "/kubepods/pod1/c1", {"/kubepods/pod1/c1": "150000 100000"})
    assert cgroup_cpu_limit(root, proc) == pytest.approx(1.5)
    assert available_cpus(root, proc, env={}) in (1, 2)  # ceil(1.5) = 2, bounded by the affinity mask


def test_v2_unlimited_leaf_but_limited_parent(tmp_path):
    root = tmp_path / "cg"
    proc = _v2(root, "/kubepods/pod1/c1", {"/kubepods/pod1/c1": "max 100000", "/kubepods/pod1": "100000 100000"})
    assert cgroup_cpu_limit(root, proc) == pytest.approx(1.0)
    assert available_cpus(root, proc, env={}) == 1


def test_v2_no_limit(tmp_path):
    root = tmp_path / "cg"
    proc = _v2(root, "/", {"/": "max 100000"})
    assert cgroup_cpu_limit(root, proc) is None
    assert available_cpus(root, proc, env={}) >= 1


def test_v1_quota_and_unlimited(tmp_path):
    root = tmp_path / "cg"
    cpu = root / "cpu,cpuacct"
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("50000")
    (cpu / "cpu.cfs_period_us").write_text("100000")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:cpu,cpuacct:/\n3:memory:/x\n")
    assert cgroup_cpu_limit(root, proc) == pytest.approx(0.5)
    assert available_cpus(root, proc, env={}) == 1  # never zero
    (cpu / "cpu.cfs_quota_us").write_text("-1")
    assert cgroup_cpu_limit(root, proc) is None


def test_v1_nested_path_from_proc_self_cgroup(tmp_path):
    root = tmp_path / "cg"
    leaf = root / "cpu" / "kubepods" / "pod9"
    leaf.mkdir(parents=True)
    (leaf / "cpu.cfs_quota_us").write_text("400000")
    (leaf / "cpu.cfs_period_us").write_text("100000")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("2:cpu:/kubepods/pod9\n")
    assert cgroup_cpu_limit(root, proc) == pytest.approx(4.0)


def test_env_override_wins_and_is_validated(tmp_path):
    assert available_cpus(tmp_path, tmp_path / "none", env={"MODELOPS_N_JOBS": "3"}) == 3
    with pytest.raises(ValueError, match="MODELOPS_N_JOBS"):
        available_cpus(tmp_path, tmp_path / "none", env={"MODELOPS_N_JOBS": "0"})


def test_memory_limit_v2_smallest_on_the_path_and_max_is_unlimited(tmp_path):
    from modelops_pipelines.resources import cgroup_memory_limit

    root = tmp_path / "cg"
    proc = _v2(root, "/kubepods/pod1/c1", {"/kubepods/pod1/c1": "max 100000"})
    (root / "kubepods" / "pod1" / "c1" / "memory.max").write_text("max\n")
    (root / "kubepods" / "pod1" / "memory.max").write_text(str(2 * 2**30))
    assert cgroup_memory_limit(root, proc) == 2 * 2**30
    (root / "kubepods" / "pod1" / "memory.max").write_text("max")
    assert cgroup_memory_limit(root, proc) is None


def test_memory_limit_v1_ignores_the_unlimited_sentinel(tmp_path):
    from modelops_pipelines.resources import cgroup_memory_limit

    root = tmp_path / "cg"
    leaf = root / "memory" / "kubepods" / "pod9"
    leaf.mkdir(parents=True)
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    (leaf / "memory.limit_in_bytes").write_text(str(512 * 2**20))
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:memory:/kubepods/pod9\n2:cpu:/\n")
    assert cgroup_memory_limit(root, proc) == 512 * 2**20
    (leaf / "memory.limit_in_bytes").write_text("9223372036854771712")
    assert cgroup_memory_limit(root, proc) is None


def test_memory_budget_is_at_most_the_cgroup_limit_and_the_machine(tmp_path):
    import os

    from modelops_pipelines.resources import memory_budget

    root = tmp_path / "cg"
    proc = _v2(root, "/p", {"/p": "max 100000"})
    (root / "p" / "memory.max").write_text(str(3 * 2**20))
    assert memory_budget(root, proc) == 3 * 2**20
    (root / "p" / "memory.max").write_text("max")
    assert memory_budget(root, proc) <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
