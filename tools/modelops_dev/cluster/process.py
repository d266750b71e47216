"""Processes of the local cluster and its node: start-time-checked records, readiness polling, shutdown.

Shared by local.py (the control plane) and node.py (the node), so that the node needs nothing from the
control plane's module (local.py starts the node; the node never imports local.py), and by the demo.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Where long steps report what they are doing (print, typer.echo, a test logger).
Progress = Callable[[str], None]


class ClusterError(RuntimeError):
    """The local cluster or its node could not be built, started or stopped; the message says why."""


# Ports for the processes we start come from below the kernel's ephemeral range (32768-60999 by default) and the
# NodePort range (30000-32767). A port from bind(0) is an ephemeral one: between picking it and the process binding
# it (a model server loads for ~15 s under load) any outbound connection on the machine may take it as its local
# port, and the process fails with EADDRINUSE (CI, stop 22).
_PORT_LOW, _PORT_HIGH = 20000, 29999
_handed_out: set[int] = set()


def free_port(host: str = "0.0.0.0") -> int:
    """A port nothing listens on now, outside the ephemeral range, not handed out before in this process."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(2000):
        port = rng.randint(_PORT_LOW, _PORT_HIGH)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise ClusterError(f"no free port in {_PORT_LOW}-{_PORT_HIGH}")


def wait_until(what: str, probe: Callable[[], bool], proc: subprocess.Popen[bytes] | None, log: Path,
               timeout: float, *, interval: float = 0.5,
               retry_on: tuple[type[BaseException], ...] = (Exception,)) -> None:
    """Poll `probe` until it says True; fail early, with the log's tail, if `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ClusterError(f"{what} exited with code {proc.returncode}; last log lines:\n"
                               + "\n".join(log.read_text(errors="replace").splitlines()[-25:]))
        try:
            if probe():
                return
        except retry_on as exc:
            last = str(exc)
        time.sleep(interval)
    raise ClusterError(f"{what} not ready after {timeout:.0f}s{': ' + last if last else ''}; see {log}")


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of a process (field 22 of /proc/PID/stat), None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent's wait() is missing
        return None
    return int(fields[19])


@dataclass
class ProcessRecord:
    pid: int
    start_time: int
    port: int
    log: str

    def alive(self) -> bool:
        return proc_start_time(self.pid) == self.start_time


def terminate(rec: ProcessRecord, grace: float) -> None:
    """SIGTERM the process group, SIGKILL what is left after `grace` seconds, and wait until it is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(rec.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(rec.pid)
            if not rec.alive():
                return
            time.sleep(0.1)
    raise ClusterError(f"process {rec.pid} did not exit after SIGKILL")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


#: cpu.shares of the cgroup that holds a local node's own processes (control plane, containerd, kubelet,
#: kube-proxy, CoreDNS): systemd's default for `system.slice` on a real node, half of the `kubepods` shares the
#: kubelet sets on a 2-CPU node. Without it each of these processes competes with the whole `kubepods` group as
#: an equal of 1024 shares, and five busy ones leave every Pod together under a third of the CPU.
SYSTEM_CPU_SHARES = 1024


def _shares_to_weight(shares: int) -> int:
    """cgroup v2 cpu.weight for v1 cpu.shares, as the kubelet and runc convert them."""
    return 1 + ((shares - 2) * 9999) // 262142


def system_cgroup_path(cluster: str, root: Path = Path("/sys/fs/cgroup")) -> Path | None:
    """Where `system_cgroup` puts a local node's processes on this host (cgroup v1's cpu hierarchy, else v2's
    unified one when its root delegates the cpu controller); None where neither is there."""
    if (root / "cpu" / "cpu.shares").exists():
        return root / "cpu" / f"modelops-{cluster}"
    control = root / "cgroup.subtree_control"
    with contextlib.suppress(OSError):
        if control.exists() and "cpu" in control.read_text().split():
            return root / f"modelops-{cluster}"
    return None


def system_cgroup(cluster: str, root: Path = Path("/sys/fs/cgroup")) -> Path | None:
    """The cgroup a local node's own processes run in (created, its CPU weight set), or None where this host
    gives no writable cgroup with the cpu controller; then they run where the caller does."""
    path = system_cgroup_path(cluster, root)
    if path is None:
        return None
    try:
        path.mkdir(exist_ok=True)
        if path.parent.name == "cpu":
            (path / "cpu.shares").write_text(str(SYSTEM_CPU_SHARES))
        else:
            (path / "cpu.weight").write_text(str(_shares_to_weight(SYSTEM_CPU_SHARES)))
    except OSError:
        return None
    return path


def enter_cgroup(path: Path | None) -> Callable[[], None] | None:
    """A `preexec_fn` that moves the new process into `path` before it runs its program (so every thread and
    child it starts is there too); None for no cgroup."""
    if path is None:
        return None
    procs = str(path / "cgroup.procs")

    def enter() -> None:
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))
    return enter


def remove_cgroup(path: Path | None) -> None:
    """Remove the node's cgroup once its processes have gone (a cgroup with processes cannot be removed)."""
    if path is not None:
        with contextlib.suppress(OSError):
            path.rmdir()
