"""`modelops operator`, `modelops retrain`, `modelops approve`, `modelops reject`: stdlib + typer at import time.

The three helpers only set annotations on the RetrainSchedule (what `kubectl annotate` would do); the
operator does the rest, so the CLI needs no MLflow access and every decision is visible on the object.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

NamespaceOpt = typer.Option(None, "--namespace", "-n", help="Namespace; default: the kubeconfig context's.")
KubeconfigOpt = typer.Option(None, "--kubeconfig", help="Kubeconfig file; default: KUBECONFIG or ~/.kube/config.")


def operator() -> None:
    """Run the modelops operator (Kopf) against the current kubeconfig or in-cluster credentials.

    Settings come from MODELOPS_* environment variables (see modelops/settings.py); SIGTERM shuts down
    gracefully: running handlers finish, watches close, the liveness endpoint stops.
    """
    from modelops.handlers.run import run_operator

    run_operator()


def _client(kubeconfig: str | None, namespace: str | None) -> tuple[Any, str]:
    from kubernetes import client, config

    try:
        _contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        ns = namespace or (active or {}).get("context", {}).get("namespace") or "default"
        api = config.new_client_from_config(config_file=kubeconfig)
    except config.ConfigException:
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        api = client.ApiClient(cfg)
        ns = namespace or "default"
    return client.CustomObjectsApi(api), ns


def _get(custom: Any, ns: str, name: str) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    from modelops.api import GROUP, RETRAIN_SCHEDULES, VERSION

    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, RETRAIN_SCHEDULES, name)
        return obj
    except ApiException as exc:
        typer.echo(f"error: retrainschedule {ns}/{name}: {exc.reason}", err=True)
        raise typer.Exit(1) from None


def _annotate(custom: Any, ns: str, name: str, key: str, value: str) -> None:
    from modelops.api import GROUP, RETRAIN_SCHEDULES, VERSION

    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, RETRAIN_SCHEDULES, name,
                                          {"metadata": {"annotations": {key: value}}})


def retrain(name: str = typer.Argument(..., help="RetrainSchedule name."),
            namespace: str | None = NamespaceOpt, kubeconfig: str | None = KubeconfigOpt) -> None:
    """Start a training run now (sets modelops.dev/retrain-requested-at to the current time).

    Subject to suspend and concurrencyPolicy: a suspended schedule, or Forbid while a Job runs, skips the
    request and says so in an Event.
    """
    from modelops.api import ANNOTATION_RETRAIN_REQUESTED

    custom, ns = _client(kubeconfig, namespace)
    obj = _get(custom, ns, name)
    value = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _annotate(custom, ns, name, ANNOTATION_RETRAIN_REQUESTED, value)
    if (obj.get("spec") or {}).get("suspend"):
        typer.echo(f"warning: {ns}/{name} is suspended; the request will be skipped", err=True)
    typer.echo(f"retrainschedule {ns}/{name}: run requested ({ANNOTATION_RETRAIN_REQUESTED}={value})")


def _decide(name: str, version: str, namespace: str | None, kubeconfig: str | None, approve: bool,
            force: bool) -> None:
    from modelops.api import ANNOTATION_APPROVE, ANNOTATION_REJECT

    custom, ns = _client(kubeconfig, namespace)
    obj = _get(custom, ns, name)
    runs = (obj.get("status") or {}).get("runs") or []
    waiting = [str(r.get("version")) for r in runs if r.get("state") == "AwaitingApproval"]
    if version not in waiting and not force:
        typer.echo(f"error: {ns}/{name} has no run awaiting approval of version {version} "
                   f"(awaiting: {', '.join(waiting) or 'none'}); --force sets the annotation anyway", err=True)
        raise typer.Exit(1)
    key = ANNOTATION_APPROVE if approve else ANNOTATION_REJECT
    _annotate(custom, ns, name, key, version)
    typer.echo(f"retrainschedule {ns}/{name}: version {version} {'approved' if approve else 'rejected'} ({key})")


def approve(name: str = typer.Argument(..., help="RetrainSchedule name."),
            version: str = typer.Argument(..., help="MLflow model version awaiting approval."),
            namespace: str | None = NamespaceOpt, kubeconfig: str | None = KubeconfigOpt,
            force: bool = typer.Option(False, help="Annotate even if status shows no such version waiting.")) -> None:
    """Approve a version held as AwaitingApproval: the operator points the 'challenger' alias at it."""
    _decide(name, version, namespace, kubeconfig, True, force)


def reject(name: str = typer.Argument(..., help="RetrainSchedule name."),
           version: str = typer.Argument(..., help="MLflow model version awaiting approval."),
           namespace: str | None = NamespaceOpt, kubeconfig: str | None = KubeconfigOpt,
           force: bool = typer.Option(False, help="Annotate even if status shows no such version waiting.")) -> None:
    """Reject a version held as AwaitingApproval: the operator tags it modelops.dev/approval=rejected in MLflow."""
    _decide(name, version, namespace, kubeconfig, False, force)


def register(app: typer.Typer) -> None:
    app.command("operator")(operator)
    app.command("retrain")(retrain)
    app.command("approve")(approve)
    app.command("reject")(reject)
