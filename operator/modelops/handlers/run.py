"""Starting Kopf with modelops' handlers and settings."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

import kopf

from modelops.settings import OperatorSettings

#: glibc's mallopt() parameter for the arena limit (malloc.h: M_ARENA_MAX).
M_ARENA_MAX = -8
#: Arenas the operator's threads share. glibc's default is 8 per core, and each thread that allocates (the
#: reconcile pool, urllib3, the event loop) soon owns one that is never given back; two keep the RSS of the
#: mostly idle threads flat at no measurable cost (it is what `MALLOC_ARENA_MAX=2` does).
ARENA_MAX = 2


def limit_malloc_arenas(arenas: int = ARENA_MAX) -> bool:
    """Cap glibc malloc arenas for this process before any thread starts; True if applied. An explicit
    MALLOC_ARENA_MAX in the environment wins (glibc read it at start), and non-glibc libcs are left alone."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # musl has no mallopt
        return False


def run_operator(settings: OperatorSettings | None = None) -> None:
    limit_malloc_arenas()
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
