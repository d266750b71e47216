import os
import subprocess

import pytest

from modelops_dev.cluster.local import ClusterState, LocalCluster
from modelops_dev.cluster.pki import Pki
from modelops_dev.cluster.process import ClusterError, ProcessRecord, proc_start_time

pytestmark = pytest.mark.unit


def test_status_of_a_cluster_that_never_ran(tmp_path):
    st = LocalCluster("x", root=tmp_path).status()
    assert st["running"] is False and st["components"] == {} and st["kubeconfig"] is None


def test_missing_binaries_name_the_build_command(tmp_path):
    with pytest.raises(ClusterError, match="modelops cluster build"):
        LocalCluster("x", root=tmp_path, bin_dir=tmp_path / "nothing").up(progress=lambda _m: None)


def test_process_record_detects_recycled_or_dead_pids(tmp_path):
    proc = subprocess.Popen(["sleep", "30"])
    try:
        rec = ProcessRecord(proc.pid, proc_start_time(proc.pid) or 0, 0, "")
        assert rec.alive()
        assert not ProcessRecord(proc.pid, rec.start_time + 1, 0, "").alive()  # same pid, other process
    finally:
        proc.kill()
        proc.wait()
    assert not rec.alive()
    state = ClusterState({"etcd": rec}, "https://127.0.0.1:1")
    state.save(tmp_path / "s.json")
    assert ClusterState.load(tmp_path / "s.json") == state


def test_pki_is_created_once_and_reused(tmp_path):
    pki = Pki(tmp_path)
    a = pki.issue("admin", "admin", orgs=("system:masters",))
    first = a.cert.read_bytes()
    assert Pki(tmp_path).issue("admin", "admin").cert.read_bytes() == first
    assert oct(os.stat(a.key).st_mode & 0o777) == "0o600"


def test_kubernetes_endpoints_of_an_earlier_api_server_port_are_stale() -> None:
    from modelops_dev.cluster.local import stale_kubernetes_endpoints

    def eps(ip: str, port: int) -> dict:
        return {"subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}

    # what a node restarted on the data of an earlier run had: the address right, the port the old one
    assert stale_kubernetes_endpoints(eps("192.0.2.2", 37979), "192.0.2.2", 28552)
    assert stale_kubernetes_endpoints(eps("192.0.2.9", 28552), "192.0.2.2", 28552)
    assert stale_kubernetes_endpoints({"subsets": []}, "192.0.2.2", 28552)
    assert not stale_kubernetes_endpoints(eps("192.0.2.2", 28552), "192.0.2.2", 28552)


def test_the_nodes_processes_get_a_system_cgroup_with_a_nodes_cpu_weight(tmp_path):
    from modelops_dev.cluster.process import (
        SYSTEM_CPU_SHARES,
        remove_cgroup,
        system_cgroup,
        system_cgroup_path,
    )

    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.shares").write_text("1024")
    cg = system_cgroup("e2e", v1)
    assert cg == v1 / "cpu" / "modelops-e2e" and (cg / "cpu.shares").read_text() == str(SYSTEM_CPU_SHARES)
    assert system_cgroup_path("e2e", v1) == cg
    remove_cgroup(cg)  # a busy (here: non-empty) cgroup stays, and that is no error
    assert cg.exists()
    (cg / "cpu.shares").unlink()  # on cgroupfs the control files do not keep rmdir from removing it
    remove_cgroup(cg)
    assert not cg.exists()

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.subtree_control").write_text("cpuset cpu io memory pids\n")
    cg = system_cgroup("e2e", v2)
    # the kubelet's and runc's conversion: 1024 shares are weight 39 (kubepods' 2048 on 2 CPUs: 79)
    assert cg == v2 / "modelops-e2e" and (cg / "cpu.weight").read_text() == "39"

    bare = tmp_path / "none"
    bare.mkdir()
    (bare / "cgroup.subtree_control").write_text("memory pids\n")
    assert system_cgroup("e2e", bare) is None and system_cgroup_path("e2e", bare) is None


def test_a_spawned_process_enters_the_cgroup_before_its_program_runs(tmp_path):
    from modelops_dev.cluster.process import enter_cgroup

    assert enter_cgroup(None) is None
    cg = tmp_path / "cg"
    cg.mkdir()
    proc = subprocess.Popen(["true"], preexec_fn=enter_cgroup(cg))
    assert proc.wait(10) == 0
    assert (cg / "cgroup.procs").read_text() == str(proc.pid)
