"""The one `modelops` command. Each role registers its own subcommands.

Every role module imports only the standard library and typer at module level, so that
`modelops --help` works in every image, whichever extra it installed; heavy imports
(mlflow, kserve, kopf, ...) happen inside the command bodies.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="modelops",
    help="Kubernetes-native MLOps: retrain on schedule or drift, gate on the champion, canary on KServe.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# module -> what it contributes; each exposes `register(app: typer.Typer) -> None`.
_ROLES = (
    "modelops.handlers.cli",  # operator, retrain, approve, reject
    "modelops_pipelines.cli",  # train, generate-data
    "modelops.serving.cli",  # serve
    "modelops.drift.cli",  # drift-exporter
)
#: The dev tooling (cluster, images, demo): a separate package (tools/modelops_dev) that only the dev
#: environment installs; runtime images do not have it, so their `modelops` has no such commands.
_DEV_TOOLING = "modelops_dev.cli"

for _module in _ROLES:
    importlib.import_module(_module).register(app)
try:
    _dev = importlib.import_module(_DEV_TOOLING)
except ModuleNotFoundError as _exc:
    if _exc.name != _DEV_TOOLING.partition(".")[0]:
        raise  # installed but broken: say so instead of hiding its commands
else:
    _dev.register(app)


@app.command()
def version() -> None:
    """Print the modelops version."""
    from importlib.metadata import version as _v

    typer.echo(_v("modelops"))


if __name__ == "__main__":
    app()
