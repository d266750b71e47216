"""`modelops operator`, `modelops retrain`, `modelops approve|reject|abort`: stdlib + typer at import time.

The helpers only set annotations on the object (what `kubectl annotate` would do); the operator does the
rest, so the CLI needs no MLflow access and every decision is visible on the object. A decision also
carries its audit record (issue 18): the caller's Kubernetes username from a SelfSubjectReview, checked
against the verb `approve` with a SelfSubjectAccessReview, in the console's record shape (via "cli").
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


def _get(kube: Any, ns: str, name: str, plural: str = "") -> dict[str, Any]:
    from modelops.adapters.kube import KubeError
    from modelops.api import GROUP, RETRAIN_SCHEDULES, VERSION

    plural = plural or RETRAIN_SCHEDULES
    try:
        obj: dict[str, Any] | None = kube.get(GROUP, VERSION, plural, ns, name)
    except KubeError as exc:
        typer.echo(f"error: {plural.removesuffix('s')} {ns}/{name}: {exc}", err=True)
        raise typer.Exit(1) from None
    if obj is None:
        typer.echo(f"error: {plural.removesuffix('s')} {ns}/{name}: Not Found", err=True)
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


#: what `modelops approve|reject|abort` accept before the name, as kubectl spells the kinds
KIND_ALIASES = {"retrainschedule": "retrainschedules", "retrainschedules": "retrainschedules", "rs": "retrainschedules",
                "modeldeployment": "modeldeployments", "modeldeployments": "modeldeployments", "md": "modeldeployments"}


def parse_target(target: str) -> tuple[str, str]:
    """`NAME` (a RetrainSchedule, as before) or `KIND/NAME` -> (plural, name)."""
    kind, sep, name = target.partition("/")
    if not sep:
        return "retrainschedules", target
    plural = KIND_ALIASES.get(kind.lower())
    if plural is None or not name:
        raise typer.BadParameter(f"{target!r}: expected NAME, retrainschedule/NAME or modeldeployment/NAME")
    return plural, name


def whoami(kube: Any) -> str:
    """The caller's Kubernetes username, as the API server authenticated this client (SelfSubjectReview,
    authentication.k8s.io/v1): the actor of the audit record, never a name the caller types."""
    from modelops.adapters.kube import KubeError
    from modelops.adapters.kube_rest import group_path

    try:
        review = kube.request("POST", group_path("authentication.k8s.io", "v1", "selfsubjectreviews"),
                              body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    except KubeError as exc:
        typer.echo(f"error: the API server did not say who you are (SelfSubjectReview: {exc.status} {exc});"
                   " a decision needs your Kubernetes username", err=True)
        raise typer.Exit(1) from None
    username = str(((review.get("status") or {}).get("userInfo") or {}).get("username") or "")
    if not username:
        typer.echo("error: the API server's SelfSubjectReview names no user; a decision needs your username",
                   err=True)
        raise typer.Exit(1)
    return username


def may_decide(kube: Any, plural: str, ns: str, name: str) -> tuple[bool, str]:
    """SelfSubjectAccessReview on the verb the console checks (`approve` on the kind, modelops.dev)."""
    from modelops.adapters.kube import KubeError
    from modelops.adapters.kube_rest import group_path
    from modelops.api import GROUP

    try:
        review = kube.request("POST", group_path("authorization.k8s.io", "v1", "selfsubjectaccessreviews"), body={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"group": GROUP, "resource": plural, "verb": "approve",
                                            "namespace": ns, "name": name}}})
    except KubeError as exc:
        typer.echo(f"error: the API server did not answer the access review: {exc.status} {exc}", err=True)
        raise typer.Exit(1) from None
    st = review.get("status") or {}
    return bool(st.get("allowed") and not st.get("denied")), str(st.get("reason") or "")


def pending_versions(plural: str, obj: dict[str, Any], action: str) -> list[str]:
    """The versions `action` may name on this object now: those awaiting approval (approve, reject), or the
    canary being rolled out (abort)."""
    from modelops.desired.approval_link import pending_approvals

    if action == "abort":
        st = obj.get("status") or {}
        version = str((st.get("canary") or {}).get("version") or "")
        return [version] if st.get("rollout") and version else []
    return [p.version for p in pending_approvals(plural, obj)]


def _decide(target: str, version: str, namespace: str | None, kubeconfig: str | None, action: str,
            force: bool, comment: str = "") -> None:
    """Set the decision annotation and, in the same write (optimistic concurrency on resourceVersion), the
    audit record naming the caller (`modelops.dev/last-decision`, the console's record shape, via "cli");
    the operator mirrors it into an Event and MLflow version tags when it acts on it."""
    from modelops.adapters.kube import Conflict, KubeError
    from modelops.adapters.kube_rest import group_path
    from modelops.api import ANNOTATION_APPROVE, ANNOTATION_REJECT, GROUP, VERSION
    from modelops.api.audit import ANN_LAST_DECISION, Record
    from modelops.api.vocabulary import ANN_ABORT

    plural, name = parse_target(target)
    title = {"retrainschedules": "retrainschedule", "modeldeployments": "modeldeployment"}[plural]
    if action == "abort" and plural != "modeldeployments":
        raise typer.BadParameter("abort stops a rollout: name modeldeployment/NAME")
    custom, ns = _client(kubeconfig, namespace)
    actor = whoami(custom)
    allowed, why = may_decide(custom, plural, ns, name)
    if not allowed:
        typer.echo(f"error: {actor} may not {action} {title} {ns}/{name} (needs the verb 'approve' on "
                   f"{plural}.{GROUP}){': ' + why if why else ''}", err=True)
        raise typer.Exit(1)
    obj = _get(custom, ns, name, plural)
    waiting = pending_versions(plural, obj, action)
    if not version and action == "abort" and waiting:
        version = waiting[0]
    if version not in waiting and not force:
        what = ("rollout of version {} in progress" if action == "abort" else
                "run awaiting approval of version {}" if plural == "retrainschedules" else
                "rollout awaiting approval of version {}").format(version or "?")
        typer.echo(f"error: {title} {ns}/{name} has no {what} (now: {', '.join(waiting) or 'none'}); --force "
                   "sets the annotation anyway", err=True)
        raise typer.Exit(1)
    if not version:
        typer.echo("error: name the version", err=True)
        raise typer.Exit(1)
    spec = obj.get("spec") or {}
    model = str((spec.get("training") or {}).get("modelName") or "") if plural == "retrainschedules" else str(
        (spec.get("model") or {}).get("name") or "")
    record = Record(action=action, actor=actor, time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    kind=plural, namespace=ns, name=name, model=model, version=version, via="cli",
                    comment=comment)
    key = {"approve": ANNOTATION_APPROVE, "reject": ANNOTATION_REJECT, "abort": ANN_ABORT}[action]
    patch = {"metadata": {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion"),
                          "annotations": {key: version, ANN_LAST_DECISION: record.as_json()}}}
    try:
        custom.request("PATCH", group_path(GROUP, VERSION, "namespaces", ns, plural, name), body=patch,
                       content_type="application/merge-patch+json")
    except Conflict:
        typer.echo(f"error: {title} {ns}/{name} changed while you decided; look again and decide again", err=True)
        raise typer.Exit(1) from None
    except KubeError as exc:
        typer.echo(f"error: {title} {ns}/{name}: {exc.status} {exc}", err=True)
        raise typer.Exit(1) from None
    done = {"approve": "approved", "reject": "rejected", "abort": "abort requested"}[action]
    typer.echo(f"{title} {ns}/{name}: version {version} {done} by {actor} ({key})")


TargetArg = typer.Argument(..., help="NAME of a RetrainSchedule, or retrainschedule/NAME | modeldeployment/NAME.")
CommentOpt = typer.Option("", "--comment", help="Why (kept in the audit record).")


def approve(target: str = TargetArg,
            version: str = typer.Argument(..., help="MLflow model version awaiting approval."),
            namespace: str | None = NamespaceOpt, kubeconfig: str | None = KubeconfigOpt,
            force: bool = typer.Option(False, help="Annotate even if status shows no such version waiting."),
            comment: str = CommentOpt) -> None:
    """Approve a version awaiting approval: a RetrainSchedule's run (the operator points the 'challenger'
    alias at it) or a ModelDeployment's held rollout (the operator promotes it). You need the verb `approve`
    (the chart's approver ClusterRole) and `patch`; the audit record names your Kubernetes username."""
    _decide(target, version, namespace, kubeconfig, "approve", force, comment)


def reject(target: str = TargetArg,
           version: str = typer.Argument(..., help="MLflow model version awaiting approval."),
           namespace: str | None = NamespaceOpt, kubeconfig: str | None = KubeconfigOpt,
           force: bool = typer.Option(False, help="Annotate even if status shows no such version waiting."),
           comment: str = CommentOpt) -> None:
    """Reject a version awaiting approval: tagged modelops.dev/approval=rejected in MLflow (a RetrainSchedule's
    run) or rolled back (a ModelDeployment's held rollout). The audit record names your Kubernetes username."""
    _decide(target, version, namespace, kubeconfig, "reject", force, comment)


def abort(target: str = typer.Argument(..., help="modeldeployment/NAME"),
          version: str = typer.Argument("", help="The canary version (default: the one rolling out now)."),
          namespace: str | None = NamespaceOpt, kubeconfig: str | None = KubeconfigOpt,
          force: bool = typer.Option(False, help="Annotate even if no rollout of that version runs."),
          comment: str = CommentOpt) -> None:
    """Abort a ModelDeployment's rollout: traffic goes back to stable and the version is tagged rejected. The
    audit record names your Kubernetes username."""
    _decide(target, version, namespace, kubeconfig, "abort", force, comment)


def register(app: typer.Typer) -> None:
    app.command("operator")(operator)
    app.command("retrain")(retrain)
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("abort")(abort)
