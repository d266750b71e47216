"""`modelops console` and `modelops history`: stdlib + typer at import time."""

from __future__ import annotations

import typer


def console() -> None:
    """Run the web console (settings from MODELOPS_CONSOLE_* variables; see modelops/console/config.py).

    Pages: the overview of every ModelDeployment and RetrainSchedule, a model's page, and the approval
    view with the evidence and Approve / Reject (TokenReview + SubjectAccessReview on the verb `approve`).
    """
    import uvicorn

    from modelops.console.app import create_app
    from modelops.console.config import ConsoleSettings

    settings = ConsoleSettings()  # fields come from the environment
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                proxy_headers=True, access_log=False)


def history(model: str = typer.Argument(..., help="MLflow registered model name."),
            namespace: str | None = typer.Option(None, "--namespace", "-n",
                                                 help="Namespace of the ModelDeployment; default: all."),
            kubeconfig: str | None = typer.Option(None, "--kubeconfig", help="Kubeconfig file."),
            mlflow: str | None = typer.Option(None, "--mlflow", help="MLflow URI; default: the ModelDeployment's "
                                              "spec.registry.trackingUri or MODELOPS_MLFLOW_TRACKING_URI."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Print each version's serving intervals, rollouts and decisions (who, when, evidence digest)."""
    import asyncio
    import json
    import os

    from modelops.api.audit import Record
    from modelops.console.kube import Kube
    from modelops.console.sources import Mlflow, SourceError
    from modelops.console.views import model_of
    from modelops.desired import audit

    async def run() -> int:
        kube = Kube.from_env(kubeconfig or "")
        try:
            mds = [o for o in await kube.list_objects("modeldeployments", [namespace] if namespace else None)
                   if model_of("modeldeployments", o) == model]
        finally:
            await kube.close()
        if not mds:
            typer.echo(f"error: no ModelDeployment serves model {model!r}"
                       + (f" in namespace {namespace}" if namespace else ""), err=True)
            return 1
        uri = mlflow or ((mds[0].get("spec") or {}).get("registry") or {}).get("trackingUri") or os.environ.get(
            "MODELOPS_MLFLOW_TRACKING_URI", "http://mlflow.modelops.svc:5000")
        client = Mlflow(uri, 10.0)
        records: list[Record] = []
        try:
            for v in await client.versions(model):
                records += audit.records_from_tags({t["key"]: t["value"] for t in v.get("tags") or []})
        except SourceError as exc:
            typer.echo(f"warning: decisions from MLflow unavailable: {exc}", err=True)
        finally:
            await client.http.aclose()
        out = []
        for md in mds:
            meta = md.get("metadata") or {}
            hist = audit.history(md.get("status") or {}, records)
            if as_json:
                out.append({"modelDeployment": f"{meta.get('namespace')}/{meta.get('name')}", "versions": [
                    {"version": h.version, "intervals": h.intervals, "rollouts": h.rollouts,
                     "decisions": [json.loads(r.as_json()) for r in h.decisions]} for h in hist]})
            else:
                typer.echo(f"# modeldeployment {meta.get('namespace')}/{meta.get('name')}")
                typer.echo(audit.format_history(model, hist))
        if as_json:
            typer.echo(json.dumps(out, indent=2))
        return 0

    raise typer.Exit(asyncio.run(run()))


def register(app: typer.Typer) -> None:
    app.command("console")(console)
    app.command("history")(history)
