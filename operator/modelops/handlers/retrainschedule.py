"""The RetrainSchedule controller: Kopf watches wake it, `decide.retrain.tick` decides, adapters act.

Why not a kopf timer or daemon per object: both make kopf put a finalizer on every RetrainSchedule, so a
schedule could not be deleted while the operator is down, and nothing here needs cleanup on deletion
(Jobs and ConfigMaps are owned and garbage-collected). Instead one in-process scheduler keeps, per
object, the time its next reconcile is due: the tick says when the next cron firing or drift check is,
watch events on the object (spec, annotations) and on its Jobs make it due at once, and a resync
interval bounds the wait. One reconcile per object at a time; all state is in status, so a restarted
operator simply carries on (the first listing makes every object due).

A reconcile, in the order that makes it crash-safe (see decide/retrain.py):
  read object -> query Prometheus if a drift check is due -> observe Jobs and Pods -> tick ->
  write status (optimistic concurrency) -> create Jobs (create-if-absent) -> delete Jobs -> post Events ->
  perform due outbox items (webhooks, MLflow) -> record their results in status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from modelops.adapters.retrain_clock import Clock
from modelops.adapters.retrain_kube import Conflict, Kube
from modelops.adapters.retrain_notify import post_json
from modelops.adapters.retrain_prometheus import query_one
from modelops.adapters.retrain_registry import MlflowAuth, set_alias, set_version_tag
from modelops.api import (
    ANNOTATION_APPROVE,
    ANNOTATION_REJECT,
    ANNOTATION_RETRAIN_REQUESTED,
    GROUP,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    RETRAIN_SCHEDULE,
    RETRAIN_SCHEDULES,
    VERSION,
)
from modelops.decide.retrain import (
    APPROVAL_TAG,
    CHALLENGER_ALIAS,
    TickInput,
    drift_check_due,
    due_outbox,
    record_outbox,
    tick,
)
from modelops.decide.spec_checks import retrain_schedule_problems
from modelops.decide.triggers import parse_time
from modelops.desired.notification import webhook_payload
from modelops.desired.training_job import JobDefaults, spec_config_map, training_job
from modelops.settings import OperatorSettings

log = logging.getLogger("modelops.retrain")
Key = tuple[str, str]  # (namespace, name)


@dataclass
class Deps:
    """Everything a reconcile touches outside itself."""

    settings: OperatorSettings
    kube: Kube
    clock: Clock
    defaults: JobDefaults = field(init=False)

    def __post_init__(self) -> None:
        self.defaults = JobDefaults(trainer_image=self.settings.trainer_image,
                                    mlflow_tracking_uri=self.settings.mlflow_tracking_uri)


def reconcile(deps: Deps, namespace: str, name: str) -> float | None:
    """One reconcile; returns seconds until the next one is needed, None when the object is gone."""
    obj = deps.kube.get_schedule(namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    spec = obj.get("spec") or {}
    now = deps.clock.now()
    problems = retrain_schedule_problems(spec)
    sample = None
    if drift_check_due(obj, now, problems):
        drift = spec["triggers"]["drift"]
        sample = query_one(drift.get("prometheusUrl") or deps.settings.prometheus_url, drift["query"],
                           deps.settings.http_timeout_seconds)
    jobs = deps.kube.observe_jobs(namespace, name)  # after reading the object: see decide/retrain.py
    created = parse_time(obj["metadata"].get("creationTimestamp")) or now
    plan = tick(TickInput(obj, jobs, now, anchor=now if deps.clock.overridden else created,
                          problems=problems, drift_sample=sample))
    if plan.status != (obj.get("status") or {}):
        obj = deps.kube.replace_status(obj, plan.status)  # the intent is recorded before any Job exists
    for run in plan.create:
        deps.kube.create_if_absent(spec_config_map(obj, run))
        if deps.kube.create_if_absent(training_job(obj, run, deps.defaults)):
            log.info("created Job %s/%s for run %s (%s)", namespace, run["job"], run["id"], run["trigger"])
    for job in plan.delete:
        deps.kube.delete_job(namespace, job)
    for event in plan.events:
        _post_event(deps, obj, event)
    if obj.get("status", {}).get("outbox"):
        _drain_outbox(deps, obj)
    resync = deps.settings.retrain_resync_seconds
    return resync if plan.requeue_after is None else min(plan.requeue_after, resync)


def _post_event(deps: Deps, obj: dict[str, Any], event: Any) -> None:
    try:
        deps.kube.post_event(obj, event)
    except Exception as exc:  # Events are best effort; status holds the record
        log.warning("could not post Event %s on %s: %s", event.reason, obj["metadata"]["name"], exc)


def _drain_outbox(deps: Deps, obj: dict[str, Any]) -> None:
    now = deps.clock.now()
    items = due_outbox(obj["status"], now)
    if not items:
        return
    results = {item["id"]: _perform(deps, obj, item) for item in items}
    for _attempt in range(5):
        status, events = record_outbox(obj["status"], results, deps.clock.now())
        try:
            obj = deps.kube.replace_status(obj, status)
            break
        except Conflict:
            fresh = deps.kube.get_schedule(obj["metadata"]["namespace"], obj["metadata"]["name"])
            if fresh is None:
                return
            obj = fresh
    else:
        return  # performed again next time: at-least-once
    for event in events:
        _post_event(deps, obj, event)


def _perform(deps: Deps, obj: Mapping[str, Any], item: Mapping[str, Any]) -> str | None:
    """Do one outbox item; None on success, else an error message without secrets."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    timeout = deps.settings.http_timeout_seconds
    try:
        if item["kind"] == "notify":
            hooks = (spec.get("notifications") or {}).get("webhooks") or []
            if item.get("webhook", 0) >= len(hooks):
                return None  # the webhook was removed from the spec: nothing to send
            hook = hooks[item["webhook"]]
            url = hook.get("url")
            ref = hook.get("urlSecretRef")
            if ref:
                url = deps.kube.secret_value(meta["namespace"], ref["name"], ref["key"])
                if not url:
                    return f"Secret {ref['name']} has no key {ref['key']}"
            payload = webhook_payload(hook.get("format", "json"), item["event"], meta["namespace"], meta["name"],
                                      spec.get("training", {}).get("modelName", ""), item.get("run") or {},
                                      item.get("createdTime", ""))
            post_json(str(url), payload, timeout)
            return None
        uri = (spec.get("mlflow") or {}).get("trackingUri") or deps.settings.mlflow_tracking_uri
        auth = _mlflow_auth(deps, meta["namespace"], spec)
        model, version = item["model"], item["version"]
        if item["kind"] == "approve":
            set_alias(uri, model, CHALLENGER_ALIAS, version, auth, timeout)
            set_version_tag(uri, model, version, APPROVAL_TAG, "approved", auth, timeout)
        elif item["kind"] == "reject":
            set_version_tag(uri, model, version, APPROVAL_TAG, "rejected", auth, timeout)
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300]


def _mlflow_auth(deps: Deps, namespace: str, spec: Mapping[str, Any]) -> MlflowAuth:
    ref = (spec.get("mlflow") or {}).get("credentialsSecretRef")
    if not ref:
        return MlflowAuth()

    def get(key: str) -> str:
        return deps.kube.secret_value(namespace, ref["name"], key) or ""

    return MlflowAuth(get("MLFLOW_TRACKING_USERNAME"), get("MLFLOW_TRACKING_PASSWORD"), get("MLFLOW_TRACKING_TOKEN"))


class Scheduler:
    """Per object: when its next reconcile is due. One reconcile per object at a time."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.resync = deps.settings.retrain_resync_seconds
        self.due: dict[Key, float] = {}
        self.running: set[Key] = set()
        self.seen: dict[Key, Any] = {}
        self.wake = asyncio.Event()
        self.workers = asyncio.Semaphore(deps.settings.retrain_workers)
        self.tasks: set[asyncio.Task[None]] = set()

    def poke(self, key: Key) -> None:
        self.due[key] = 0.0
        self.wake.set()

    def forget(self, key: Key) -> None:
        self.due.pop(key, None)
        self.seen.pop(key, None)

    async def run(self) -> None:
        while True:
            self.wake.clear()  # before looking, so a wake-up during the look is not lost
            now = time.monotonic()
            for key, at in list(self.due.items()):
                if at <= now and key not in self.running:
                    self.running.add(key)
                    task = asyncio.create_task(self._one(key))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
            waiting = [at for key, at in self.due.items() if key not in self.running]
            delay = max(0.02, min(waiting, default=now + self.resync) - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=delay)

    async def _one(self, key: Key) -> None:
        async with self.workers:
            self.due[key] = time.monotonic() + self.resync  # a poke during the reconcile makes it due again
            try:
                requeue = await asyncio.to_thread(reconcile, self.deps, *key)
                if requeue is None:
                    self.forget(key)
                elif key in self.due:
                    # a little past the moment, so the clock has certainly reached it
                    self.due[key] = min(self.due[key], time.monotonic() + requeue + 0.05)
            except Conflict:
                if key in self.due:
                    self.due[key] = min(self.due[key], time.monotonic() + 0.1)
            except Exception:
                log.exception("reconcile of RetrainSchedule %s/%s failed; retrying", *key)
                if key in self.due:
                    self.due[key] = min(self.due[key], time.monotonic() + 5.0)
            finally:
                self.running.discard(key)
                self.wake.set()


_scheduler: Scheduler | None = None
_task: asyncio.Task[None] | None = None


@kopf.on.startup()
async def retrainschedule_startup(**_: Any) -> None:
    global _scheduler, _task
    settings = OperatorSettings()
    _scheduler = Scheduler(Deps(settings, Kube(), Clock(settings.test_clock_file)))
    _task = asyncio.create_task(_scheduler.run())


@kopf.on.cleanup()
async def retrainschedule_cleanup(**_: Any) -> None:
    if _task is not None:
        _task.cancel()


def _signature(body: Mapping[str, Any]) -> tuple[Any, ...]:
    meta = body.get("metadata") or {}
    ann = meta.get("annotations") or {}
    return (meta.get("generation"), meta.get("deletionTimestamp"),
            *(ann.get(k) for k in (ANNOTATION_RETRAIN_REQUESTED, ANNOTATION_APPROVE, ANNOTATION_REJECT)))


@kopf.on.event(GROUP, VERSION, RETRAIN_SCHEDULES)
async def retrainschedule_event(event: kopf.RawEvent, body: kopf.Body, name: str, namespace: str | None,
                                **_: Any) -> None:
    if _scheduler is None or namespace is None:
        return
    key = (namespace, name)
    if event.get("type") == "DELETED":
        _scheduler.forget(key)
        return
    sig = _signature(body)
    if _scheduler.seen.get(key) != sig:  # our own status writes do not wake the controller
        _scheduler.seen[key] = sig
        _scheduler.poke(key)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_OWNER_KIND: RETRAIN_SCHEDULE})
async def retrainschedule_job_event(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    owner = labels.get(LABEL_OWNER_NAME)
    if _scheduler is not None and owner and namespace:
        _scheduler.poke((namespace, owner))
