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
