"""Kopf wiring shared by both kinds: operator settings, probes, and the controller runtime's start/stop.

Handlers stay thin: their watch events only (re)schedule objects; the reconciles run in the controller
runtime (`modelops.controller`), which writes status itself (kopf's `patch` is not used).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from modelops import __version__
from modelops.controller.runtime import runtime
from modelops.handlers import modeldeployment, retrainschedule


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Only on.event, startup, cleanup and probe handlers are registered: kopf stores no progress and no
    # diff base, so nothing of kopf's is written into the objects.
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


@kopf.on.startup()
async def controller_start(**_: Any) -> None:
    """One runtime for both kinds: register them, start their schedulers and (with several replicas) the
    leader election."""
    rt = runtime()
    retrainschedule.KIND.concurrency = rt.settings.retrain_workers
    for kind in (modeldeployment.KIND, retrainschedule.KIND):
        if kind.name not in rt.kinds:
            rt.register(kind)
    if rt.settings.metrics_port:
        port = rt.metrics.serve(rt.settings.metrics_port, rt.settings.liveness_host)
        logging.getLogger("modelops.controller").info("serving metrics on %s:%d/metrics",
                                                      rt.settings.liveness_host, port)
    rt.start()


@kopf.on.cleanup()
async def controller_stop(**_: Any) -> None:
    rt = runtime()
    await rt.stop()
    rt.metrics.shutdown()


@kopf.on.probe(id="version")
def version_probe(**_: Any) -> str:
    return __version__


@kopf.on.probe(id="controller")
async def controller_probe(**_: Any) -> dict[str, Any]:
    """Leadership, cache and scheduler sizes, reconcile and error counters, asyncio tasks and threads."""
    return runtime().stats()
