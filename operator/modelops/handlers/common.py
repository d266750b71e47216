"""Kopf wiring shared by both kinds: operator settings and probes.

Handlers stay thin: they read the object, call a pure function from `modelops.decide`, and write the
result into `patch.status` (kopf applies it to the status subresource).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from modelops import __version__
from modelops.api import GROUP


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Progress and the diff base live in annotations under our own prefix, so `status` holds only
    # what the CRD declares (kopf's status.kopf default would be pruned by the structural schema).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    # Kopf runs one worker per object that has events, and a worker lingers `idle_timeout` (5 s by default)
    # after its last event. With a limit of 64 and 1000 InferenceServices reporting, the slots were held
    # by idle workers and every other object's events queued behind them: an edit took 9-19 s to reach
    # its ModelDeployment (bench/rollout_latency.py, 1000 objects, busy cores). Our handlers only note
    # the event and wake the scheduler, so workers can leave at once; a worker is a small asyncio task,
    # so the limit is only a guard against a runaway.
    settings.batching.worker_limit = 4096
    settings.batching.idle_timeout = 0.5


@kopf.on.probe(id="version")
def version_probe(**_: Any) -> str:
    return __version__
