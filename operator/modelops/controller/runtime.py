"""The process-wide controller runtime: adapters, cache, thread pool, one scheduler per kind, the leader
Lease, and the async wrapper that runs one reconcile with its budget and maps its failures.

Handlers register a `Kind` (its sync `reconcile(rt, namespace, name, budget) -> seconds | None` and an error
reporter) and feed the scheduler from their watch events; everything else is here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from modelops.adapters.clock import Clock
from modelops.adapters.kube import Conflict, Kube, KubeError, connect
from modelops.controller.budget import Budget
from modelops.controller.cache import WatchCache
from modelops.controller.clients import Clients
from modelops.controller.leader import LeaderElector, Timing
from modelops.controller.metrics import OperatorMetrics
from modelops.controller.scheduler import Scheduler
from modelops.controller.status import StatusWriter
from modelops.decide.conditions import Condition, merge_conditions
from modelops.settings import OperatorSettings

log = logging.getLogger("modelops.controller")
Reconcile = Callable[["Runtime", str, str, Budget], "float | None"]
ReportError = Callable[["Runtime", str, str, str | None], None]


class NotLeader(Exception):
    """This replica no longer holds the leader Lease: it must not write anything."""


@dataclass
class Kind:
    name: str
    reconcile: Reconcile
    report_error: ReportError | None = None
    #: reconciles of this kind at once (0: twice the worker threads)
    concurrency: int = 0
    scheduler: Scheduler | None = field(default=None, init=False)


class Runtime:
    def __init__(self, settings: OperatorSettings | None = None, kube: Kube | None = None,
                 clients: Clients | None = None, clock: Clock | None = None,
                 metrics: OperatorMetrics | None = None) -> None:
        self.settings = settings or OperatorSettings()
        #: the operator's own Prometheus metrics (controller/metrics.py), served by `serve_metrics`
        self.metrics = metrics or OperatorMetrics()
        # one connection per reconcile thread, and a few for the leader Lease and the error reports
        self.kube = kube or Kube(connect(pool=self.settings.reconcile_workers + 4))
        self.clients = clients or Clients(self.kube, timeout=self.settings.http_timeout_seconds,
                                          artifacts_destination=self.settings.mlflow_artifacts_destination,
                                          credentials_ttl=self.settings.credentials_ttl_seconds)
        self.clients.on_error = self.metrics.adapter_error
        self.clock = clock or Clock(self.settings.test_clock_file)
        self.cache = WatchCache()
        self.pool = ThreadPoolExecutor(max_workers=self.settings.reconcile_workers, thread_name_prefix="reconcile")
        self.kinds: dict[str, Kind] = {}
        self.identity = self.settings.pod_name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        #: field manager of status writes: per replica with leader election, so the objects' managedFields
        #: show which replica wrote (the failover test proves from them that two replicas never acted at once)
        self.field_manager = f"modelops/{self.identity}"[:128] if self.settings.leader_election else "modelops"
        self.elector: LeaderElector | None = None
        if self.settings.leader_election:
            self.elector = LeaderElector(
                self.kube, self.settings.lease_namespace or "default", self.settings.lease_name, self.identity,
                Timing(self.settings.lease_duration_seconds, self.settings.lease_renew_deadline_seconds,
                       self.settings.lease_retry_period_seconds),
                on_started=self._wake_all, on_stopped=self.metrics.forget_all)
        self.paused = False
        #: objects whose last reconcile failed (and was reported in their status)
        self._failed: set[tuple[str, str, str]] = set()
        self.counters = {"reconciles": 0, "reconcile_errors": 0, "errors_reported": 0}
        self._tasks: set[asyncio.Task[None]] = set()
        #: RetrainSchedule runs whose Job create was refused: (namespace, name) -> {run id: message}
        self.create_failures: dict[tuple[str, str], dict[str, str]] = {}

    # ------------------------------------------------------------------ acting
    def may_act(self) -> bool:
        """This replica leads (or runs alone) and kopf has not paused it."""
        return not self.paused and (self.elector is None or self.elector.is_leader())

    def ensure_acting(self) -> None:
        """Called before every write: a replica that lost the Lease mid-reconcile stops there."""
        if not self.may_act():
            raise NotLeader(f"{self.identity} is not the leader")

    def _wake_all(self) -> None:
        for kind in self.kinds.values():
            if kind.scheduler is not None:
                kind.scheduler.open_gate()

    # ------------------------------------------------------------------ kinds
    def register(self, kind: Kind) -> Scheduler:
        async def run(namespace: str, name: str) -> float | None:
            return await self.reconcile_async(kind, namespace, name)

        scheduler = Scheduler(run, concurrency=kind.concurrency or self.settings.reconcile_workers * 2,
                              gate=self.may_act)
        kind.scheduler = scheduler
        self.kinds[kind.name] = kind
        self.metrics.queues[kind.name] = lambda: (scheduler.waiting(), scheduler.known())
        return scheduler

    async def reconcile_async(self, kind: Kind, namespace: str, name: str) -> float | None:
        budget = Budget(self.settings.reconcile_budget_seconds)
        loop = asyncio.get_running_loop()
        self.counters["reconciles"] += 1
        t0, outcome = time.monotonic(), "error"
        try:
            result = await loop.run_in_executor(self.pool, kind.reconcile, self, namespace, name, budget)
            outcome = "ok" if result is not None else "gone"
            if result is None:
                self.metrics.forget(kind.name, namespace, name)
            if (kind.name, namespace, name) in self._failed and result is not None:
                self._failed.discard((kind.name, namespace, name))
                self._report(kind, namespace, name, None)  # Reconciled=True again
            return result
        except Conflict:
            outcome = "conflict"
            return 0.2  # someone else wrote first: decide again on the fresh object
        except NotLeader:
            outcome = "not_leader"
            return 1.0  # stays known; runs again once this replica leads
        except KubeError as exc:
            outcome = "kube_error"
            self.metrics.adapter_error("kube", f"HTTP{exc.status}" if getattr(exc, "status", None) else "KubeError")
            log.warning("%s %s/%s: reconcile failed: %s", kind.name, namespace, name, exc)
            self._report(kind, namespace, name, f"Kubernetes API: {exc}")
            return 5.0
        except Exception as exc:  # keep the loop alive; the next pass starts from status again
            log.exception("%s %s/%s: reconcile failed", kind.name, namespace, name)
            self._report(kind, namespace, name, f"{type(exc).__name__}: {exc}")
            return 10.0
        finally:
            self.metrics.reconciled(kind.name, outcome, time.monotonic() - t0)

    def _report(self, kind: Kind, namespace: str, name: str, message: str | None) -> None:
        """Say in the object's status that its reconcile failed (`message`) or works again (None)."""
        if message is not None:
            self.counters["reconcile_errors"] += 1
            self._failed.add((kind.name, namespace, name))
        if kind.report_error is None or not self.may_act():
            return
        with contextlib.suppress(RuntimeError):  # the pool is shut down
            self.pool.submit(kind.report_error, self, namespace, name, message[:1000] if message else None)

    def report_condition(self, group: str, version: str, plural: str, kind: str, namespace: str, name: str,
                         message: str | None) -> None:
        """Best effort: condition Reconciled=False/ReconcileError with `message` on the object, or (None)
        Reconciled=True once a reconcile succeeds again."""
        try:
            obj = self.kube.get(group, version, plural, namespace, name)
            if obj is None:
                return
            status = obj.get("status") or {}
            cond = (Condition("Reconciled", "False", "ReconcileError", message) if message is not None
                    else Condition("Reconciled", "True", "Reconciled", "the last reconcile succeeded"))
            if message is None and not any(c.get("type") == "Reconciled" for c in status.get("conditions") or []):
                return
            conds = merge_conditions(status.get("conditions"), [cond], obj["metadata"].get("generation"),
                                     self.clock.now())
            self.ensure_acting()
            StatusWriter(self.kube, group, version, plural, kind, self.cache, self.field_manager).write(
                obj, status, {**status, "conditions": conds})
            if message is not None:
                self.counters["errors_reported"] += 1
        except Exception as exc:  # the log has the original error
            log.warning("%s %s/%s: could not report the reconcile error in status: %s", kind, namespace, name, exc)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for kind in self.kinds.values():
            assert kind.scheduler is not None
            self._spawn(loop.create_task(kind.scheduler.run_forever()))
        if self.elector is not None:
            self._spawn(loop.create_task(self.elector.run()))

    def _spawn(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.elector is not None:
            await asyncio.to_thread(self.elector.release)

    def stats(self) -> dict[str, Any]:
        """For the liveness endpoint (and the soak bench): leadership, sizes, counters, tasks and threads."""
        import threading

        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:
            tasks = -1
        return {"leader": self.may_act(), "cache": self.cache.size(), **self.counters,
                "failing": len(self._failed), "asyncio_tasks": tasks, "threads": threading.active_count(),
                "scheduled": {k: (v.scheduler.known() if v.scheduler else 0) for k, v in self.kinds.items()}}


_RUNTIME: Runtime | None = None


def runtime() -> Runtime:
    """The process's runtime, made on first use (importing the handlers stays cheap)."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = Runtime()
    return _RUNTIME


def set_runtime(rt: Runtime | None) -> None:
    """Install a runtime (tests: one with fake adapters)."""
    global _RUNTIME
    _RUNTIME = rt
