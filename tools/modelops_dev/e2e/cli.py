"""`modelops cluster install-serving` (registered on the cluster command group; lives here because it installs
the e2e serving stack, and modelops_dev.cluster must not import modelops_dev.e2e)."""

from __future__ import annotations

import typer


def install_serving(kubeconfig: str = typer.Option("", help="Kubeconfig of the target cluster (default: "
                                                       "$KUBECONFIG or ~/.kube/config); any cluster works.")) -> None:
    """Install the Gateway API CRDs, Traefik and KServe v0.20.0 (manager as a Pod, webhooks) from the build cache."""
    from pathlib import Path

    from modelops_dev.cluster.build import ensure_serving
    from modelops_dev.e2e import kserve
    from modelops_dev.e2e.kube import Kube
    from modelops_dev.e2e.serving import install_serving as install
    from modelops_dev.host import repo_root

    ensure_serving(progress=typer.echo)
    kube = Kube(kubeconfig or None)
    check, run = kserve.run_kubectl(kube.kubectl_bin, kube.env)
    server = check("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").strip()
    install(check, run, kubeconfig=Path(kube.kubeconfig), server=server, work=repo_root() / "build" / "e2e",
            progress=typer.echo)


def install_prometheus_operator(
        kubeconfig: str = typer.Option("", help="Kubeconfig of the target cluster (default: $KUBECONFIG or "
                                       "~/.kube/config); any cluster works."),
        namespace: str = typer.Option("monitoring", help="Namespace of the operator's Deployment."),
        image: str = typer.Option("modelops/prometheus-operator:dev", help="Operator image (`modelops images "
                                  "build prometheus-operator`, then `modelops cluster load-images` on the local node)."),
        reloader_image: str = typer.Option("modelops/prometheus-config-reloader:dev",
                                           help="Config reloader image the operator puts into Prometheus Pods.")) -> None:
    """Install the Prometheus Operator (its CRDs server-side, its RBAC, the operator as a Pod) from the build cache."""
    from modelops_dev.cluster.build import ensure_serving
    from modelops_dev.e2e import kserve, prometheus_operator
    from modelops_dev.e2e.kube import Kube

    cache = ensure_serving(("prometheus-operator",), progress=typer.echo)["prometheus-operator"]
    kube = Kube(kubeconfig or None)
    check, run = kserve.run_kubectl(kube.kubectl_bin, kube.env)
    opts = prometheus_operator.Options(namespace=namespace, image=image, config_reloader_image=reloader_image)
    prometheus_operator.install(kserve.Installer(check, run, progress=typer.echo), cache, opts)


def register(app: typer.Typer) -> None:
    from modelops_dev.cluster.cli import cluster_app

    cluster_app.command("install-serving")(install_serving)
    cluster_app.command("install-prometheus-operator")(install_prometheus_operator)
