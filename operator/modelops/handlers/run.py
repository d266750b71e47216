"""Starting Kopf with modelops' handlers and settings."""

from __future__ import annotations

import logging

import kopf

from modelops.settings import OperatorSettings


def run_operator(settings: OperatorSettings | None = None) -> None:
    settings = settings or OperatorSettings()
    kopf.configure(log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
                   log_refkey="object" if settings.log_format == "json" else None,
                   verbose=settings.log_level.upper() == "DEBUG")
    logging.getLogger().setLevel(settings.log_level.upper())
    # one line per HTTP request to MLflow / Prometheus is noise at INFO
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Importing the handler modules registers them with kopf's default registry.
    from modelops.handlers import common, modeldeployment, retrainschedule  # noqa: F401

    namespaces = settings.namespace_list()
    kopf.run(
        standalone=not settings.peering,
        peering_name=settings.peering or None,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{settings.liveness_host}:{settings.liveness_port}/healthz",
    )
