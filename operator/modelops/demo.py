"""`modelops demo`: the README's main job.

Today it shows the foundation working end to end: builds (once) and starts the local control plane,
installs the CRDs, runs the operator, applies every sample and prints `kubectl get modelops`. The full
loop (train -> serve -> drift -> retrain -> canary) grows here as the controllers land (issue 9).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import typer

DEMO_CLUSTER = "demo"
DEMO_NAMESPACE = "modelops-demo"


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "manifests" / "crds").is_dir():
            return parent
    raise typer.BadParameter("manifests/crds not found: run `modelops demo` from a modelops checkout")


def _step(msg: str) -> None:
    typer.secho(f"\n[{time.strftime('%H:%M:%S')}] {msg}", bold=True)


def demo_up() -> None:
    from modelops.cluster.build import ensure_binaries
    from modelops.cluster.local import LocalCluster, ProcessRecord, proc_start_time

    t0 = time.monotonic()
    repo = _repo_root()
    _step("1/5 Kubernetes binaries")
    bin_dir = ensure_binaries(progress=typer.echo)
    _step("2/5 local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)")
    cluster = LocalCluster(DEMO_CLUSTER)
    cluster.up(progress=typer.echo)
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def kubectl(*args: str, check: bool = True) -> str:
        proc = subprocess.run([str(bin_dir / "kubectl"), *args], env=env, text=True, capture_output=True)
        if check and proc.returncode != 0:
            raise typer.Exit(f"kubectl {' '.join(args)}: {proc.stderr}")  # type: ignore[arg-type]
        return proc.stdout

    _step("3/5 CRDs (server-side apply) and discovery")
    typer.echo(kubectl("apply", "--server-side", "--field-manager=modelops", "-f", str(repo / "manifests/crds")))
    kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelops.dev",
            "crd/retrainschedules.modelops.dev", "--timeout=60s")

    _step("4/5 operator")
    state_file = cluster.root / "operator.json"
    op_log = cluster.logs / "operator.log"
    if state_file.exists() and ProcessRecord(**json.loads(state_file.read_text())).alive():
        typer.echo("operator already running")
    else:
        exe = Path(sys.executable).with_name("modelops")
        with op_log.open("ab") as fh:
            proc = subprocess.Popen([str(exe), "operator"], env={**env, "MODELOPS_LIVENESS_HOST": "127.0.0.1",
                                                                 "MODELOPS_LIVENESS_PORT": "0"},
                                    stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        record = ProcessRecord(proc.pid, proc_start_time(proc.pid) or 0, 0, str(op_log))
        state_file.write_text(json.dumps(vars(record)))
        typer.echo(f"operator pid {proc.pid}, logs in {op_log}")

    _step(f"5/5 samples into namespace {DEMO_NAMESPACE}")
    kubectl("create", "namespace", DEMO_NAMESPACE, check=False)
    typer.echo(kubectl("apply", "-n", DEMO_NAMESPACE, "-f", str(repo / "manifests/samples")))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = json.loads(kubectl("get", "modelops", "-n", DEMO_NAMESPACE, "-o", "json"))["items"]
        if items and all((i.get("status") or {}).get("observedGeneration") == i["metadata"]["generation"]
                         for i in items):
            break
        time.sleep(0.5)
    else:
        typer.echo(f"the operator has not acknowledged every object yet; see {op_log}")
    typer.echo(kubectl("get", "modelops", "-n", DEMO_NAMESPACE))
    typer.echo(kubectl("get", "modeldeployment", "churn", "-n", DEMO_NAMESPACE, "-o",
                       "jsonpath={range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{\"\\n\"}{end}"))
    typer.secho(f"\ndone in {time.monotonic() - t0:.0f}s. Look around:", bold=True)
    typer.echo(f"  export KUBECONFIG={cluster.kubeconfig} PATH={bin_dir}:$PATH\n"
               f"  kubectl get modelops -A\n  kubectl explain modeldeployment.spec.rollout\n"
               f"  tail -f {op_log}\n  modelops demo --down    # stop everything")


def demo_down() -> None:
    from modelops.cluster.local import LocalCluster, ProcessRecord, terminate

    cluster = LocalCluster(DEMO_CLUSTER)
    state_file = cluster.root / "operator.json"
    if state_file.exists():
        record = ProcessRecord(**json.loads(state_file.read_text()))
        if record.alive():
            terminate(record, grace=15)
            typer.echo("  operator                 stopped")
        state_file.unlink()
    cluster.down(progress=typer.echo, purge=True)


def demo(down: bool = typer.Option(False, "--down", help="Stop and remove everything the demo started.")) -> None:
    """Run the modelops demo on the local cluster (builds what is missing, with progress)."""
    demo_down() if down else demo_up()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
