"""The dev subcommands `modelops cluster ...`, `modelops demo` and `modelops images ...`.

modelops/cli.py calls `register` when this package is installed (the dev environment); runtime images do
not install it, so their `modelops --help` has none of these commands. Same rule as every role module:
only the standard library and typer at module level.
"""

from __future__ import annotations

import importlib

import typer

_MODULES = (
    "modelops_dev.cluster.cli",  # cluster up|down|status|kubeconfig|build|build-serving|load-images
    "modelops_dev.e2e.cli",  # cluster install-serving
    "modelops_dev.demo",  # demo
    "modelops_dev.images",  # images build|verify
)


def register(app: typer.Typer) -> None:
    for module in _MODULES:
        importlib.import_module(module).register(app)
