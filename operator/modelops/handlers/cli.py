"""`modelops operator`, `modelops retrain`, `modelops approve`, `modelops reject`: stdlib + typer at import time.

The three helpers only set annotations on the RetrainSchedule (what `kubectl annotate` would do); the
operator does the rest, so the CLI needs no MLflow access and every decision is visible on the object.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import typer

NamespaceOpt = typer.Option(None, "--namespace", "-n", help="Namespace; default: the kubeconfig context's.")
KubeconfigOpt = typer.Option(None, "--kubeconfig", help="Kubeconfig file; default: KUBECONFIG or ~/.kube/config.")


#: Modules the operator process never needs but its libraries import when they can: `kubernetes` (kopf
#: imports `kubernetes.client`, ~20-28 MB of RSS, and would log in through it; without it kopf reads the
#: same in-cluster ServiceAccount or kubeconfig itself), `httpx._main` (httpx's command line, which loads
#: `rich` and `click`, ~4 MB; both are installed for typer), `trio` (httpcore's optional backend; the
#: operator is asyncio).
KEPT_OUT = ("kubernetes", "httpx._main", "trio")


def keep_unused_libraries_out() -> bool:
    """Make the KEPT_OUT modules fail to import in this process; True if none was imported yet. Call it
    before kopf or httpx is imported. The operator image does not install `kubernetes` at all; this keeps a
    development environment (where the tests install it) running the operator as the image does."""
    loaded = [m for m in sys.modules if any(m == k or m.startswith(f"{k}.") for k in KEPT_OUT)]
    for name in KEPT_OUT:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not importable"
    return not loaded


def operator() -> None:
    """Run the modelops operator (Kopf) against the current kubeconfig or in-cluster credentials.

    Settings come from MODELOPS_* environment variables (see modelops/settings.py); SIGTERM shuts down
    gracefully: running handlers finish, watches close, the liveness endpoint stops.
    """
    keep_unused_libraries_out()
    from modelops.handlers.run import run_operator

    run_operator()


def _client(kubeconfig: str | None, namespace: str | None) -> tuple[Any, str]:
    from modelops import kubeconfig as credentials
    from modelops.adapters.kube import Kube
    from modelops.adapters.kube_rest import Transport

    try:
        creds = credentials.load(kubeconfig or "")
    except credentials.KubeconfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    return Kube(Transport(creds, pool=1)), namespace or creds.namespace


def _get(kube: Any, ns: str, name: str) -> dict[str, Any]:
    from modelops.adapters.kube import KubeError
    from modelops.api import GROUP, RETRAIN_SCHEDULES, VERSION

    try:
        obj: dict[str, Any] | None = kube.get(GROUP, VERSION, RETRAIN_SCHEDULES, ns, name)
    except KubeError as exc:
        typer.echo(f"error: retrainschedule {ns}/{name}: {exc}", err=True)
        raise typer.Exit(1) from None
    if obj is None:
        typer.echo(f"error: retrainschedule {ns}/{name}: Not Found", err=True)
        raise typer.Exit(1)
    return obj


def _annotate(kube: Any, ns: str, name: str, key: str, value: str) -> None:
    from modelops.adapters.kube import KubeError
    from modelops.adapters.kube_rest import group_path
    from modelops.api import GROUP, RETRAIN_SCHEDULES, VERSION

    try:
        kube.request("PATCH", group_path(GROUP, VERSION, "namespaces", ns, RETRAIN_SCHEDULES, name),
                     body={"metadata": {"annotations": {key: value}}},
                     content_type="application/merge-patch+json")
    except KubeError as exc:
        typer.echo(f"error: retrainschedule {ns}/{name}: {exc}", err=True)
        raise typer.Exit(1) from None


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
