"""The host the dev tooling runs on: the source checkout, commands with their echo, the Docker daemon.

Used by the image builds (images.py) and by the node (cluster/node.py: its pause image goes through Docker);
it imports neither, so the cluster and the image builder do not import each other.
Only the standard library and typer are imported at module level (see modelops/cli.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import typer


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "images").is_dir():
            return parent
    raise typer.BadParameter("run from a modelops source checkout (pyproject.toml and images/ not found)")


def run(cmd: Sequence[str], *, log: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    if log:
        typer.echo("  $ " + " ".join(cmd))
    return subprocess.run(list(cmd), check=True, text=True, **kw)  # type: ignore[call-overload,no-any-return]


def docker_ready() -> bool:
    docker = shutil.which("docker")
    return bool(docker) and subprocess.run([docker or "docker", "info"], capture_output=True).returncode == 0


def ensure_daemon(root: Path, timeout: float = 60.0) -> None:
    """A reachable Docker daemon: the running one, or Debian's dockerd started in the background."""
    if docker_ready():
        return
    if os.geteuid() != 0:
        raise typer.BadParameter("no Docker daemon is reachable and starting one needs root")
    if shutil.which("dockerd") is None:
        typer.echo("installing Debian's docker.io (dockerd, containerd, runc)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io"], env=env)
    logdir = root / "build" / "docker"
    logdir.mkdir(parents=True, exist_ok=True)
    log = (logdir / "dockerd.log").open("ab")
    proc = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (logdir / "dockerd.pid").write_text(str(proc.pid))
    typer.echo(f"started dockerd (pid {proc.pid}, log {logdir / 'dockerd.log'}); stop it with: "
               f"kill $(cat {logdir / 'dockerd.pid'})")
    deadline = time.monotonic() + timeout
    while not docker_ready():
        if proc.poll() is not None:
            tail = (logdir / "dockerd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"dockerd exited with {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"dockerd did not answer within {timeout:.0f}s; see {logdir / 'dockerd.log'}")
        time.sleep(0.5)
