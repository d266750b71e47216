"""`modelops cluster ...` subcommands (stdlib and typer only at import time)."""

from __future__ import annotations

import json
import os

import typer

cluster_app = typer.Typer(help="A real local Kubernetes control plane built from source.", no_args_is_help=True)

_NAME = typer.Option("default", "--name", help="Cluster name; state lives in $MODELOPS_HOME/clusters/NAME.")


@cluster_app.command("build")
def build() -> None:
    """Build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl, etcd and helm (cached)."""
    from modelops_dev.cluster.build import ensure_binaries

    typer.echo(str(ensure_binaries(progress=typer.echo)))


_PARTS = typer.Argument(None, help="kserve, gateway-api, traefik, prometheus-operator (default: all).")


@cluster_app.command("build-serving")
def build_serving(parts: list[str] = _PARTS) -> None:
    """Build KServe's manager and agent, the Gateway API CRDs, Traefik and the Prometheus Operator with its CRDs
    from the Go module proxy (cached by version)."""
    from modelops_dev.cluster.build import SERVING_OUTPUTS, ensure_serving

    dirs = ensure_serving(tuple(parts or SERVING_OUTPUTS), progress=typer.echo)
    typer.echo(json.dumps({k: str(v) for k, v in dirs.items()}, indent=1))


@cluster_app.command("up")
def up(name: str = _NAME, timeout: float = typer.Option(180.0, help="Seconds to wait for each component."),
       node: bool = typer.Option(False, "--node", help="Also run a real node: containerd, kubelet, kube-proxy, "
                                 "CoreDNS and a CNI bridge as host processes (root).")) -> None:
    """Start etcd, kube-apiserver, kube-controller-manager and kube-scheduler on free ports (and a node)."""
    from modelops_dev.cluster.build import ensure_binaries
    from modelops_dev.cluster.local import LocalCluster

    ensure_binaries(progress=typer.echo)
    cluster = LocalCluster(name)
    typer.echo(f"starting local control plane {name!r}{' with a node' if node else ''} in {cluster.root}")
    status = cluster.up(progress=typer.echo, timeout=timeout, node=node)
    typer.echo(f"ready: {status['server']}\n  export KUBECONFIG={status['kubeconfig']}\n"
               f"  export PATH={cluster.bin_dir}:$PATH")


_IMAGES = typer.Argument(..., help="Images in the local Docker daemon, e.g. modelops/operator:dev")


@cluster_app.command("load-images")
def load_images(images: list[str] = _IMAGES, name: str = _NAME) -> None:
    """Copy images from the local Docker daemon into the node's containerd (unchanged ones are skipped)."""
    from modelops_dev.cluster.local import LocalCluster

    LocalCluster(name).node().load_images(images, progress=typer.echo)


@cluster_app.command("down")
def down(name: str = _NAME, purge: bool = typer.Option(False, help="Also delete data, certificates, logs.")) -> None:
    """Stop every process `up` started (and verify they are gone)."""
    from modelops_dev.cluster.local import LocalCluster

    LocalCluster(name).down(progress=typer.echo, purge=purge)


@cluster_app.command("status")
def status(name: str = _NAME) -> None:
    """Print the cluster's components, ports and pids as JSON; exit 1 if it is not fully running."""
    from modelops_dev.cluster.local import LocalCluster

    st = LocalCluster(name).status()
    typer.echo(json.dumps(st, indent=2))
    raise typer.Exit(0 if st["running"] else 1)


@cluster_app.command("kubeconfig")
def kubeconfig(name: str = _NAME) -> None:
    """Print the path of the admin kubeconfig (use: export KUBECONFIG=$(modelops cluster kubeconfig))."""
    from modelops_dev.cluster.local import LocalCluster

    c = LocalCluster(name)
    if not c.kubeconfig.exists():
        typer.echo(f"no kubeconfig for cluster {name!r}; run: modelops cluster up", err=True)
        raise typer.Exit(1)
    typer.echo(os.fspath(c.kubeconfig))


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
