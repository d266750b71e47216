"""`modelops demo`: the README's main job, the whole loop running for real on a local node.

1. Kubernetes binaries and the serving stack's Go builds (KServe v0.20.0 manager and agent, the Gateway API
   CRDs, Traefik; built once from the Go module proxy, cached by version), then the local cluster *with a
   node* (`modelops cluster up --node`: control plane + kubelet, containerd, CNI, kube-proxy, CoreDNS).
2. Images: the four runtimes, Prometheus, KServe's manager, agent and storage initializer, and Traefik,
   built offline when missing (`modelops images build`), loaded into the node's containerd (`modelops
   cluster load-images`) when the node lacks them.
3. The loop (modelops_dev.e2e.loop, the code the e2e tier tests): install the serving stack (real KServe with
   its webhooks, Traefik as the Gateway API data plane), then the chart with MLflow, the drift exporter,
   Prometheus; train v1 -> serve -> shifted traffic to the gateway (payloads logged by KServe's agent) ->
   drift -> retrain v2 -> canary with Prometheus analysis, split at the gateway -> approval in the console
   (the URL and a demo approver's token are printed) -> promote -> a bad canary
   rolled back. Labels for half the answered predictions follow, late and out of order, by inference id
   (the generator knows the truth). A timeline is printed as it happens, then written to
   build/demo/timeline.json with plots (build/demo/loop.png; build/demo/quality.png: realised and estimated
   quality per version).
4. Where to look: the console, MLflow UI, `kubectl get modelops`, the drift report.

`modelops demo --down` stops the node and the control plane and removes their data.
"""

from __future__ import annotations

import json
import os
import shutil
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
        if (parent / "manifests" / "e2e").is_dir():
            return parent
    raise typer.BadParameter("manifests/e2e not found: run `modelops demo` from a modelops checkout")


def _step(msg: str) -> None:
    typer.secho(f"\n[{time.strftime('%H:%M:%S')}] {msg}", bold=True)


def _modelops(*args: str) -> None:
    """Run a `modelops` subcommand with its output streaming through (long builds show progress)."""
    exe = Path(sys.executable).with_name("modelops")
    proc = subprocess.run([str(exe), *args])
    if proc.returncode != 0:
        raise typer.Exit(proc.returncode)


def _work_dir() -> Path:
    return _repo_root() / "build" / "demo"


def demo_up() -> None:
    from modelops_dev.cluster.build import ensure_binaries, ensure_serving
    from modelops_dev.e2e.kube import Kube
    from modelops_dev.e2e.loop import IMAGES, Loop, Timeline
    from modelops_dev.e2e.plot import plot_quality, plot_timeline
    from modelops_dev.host import docker_ready, ensure_daemon
    from modelops_dev.images import ROLES, image_exists

    t0 = time.monotonic()
    durations: dict[str, float] = {}
    repo = _repo_root()
    work = _work_dir()
    work.mkdir(parents=True, exist_ok=True)

    _step("1/4 Kubernetes binaries and the local cluster with a node")
    t = time.monotonic()
    ensure_binaries(progress=typer.echo)
    ensure_serving(progress=typer.echo)
    _modelops("cluster", "up", "--name", DEMO_CLUSTER, "--node")
    kubeconfig = subprocess.run([str(Path(sys.executable).with_name("modelops")), "cluster", "kubeconfig",
                                 "--name", DEMO_CLUSTER], capture_output=True, text=True, check=True).stdout.strip()
    os.environ["KUBECONFIG"] = kubeconfig
    durations["cluster"] = round(time.monotonic() - t, 1)

    _step("2/4 images (built offline when missing, loaded into the node when it lacks them)")
    t = time.monotonic()
    if not docker_ready():
        ensure_daemon(repo)
    by_ref = {f"{image}:dev": role for role, (image, _extra) in ROLES.items()}
    missing_local = [by_ref[ref] for ref in IMAGES if not image_exists(ref)]
    if missing_local:
        typer.echo(f"building {', '.join(missing_local)} (slow on 2 cores: minutes per image)")
        _modelops("images", "build", *missing_local)
    kube = Kube(kubeconfig)
    nodes = (kube.get("nodes") or {}).get("items") or []
    on_node = {name for n in nodes for img in n["status"].get("images") or [] for name in img.get("names") or []}
    to_load = [ref for ref in IMAGES if not any(p == ref or p.endswith("/" + ref) for p in on_node)]
    if to_load:
        _modelops("cluster", "load-images", "--name", DEMO_CLUSTER, *to_load)
    else:
        typer.echo("all images already on the node")
    durations["images"] = round(time.monotonic() - t, 1)

    _step(f"3/4 the loop in namespace {DEMO_NAMESPACE}")
    if kube.get("namespace", DEMO_NAMESPACE):
        typer.echo(f"removing the previous run's namespace {DEMO_NAMESPACE}")
        Loop(kube, DEMO_NAMESPACE, Timeline(), work_dir=work).uninstall()
    timeline = Timeline(echo=typer.echo)
    loop = Loop(kube, DEMO_NAMESPACE, timeline, work_dir=work)
    # the approval step: v2 waits for a person in the console (URL and token printed when it is held); on a
    # terminal for MODELOPS_DEMO_APPROVAL_WAIT seconds (default 600), then, or at once when not on a
    # terminal, the demo approver's Approve request is made for them (modelops_dev.e2e.console)
    loop.approval_wait = float(os.environ.get("MODELOPS_DEMO_APPROVAL_WAIT", "600" if sys.stdin.isatty() else "0"))
    try:
        loop.run()
    finally:
        data = {**timeline.to_json(), "setup_seconds": durations, "measured_splits": loop.splits,
                "labels": loop.label_report()}
        (work / "timeline.json").write_text(json.dumps(data, indent=1))
        if timeline.samples:
            png = plot_timeline(data, work / "loop.png")
            typer.echo(f"plot: {png}")
            typer.echo(f"quality plot: {plot_quality(data, work / 'quality.png')}")
        if loop.traffic:
            typer.echo(f"answers at the gateway: {dict(loop.traffic.answers)}")

    _step("4/4 done in {:.0f}s (cluster {}s, images {}s, loop stages {})".format(
        time.monotonic() - t0, durations["cluster"], durations["images"], timeline.stages))
    release = loop.release
    rec = loop.approval.get("record") or {}
    how = "in the browser" if loop.approval.get("how") == "person" else "the demo made the Approve request"
    approved = f"by {rec.get('actor')} via {rec.get('via')} ({how})" if rec else "(no approval step ran)"
    bin_dir = Path(kube.kubectl_bin).parent
    typer.echo(f"""Look around (`modelops demo --down` stops everything):
  export KUBECONFIG={kubeconfig} PATH={bin_dir}:$PATH
  kubectl get modelops,inferenceservices,httproutes,pods -n {DEMO_NAMESPACE}
  kubectl logs -n kserve deployment/kserve-controller-manager     # KServe's controller
  kubectl describe modeldeployment churn -n {DEMO_NAMESPACE}
  # MLflow UI (experiments, trials, registered versions, the champion alias):
  kubectl port-forward -n {DEMO_NAMESPACE} svc/{release}-mlflow 5000:5000   # then http://127.0.0.1:5000
  # drift report (Evidently HTML) and metrics of the drift exporter:
  kubectl port-forward -n {DEMO_NAMESPACE} svc/{release}-drift-exporter 8080:8080
  #   its read API needs the chart's token (modelops.drift.auth):
  #   TOKEN=$(kubectl get secret -n {DEMO_NAMESPACE} {release}-drift-exporter-token -o jsonpath='{{.data.token}}' | base64 -d)
  #   curl -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:8080/drift/churn?namespace={DEMO_NAMESPACE}"
  #   (and /reports/churn?namespace={DEMO_NAMESPACE} for the Evidently HTML report)
  # the console (overview, model page, approvals; sign in with the demo approver's token in
  #   {work / 'approver-token'}, user system:serviceaccount:{DEMO_NAMESPACE}:demo-approver):
  kubectl port-forward -n {DEMO_NAMESPACE} svc/{release}-console 8081:80   # then http://127.0.0.1:8081
  #   v2 was approved {approved}
  # Prometheus (run by the Prometheus Operator from the chart's monitors): kubectl port-forward -n {DEMO_NAMESPACE} svc/prometheus-operated 9090:9090
  # the gateway: kubectl port-forward -n traefik svc/traefik 8000:8000, Host: {(loop.md().get('status', {}).get('traffic') or {}).get('hostname')}
  timeline: {work / 'timeline.json'}   plots: {work / 'loop.png'} {work / 'quality.png'}""")


def demo_down() -> None:
    from modelops_dev.cluster.local import LocalCluster
    from modelops_dev.cluster.process import ProcessRecord, terminate

    cluster = LocalCluster(DEMO_CLUSTER)
    state_file = cluster.root / "operator.json"  # the operator process of earlier demo versions
    if state_file.exists():
        record = ProcessRecord(**json.loads(state_file.read_text()))
        if record.alive():
            terminate(record, grace=15)
        state_file.unlink()
    _modelops("cluster", "down", "--name", DEMO_CLUSTER, "--purge")
    storage = Path(os.environ.get("MODELOPS_E2E_STORAGE", "/var/lib/modelops/e2e")) / DEMO_NAMESPACE
    if storage.exists():
        shutil.rmtree(storage)
        typer.echo(f"  removed {storage}")


def demo(down: bool = typer.Option(False, "--down", help="Stop and remove everything the demo started.")) -> None:
    """Run the whole modelops loop on a local node (builds what is missing, with progress)."""
    demo_down() if down else demo_up()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
