"""Kopf wiring shared by both kinds: settings, probes and the acknowledgement every object gets.

Handlers stay thin: they read the object, call a pure function from `modelops.decide`, and write the
result into `patch.status` (kopf applies it to the status subresource).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from modelops import __version__
from modelops.api import GROUP
from modelops.decide.conditions import Condition, merge_conditions

SpecCheck = Callable[[Mapping[str, Any]], list[str]]


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
    settings.batching.worker_limit = 64


@kopf.on.probe(id="version")
def version_probe(**_: Any) -> str:
    return __version__


def acknowledge(kind: str, spec: Mapping[str, Any], status: Mapping[str, Any], meta: Mapping[str, Any],
                patch: kopf.Patch, check: SpecCheck, controller_ready: bool = False) -> None:
    """Record that the operator has seen this generation: observedGeneration plus Accepted and Ready.

    Accepted says whether the spec passed the operator-side checks (the API server did the schema);
    Ready stays Unknown with reason AwaitingController until the controller of this kind reports.
    """
    generation = meta.get("generation")
    problems = check(spec)
    updates = [
        Condition("Accepted", "False", "InvalidSpec", "; ".join(problems)) if problems
        else Condition("Accepted", "True", "SpecValid", f"modelops {__version__} accepted generation {generation}"),
    ]
    if not controller_ready:
        updates.append(Condition("Ready", "Unknown", "AwaitingController",
                                 f"the {kind} controller has not reported on generation {generation} yet"))
    conditions = merge_conditions(status.get("conditions"), updates, generation, datetime.now(UTC))
    phase = "Invalid" if problems else "Pending"  # display only; nothing branches on it
    if (conditions != list(status.get("conditions") or []) or status.get("observedGeneration") != generation
            or status.get("phase") != phase):
        patch.status["conditions"] = conditions
        patch.status["observedGeneration"] = generation
        patch.status["phase"] = phase
