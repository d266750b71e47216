"""`modelops operator` (and, later, the retrain/approve/reject helpers): stdlib + typer at import time."""

from __future__ import annotations

import typer


def operator() -> None:
    """Run the modelops operator (Kopf) against the current kubeconfig or in-cluster credentials.

    Settings come from MODELOPS_* environment variables (see modelops/settings.py); SIGTERM shuts down
    gracefully: running handlers finish, watches close, the liveness endpoint stops.
    """
    from modelops.handlers.run import run_operator

    run_operator()


def register(app: typer.Typer) -> None:
    app.command("operator")(operator)
