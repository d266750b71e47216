"""RetrainSchedule: kopf registration and the kind-specific observe/apply around `decide.retrain.tick`.

The machinery (scheduler, status writer, outbox, budget, leader Lease) is the controller runtime's
(`modelops.controller`); no kopf timer or daemon, so no finalizer: a schedule can be deleted while the
operator is down, and nothing needs cleanup (Jobs and ConfigMaps are owned and garbage-collected). The
tick says when the next cron firing or drift check is, watch events on the object (spec, annotations)
and on its Jobs make it due at once, and a resync interval bounds the wait.

A reconcile, in the order that makes it crash-safe (see decide/retrain.py):
  read object -> query Prometheus if a drift check is due -> observe Jobs and Pods -> tick ->
  write status, with the new outbox items and Events (optimistic concurrency) -> create Jobs
  (create-if-absent; a refused create fails its run) -> delete Jobs -> perform the outbox (Events,
  webhooks, MLflow, in order) -> record the results in status.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import kopf

from modelops.adapters.kube import KubeError
from modelops.adapters.notify import NotifyError
from modelops.adapters.registry import RegistryError
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
from modelops.api.times import format_time, parse_time
from modelops.api.types import EVENT_KIND, OutboxItem, Sample
from modelops.api.vocabulary import CHALLENGER_ALIAS, TAG_APPROVAL
from modelops.controller.budget import Budget
from modelops.controller.outbox import drain
from modelops.controller.runtime import Kind, Runtime, runtime
from modelops.controller.scheduler import CHANGE, REPORT
from modelops.controller.status import StatusWriter
from modelops.decide import outbox, quality
from modelops.decide.job_status import job_views
from modelops.decide.retrain import TickInput, drift_check_due, quality_check_due, tick
from modelops.decide.spec_checks import retrain_schedule_problems
from modelops.desired.notification import webhook_payload
from modelops.desired.training_job import JobDefaults, spec_config_map, training_job

log = logging.getLogger("modelops.retrain")
#: API answers to a create that retrying cannot fix: the run fails with the message
PERMANENT = frozenset({400, 403, 404, 409, 422})


def _writer(rt: Runtime) -> StatusWriter:
    return StatusWriter(rt.kube, GROUP, VERSION, RETRAIN_SCHEDULES, RETRAIN_SCHEDULE, rt.cache, rt.field_manager)


def _get(rt: Runtime, namespace: str, name: str) -> dict[str, Any] | None:
    return rt.kube.get(GROUP, VERSION, RETRAIN_SCHEDULES, namespace, name)


def reconcile(rt: Runtime, namespace: str, name: str, budget: Budget) -> float | None:
    """One reconcile; seconds until the next one is needed, None when the object is gone."""
    key = (namespace, name)
    obj = _get(rt, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        rt.create_failures.pop(key, None)
        return None
    spec = obj.get("spec") or {}
    now = rt.clock.now()
    problems = retrain_schedule_problems(spec)
    sample = None
    if drift_check_due(obj, now, problems):
        drift = spec["triggers"]["drift"]
        sample = rt.clients.prometheus(drift.get("prometheusUrl") or rt.settings.prometheus_url).query_value(
            drift["query"], timeout=budget.timeout(rt.settings.http_timeout_seconds))
        if sample.error is not None:
            rt.metrics.adapter_error("prometheus", sample.reason or "QueryFailed")
    observation = (observe_quality(rt, spec, namespace, budget) if quality_check_due(obj, now, problems)
                   else None)
    # after reading the object: see decide/retrain.py
    jobs, pods = rt.kube.list_jobs_and_pods(namespace, f"{LABEL_OWNER_KIND}={RETRAIN_SCHEDULE},"
                                                       f"{LABEL_OWNER_NAME}={name}")
    created = parse_time(obj["metadata"].get("creationTimestamp")) or now
    plan = tick(TickInput(obj, job_views(jobs, pods), now, anchor=now if rt.clock.overridden else created,
                          problems=problems, drift_sample=sample, create_failed=rt.create_failures.pop(key, {}),
                          performance=observation))
    status = dict(plan.status)
    status["outbox"] = [*list(status.get("outbox") or []),
                        *outbox.event_items(plan.events, f"{obj['metadata'].get('generation')}/{format_time(now)}/"
                                                        f"{uuid.uuid4().hex[:8]}")]
    if not status["outbox"] and "outbox" not in (obj.get("status") or {}):
        status.pop("outbox")
    writer = _writer(rt)
    rt.ensure_acting()
    before = obj.get("status") or {}
    obj = writer.write(obj, before, status)  # the intent is recorded before any Job exists
    rt.metrics.retrain(namespace, name, before, status)
    soon = False
    for run in plan.create:
        rt.ensure_acting()
        try:
            rt.kube.create_if_absent(spec_config_map(obj, run))
            if rt.kube.create_if_absent(training_job(obj, run, _defaults(rt))):
                log.info("created Job %s/%s for run %s (%s)", namespace, run["job"], run["id"], run["trigger"])
        except KubeError as exc:
            if exc.status not in PERMANENT:
                raise
            log.warning("%s/%s: the Job of run %s was refused: %s", namespace, name, run["id"], exc)
            rt.create_failures.setdefault(key, {})[run["id"]] = str(exc)
            soon = True
    for job in plan.delete:
        rt.ensure_acting()
        rt.kube.delete_job(namespace, job)
    obj = run_outbox(rt, obj, budget, now)
    resync = rt.settings.retrain_resync_seconds
    wait = resync if plan.requeue_after is None else min(plan.requeue_after, resync)
    for item in (obj.get("status") or {}).get("outbox") or []:
        nb = parse_time(item.get("notBefore"))
        wait = min(wait, 0.05 if nb is None else max(0.05, (nb - now).total_seconds() + 0.05))
    return 0.05 if soon else wait


def observe_quality(rt: Runtime, spec: Mapping[str, Any], namespace: str,
                    budget: Budget) -> quality.PerformanceObservation:
    """The performance trigger's queries: which version to judge, its quality and its joined labels."""
    cfg = quality.performance_config(spec, namespace)
    assert cfg is not None
    perf = spec["triggers"]["performance"]
    prom = rt.clients.prometheus(perf.get("prometheusUrl") or rt.settings.prometheus_url)

    def ask(promql: str) -> Sample:
        if budget.exhausted:
            msg = f"reconcile time budget of {budget.seconds:g}s spent before this query"
            return Sample(None, "BudgetExhausted", msg, error=msg)
        return prom.query(promql, timeout=budget.timeout(rt.settings.http_timeout_seconds))

    if cfg.version:
        found, version = Sample(), cfg.version
    else:
        found = ask(quality.busiest_version_promql(cfg.namespace, cfg.model))
        version = found.label("version") if found.has_value else ""
    if not version:
        return quality.PerformanceObservation("", found)
    value = ask(quality.value_promql(cfg.source, cfg.metric, cfg.namespace, cfg.model, version))
    labels = ask(quality.labels_promql(cfg.namespace, cfg.model, version)) if cfg.source == "realised" else None
    return quality.PerformanceObservation(version, found, value, labels)


def _defaults(rt: Runtime) -> JobDefaults:
    return JobDefaults(trainer_image=rt.settings.trainer_image, mlflow_tracking_uri=rt.settings.mlflow_tracking_uri)


def run_outbox(rt: Runtime, obj: dict[str, Any], budget: Budget, now: datetime) -> dict[str, Any]:
    meta = obj["metadata"]
    writer = _writer(rt)

    def write(current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        rt.ensure_acting()
        return writer.write(current, current.get("status") or {}, new)

    return drain(obj, lambda current, item: perform(rt, current, item, budget), write,
                 lambda: _get(rt, meta["namespace"], meta["name"]), now, budget, registry_condition="always")


def perform(rt: Runtime, obj: Mapping[str, Any], item: OutboxItem, budget: Budget) -> str | None:
    """Do one outbox item; None on success, else an error message without secrets."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    budget.check(f"{item.get('kind')} {item.get('id')}")
    rt.ensure_acting()
    timeout = budget.timeout(rt.settings.http_timeout_seconds)
    kind = item.get("kind")
    try:
        if kind == EVENT_KIND:
            log.log(logging.WARNING if item.get("type") == "Warning" else logging.INFO, "%s %s/%s: %s: %s",
                    RETRAIN_SCHEDULE, meta["namespace"], meta["name"], item.get("reason"), item.get("message"))
            rt.kube.event(obj, str(item.get("type")), str(item.get("reason")), str(item.get("message")),
                          key=str(item["id"]), instance=rt.identity)
            return None
        if kind == "notify":
            hooks = (spec.get("notifications") or {}).get("webhooks") or []
            if item.get("webhook", 0) >= len(hooks):
                return None  # the webhook was removed from the spec: nothing to send
            hook = hooks[item["webhook"]]
            url = hook.get("url")
            ref = hook.get("urlSecretRef")
            if ref:
                url = rt.kube.secret_value(meta["namespace"], ref["name"], ref["key"])
                if not url:
                    return f"Secret {ref['name']} has no key {ref['key']}"
            payload = webhook_payload(hook.get("format", "json"), item["event"], meta["namespace"], meta["name"],
                                      spec.get("training", {}).get("modelName", ""), item.get("run") or {},
                                      item.get("createdTime", ""))
            rt.clients.notifier.post_json(str(url), payload, timeout)
            return None
        if kind not in ("approve", "reject"):
            return None
        mlflow = spec.get("mlflow") or {}
        uri = mlflow.get("trackingUri") or rt.settings.mlflow_tracking_uri
        secret = (mlflow.get("credentialsSecretRef") or {}).get("name", "")
        reg = rt.clients.registry(uri, meta["namespace"], secret)
        model, version = item["model"], item["version"]
        try:
            if kind == "approve":
                reg.set_alias(model, CHALLENGER_ALIAS, version)
                reg.set_version_tag(model, version, TAG_APPROVAL, "approved")
            else:
                reg.set_version_tag(model, version, TAG_APPROVAL, "rejected")
            for key, value in (item.get("tags") or {}).items():  # the audit record of a CLI decision
                reg.set_version_tag(model, version, str(key), str(value))
        except RegistryError as exc:
            rt.clients.registry_failed(uri, meta["namespace"], secret, exc)
            raise
        return None
    except (KubeError, NotifyError, RegistryError) as exc:
        reason = f"{exc.reason}: " if isinstance(exc, RegistryError) else ""
        return f"{reason}{exc}"[:300]


def report_error(rt: Runtime, namespace: str, name: str, message: str | None) -> None:
    rt.report_condition(GROUP, VERSION, RETRAIN_SCHEDULES, RETRAIN_SCHEDULE, namespace, name, message)


KIND = Kind(RETRAIN_SCHEDULE, reconcile, report_error)
_SEEN: dict[tuple[str, str], tuple[Any, ...]] = {}


def _signature(body: Mapping[str, Any]) -> tuple[Any, ...]:
    meta = body.get("metadata") or {}
    ann = meta.get("annotations") or {}
    return (meta.get("generation"), meta.get("deletionTimestamp"),
            *(ann.get(k) for k in (ANNOTATION_RETRAIN_REQUESTED, ANNOTATION_APPROVE, ANNOTATION_REJECT)))


@kopf.on.event(GROUP, VERSION, RETRAIN_SCHEDULES)
async def retrainschedule_event(event: kopf.RawEvent, body: kopf.Body, name: str, namespace: str | None,
                                **_: Any) -> None:
    scheduler = KIND.scheduler
    if scheduler is None or namespace is None:
        return
    key = (namespace, name)
    if event.get("type") == "DELETED":
        scheduler.forget(key)
        _SEEN.pop(key, None)
        runtime().create_failures.pop(key, None)
        runtime().metrics.forget(RETRAIN_SCHEDULE, namespace, name)
        return
    sig = _signature(body)
    if _SEEN.get(key) != sig:  # our own status writes do not wake the controller
        _SEEN[key] = sig
        scheduler.touch(key, priority=CHANGE)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_OWNER_KIND: RETRAIN_SCHEDULE})
async def retrainschedule_job_event(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    owner = labels.get(LABEL_OWNER_NAME)
    scheduler = KIND.scheduler
    if scheduler is not None and owner and namespace:
        scheduler.touch((namespace, owner), priority=REPORT)
