"""ModelDeployment: kopf registration and the kind-specific observe/apply around `decide.rollout.tick`.

The machinery (scheduler, watch cache, status writer, outbox, budget, leader Lease) is the controller
runtime's (`modelops.controller`). One reconcile:

1. read the object from the watch cache (a GET when unknown) and read an old-shape status once
   (`status.pendingActions` becomes `status.outbox`); acknowledge a new generation at once;
2. perform the outbox items a previous pass left due (registry writes in order, notifications, Events);
3. observe: resolve the model in MLflow (with pending alias writes applied, so a half-done promotion is
   never mistaken for a new version), read the InferenceService, the deployment mode and whether the CRD
   can express a canary, and query Prometheus when an analysis is due (within the reconcile's budget);
4. `tick(spec, status, observed, now)`;
5. write status with a resourceVersion precondition: the decision, its registry writes, notifications and
   Events are durable in `status.outbox` before any effect;
6. server-side apply the InferenceService derived from status, perform the outbox, record the results.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import kopf

from modelops import __version__
from modelops.adapters.kube import KubeError
from modelops.adapters.notify import NotifyError, Webhook
from modelops.adapters.registry import MlflowRegistry, ModelVersion, RegistryError
from modelops.api import GROUP, MODEL_DEPLOYMENT, MODEL_DEPLOYMENTS, VERSION
from modelops.api.times import format_duration, format_time, parse_time
from modelops.api.types import EVENT_KIND, REGISTRY_KINDS, Buckets, ModelRef, OutboxItem, Sample
from modelops.api.vocabulary import CHALLENGER_ALIAS, MANAGER, TAG_REJECTED
from modelops.controller.budget import Budget
from modelops.controller.outbox import drain
from modelops.controller.runtime import Kind, Runtime, runtime
from modelops.controller.scheduler import CHANGE, REPORT
from modelops.controller.status import StatusWriter
from modelops.decide import analysis, outbox
from modelops.decide.conditions import Condition, merge_conditions
from modelops.decide.kserve_status import APPLIED, applied_record, apply_needed, isvc_state, mode_condition
from modelops.decide.rollout import (
    Observed,
    Resolution,
    analysis_due,
    analysis_interval,
    metrics_of,
    tick,
    tracked_alias,
    uses_candidate_alias,
)
from modelops.decide.slo import BudgetState, budget_verdict, fast_burn_query, slos_of
from modelops.decide.spec_checks import model_deployment_problems
from modelops.desired.inference_service import (
    ISVC_PLURAL,
    KSERVE_GROUP,
    KSERVE_VERSION,
    Defaults,
    canary_support,
    carry_legacy_metadata,
    deployment_mode,
    frozen_canary_percent,
    inference_service,
    manifest_hash,
    predictor_name,
)
from modelops.formats.artifacts import TAG_ARTIFACT_SHA256
from modelops.handlers.traffic import (
    apply_traffic,
    isvc_hold,
    plan_traffic,
    prepare_service,
    route_first,
    traffic_status,
)

log = logging.getLogger("modelops.modeldeployment")
ISVC = "InferenceService"
#: A minimal Standard-mode InferenceService with a canary, dry-run created to learn whether the installed CRD
#: has spec.canary (KServe >= 0.20).
CANARY_PROBE: dict[str, Any] = {
    "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}", "kind": "InferenceService",
    "metadata": {"generateName": "modelops-canary-probe-",
                 "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
    "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://probe/stable"}},
             "canary": [{"trafficPercent": 0, "predictor": {"name": "probe", "model": {
                 "name": "kserve-container", "modelFormat": {"name": "sklearn"}, "storageUri": "s3://probe/canary"}}}]},
}


def _writer(rt: Runtime) -> StatusWriter:
    return StatusWriter(rt.kube, GROUP, VERSION, MODEL_DEPLOYMENTS, MODEL_DEPLOYMENT, rt.cache, rt.field_manager)


# ------------------------------------------------------------------------------------------ observing
def _registry_target(rt: Runtime, spec: Mapping[str, Any], namespace: str) -> tuple[MlflowRegistry, str, str]:
    reg = spec.get("registry") or {}
    uri = reg.get("trackingUri") or rt.settings.mlflow_tracking_uri
    secret = (reg.get("credentialsSecretRef") or {}).get("name", "")
    return rt.clients.registry(uri, namespace, secret), uri, secret


def _ref(rt: Runtime, reg: MlflowRegistry, mv: ModelVersion, alias: str) -> ModelRef:
    return ModelRef(storage_uri=rt.clients.storage_uri(reg, mv), version=mv.version, run_id=mv.run_id, alias=alias,
                    rejected=mv.tags.get(TAG_REJECTED, ""), digest=mv.tags.get(TAG_ARTIFACT_SHA256, ""))


def _pending_alias_writes(reg: MlflowRegistry, name: str, alias: str, current: ModelVersion | None,
                          pending: Sequence[Mapping[str, Any]]) -> ModelVersion | None:
    """What `alias` will point at once the pending registry writes of the outbox are through (in order)."""
    for item in pending:
        if item.get("model") != name or item.get("alias") != alias:
            continue
        have = current.version if current is not None else None
        if item.get("kind") == "SetAlias":
            if item.get("ifVersion") is None or have in (item.get("ifVersion"), item.get("version")):
                current = current if have == item.get("version") else reg.get_version(name, str(item["version"]))
        elif item.get("kind") == "DeleteAlias" and (item.get("ifVersion") is None or have == item.get("ifVersion")):
            current = None
    return current


def resolve(rt: Runtime, spec: Mapping[str, Any], namespace: str,
            pending: Sequence[Mapping[str, Any]] = ()) -> Resolution:
    """The model to serve, as the registry will say once the `pending` outbox writes are done."""
    model = spec.get("model") or {}
    if model.get("storageUri"):
        return Resolution(ModelRef(storage_uri=model["storageUri"]))
    name = model.get("name", "")
    try:
        reg, uri, secret = _registry_target(rt, spec, namespace)
        try:
            if model.get("version"):
                mv = reg.get_version(name, str(model["version"]))
                if mv is None:
                    return Resolution(error=f"{name} version {model['version']} does not exist in MLflow",
                                      reason="VersionNotFound")
                return Resolution(_ref(rt, reg, mv, ""))
            alias = tracked_alias(spec)
            writes = [i for i in pending if i.get("kind") in ("SetAlias", "DeleteAlias")]
            tracked = _pending_alias_writes(reg, name, alias, reg.get_alias(name, alias), writes)
            candidate = None
            if uses_candidate_alias(spec):
                candidate = _pending_alias_writes(reg, name, CHALLENGER_ALIAS, reg.get_alias(name, CHALLENGER_ALIAS),
                                                  writes)
            if tracked is None and candidate is None:
                return Resolution(error=f"registered model {name!r} has no alias {alias!r}"
                                  + (f" or {CHALLENGER_ALIAS!r}" if uses_candidate_alias(spec) else ""),
                                  reason="AliasNotFound")
            return Resolution(_ref(rt, reg, tracked, alias) if tracked else None,
                              _ref(rt, reg, candidate, CHALLENGER_ALIAS) if candidate else None)
        except RegistryError as exc:
            rt.clients.registry_failed(uri, namespace, secret, exc)
            raise
    except RegistryError as exc:
        return Resolution(error=str(exc), reason=exc.reason)


def run_analysis(rt: Runtime, spec: Mapping[str, Any], namespace: str, name: str, observed_isvc: Any,
                 budget: Budget, status: Mapping[str, Any] | None = None) -> list[analysis.Check]:
    an = (spec.get("rollout") or {}).get("analysis") or {}
    prom = rt.clients.prometheus(an.get("prometheusUrl") or rt.settings.prometheus_url)
    window = format_duration(analysis_interval(spec))
    revision = {"canary": getattr(observed_isvc, "canary_revision", ""),
                "stable": getattr(observed_isvc, "stable_revision", "")}
    # what each side serves (the MLflow version, or uXXXXXXXX for a plain URI): the model server's and the drift
    # exporter's series carry it as their `version` label, which is how a query tells the two sides apart
    versions = {side: analysis.served_version((status or {}).get(side)) for side in ("canary", "stable")}
    context: dict[analysis.Side, dict[str, str]] = {
        side: {"namespace": namespace, "name": name, "side": side, "revision": revision[side],
               "version": versions[side], "interval": window}
        for side in ("canary", "stable")}
    metrics = metrics_of(spec)
    samples: dict[tuple[str, analysis.Side], Sample] = {}
    buckets: dict[tuple[str, analysis.Side], Buckets] = {}  # a latency quantile's test reads these (decide/analysis)
    for q in analysis.queries(metrics, context):
        if budget.exhausted:  # an error, not no data: the verdict is Error, never a pass
            msg = f"reconcile time budget of {budget.seconds:g}s spent before this query"
            if q.kind == "buckets":
                buckets[(q.metric, q.side)] = Buckets(reason="BudgetExhausted", message=msg, error=msg)
            else:
                samples[(q.metric, q.side)] = Sample(None, "BudgetExhausted", msg, error=msg)
            continue
        timeout = budget.timeout(rt.settings.http_timeout_seconds)
        got: Sample | Buckets
        if q.kind == "buckets":
            got = buckets[(q.metric, q.side)] = prom.query_buckets(q.promql, timeout=timeout)
        else:
            got = samples[(q.metric, q.side)] = prom.query(q.promql, timeout=timeout)
        if got.error is not None:
            rt.metrics.adapter_error("prometheus", got.reason or "QueryFailed")
    return analysis.evaluate_all(metrics, samples, buckets)


def slo_budget(rt: Runtime, spec: Mapping[str, Any], namespace: str, name: str,
               budget: Budget) -> BudgetState | None:
    """[issue 14] Whether the fast-burn alert of this deployment's SLOs fires (None: it declares no SLO)."""
    slos = slos_of(spec)
    if not slos:
        return None
    if budget.exhausted:
        return budget_verdict(slos, None, f"reconcile time budget of {budget.seconds:g}s spent")
    an = (spec.get("rollout") or {}).get("analysis") or {}
    prom = rt.clients.prometheus(an.get("prometheusUrl") or rt.settings.prometheus_url)
    sample = prom.query(fast_burn_query(namespace, name), timeout=budget.timeout(rt.settings.http_timeout_seconds))
    if sample.error is not None:
        rt.metrics.adapter_error("prometheus", sample.reason or "QueryFailed")
    return budget_verdict(slos, sample.value if sample.has_value else None, sample.error)


def _dependency_urls(rt: Runtime, spec: Mapping[str, Any]) -> list[str]:
    """The MLflow and Prometheus this object talks to (webhook hosts are not named in status)."""
    an = (spec.get("rollout") or {}).get("analysis") or {}
    urls = [an.get("prometheusUrl") or rt.settings.prometheus_url]
    if not (spec.get("model") or {}).get("storageUri"):
        urls.append((spec.get("registry") or {}).get("trackingUri") or rt.settings.mlflow_tracking_uri)
    return urls


def webhooks(rt: Runtime, spec: Mapping[str, Any], namespace: str) -> list[Webhook]:
    out = []
    for hook in (spec.get("notifications") or {}).get("webhooks") or []:
        url = hook.get("url", "")
        ref = hook.get("urlSecretRef")
        if ref:
            url = rt.kube.secret_value(namespace, ref["name"], ref["key"]) or url
        out.append(Webhook(url=url, format=hook.get("format", "json"), events=tuple(hook.get("events") or ())))
    return out


# ------------------------------------------------------------------------------------------ the outbox
def perform(rt: Runtime, body: Mapping[str, Any], item: OutboxItem, budget: Budget) -> str | None:
    """Do one outbox item of a ModelDeployment; None when done, else the error (never a URL or secret)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    kind = item.get("kind")
    budget.check(f"{kind} {item.get('id')}")
    rt.ensure_acting()
    if kind == EVENT_KIND:
        log.log(logging.WARNING if item.get("type") == "Warning" else logging.INFO, "%s: %s", item.get("reason"),
                item.get("message"), extra={"k8s_ref": {"apiVersion": body["apiVersion"], "kind": body["kind"],
                                                        "name": meta["name"], "uid": meta["uid"],
                                                        "namespace": meta["namespace"]}})
        try:
            rt.kube.event(body, str(item.get("type")), str(item.get("reason")), str(item.get("message")),
                          key=str(item["id"]), instance=rt.identity)
        except KubeError as exc:
            return f"posting the Event: {exc}"
        return None
    if kind == "Notify":
        try:
            hooks = webhooks(rt, spec, meta["namespace"])
            if hooks:
                rt.clients.notifier.send(hooks, str(item["event"]), str(item["message"]),
                                         {"kind": MODEL_DEPLOYMENT, "namespace": meta["namespace"],
                                          "name": meta["name"]},
                                         timeout=budget.timeout(rt.settings.http_timeout_seconds))
        except (NotifyError, KubeError) as exc:
            return str(exc)
        return None
    if kind not in REGISTRY_KINDS:
        return None  # an unknown kind (a newer operator's) is dropped rather than retried forever
    reg = None
    try:
        reg, uri, secret = _registry_target(rt, spec, meta["namespace"])
        if kind == "SetAlias":
            reg.set_alias(item["model"], item["alias"], item["version"], item.get("ifVersion"))
        elif kind == "DeleteAlias":
            reg.delete_alias(item["model"], item["alias"], item.get("ifVersion"))
        elif kind == "TagVersion":
            for key, value in (item.get("tags") or {}).items():
                reg.set_version_tag(item["model"], item["version"], key, value)
    except RegistryError as exc:
        if reg is not None:
            rt.clients.registry_failed(uri, meta["namespace"], secret, exc)
        return f"{exc.reason}: {exc}"
    return None


def run_outbox(rt: Runtime, body: dict[str, Any], budget: Budget, now: datetime) -> dict[str, Any]:
    """Perform the runnable outbox items and record the results; the object as written."""
    meta = body["metadata"]
    writer = _writer(rt)

    def write(obj: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        rt.ensure_acting()
        return writer.write(obj, obj.get("status") or {}, new)

    return drain(body, lambda obj, item: perform(rt, obj, item, budget), write,
                 lambda: rt.kube.get(GROUP, VERSION, MODEL_DEPLOYMENTS, meta["namespace"], meta["name"]), now, budget)


def _status_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """Status without kopf's leftovers, in today's shape (an old `pendingActions` read once)."""
    status = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
    return outbox.from_pending_actions(status)


def next_due(status: Mapping[str, Any], now: datetime, requeue: float) -> float:
    """The tick's requeue, or sooner when an outbox item falls due before it."""
    waits = [requeue]
    for item in status.get("outbox") or []:
        nb = parse_time(item.get("notBefore"))
        waits.append(0.05 if nb is None else max(0.05, (nb - now).total_seconds() + 0.05))
    return min(waits)


# ------------------------------------------------------------------------------------------ reconcile
def read(rt: Runtime, namespace: str, name: str) -> dict[str, Any] | None:
    key = (namespace, name)
    body = rt.cache.get(MODEL_DEPLOYMENT, key)
    if body is None:
        body = rt.kube.get(GROUP, VERSION, MODEL_DEPLOYMENTS, namespace, name)
        if body is not None:
            rt.cache.remember(MODEL_DEPLOYMENT, key, body)
    return body


def reconcile(rt: Runtime, namespace: str, name: str, budget: Budget) -> float | None:
    """One full reconcile of one ModelDeployment; seconds until the next one (None: the object is gone)."""
    kube = rt.kube
    key = (namespace, name)
    body = read(rt, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    meta, spec = body["metadata"], body.get("spec") or {}
    status = _status_of(body)
    now = rt.clock.now()
    generation = int(meta.get("generation", 0))
    writer = _writer(rt)
    migrate = status != (body.get("status") or {})
    if migrate or (status.get("observedGeneration") != generation and not (spec.get("model") or {}).get("storageUri")):
        # Acknowledge a new generation at once (resolving in MLflow can take a few seconds); an old-shape
        # status is rewritten in today's shape in the same write.
        rt.ensure_acting()
        body = writer.write(body, body.get("status") or {}, acknowledge(body, status, spec, now))
        status = _status_of(body)
    body = run_outbox(rt, body, budget, now)
    status = _status_of(body)

    mode = deployment_mode(spec, kube.config_map_value(rt.settings.kserve_namespace, "inferenceservice-config",
                                                       "deploy"))
    has_canary = kube.accepts_field(KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL, namespace, CANARY_PROBE,
                                    "spec.canary")
    supported, why = canary_support(mode, has_canary)
    if rt.cache.has(ISVC, key):
        isvc_obj = rt.cache.get(ISVC, key)
    else:
        isvc_obj = kube.get(KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL, namespace, name)
        rt.cache.remember(ISVC, key, isvc_obj)
    isvc = isvc_state(isvc_obj, meta["uid"], mode)
    problems = model_deployment_problems(spec)
    pending = [i for i in status.get("outbox") or [] if i.get("kind") in REGISTRY_KINDS]
    resolution = resolve(rt, spec, namespace, pending) if not problems else Resolution()
    checks = (run_analysis(rt, spec, namespace, name, isvc, budget, status)
              if not problems and analysis_due(spec, status, now) else None)
    budget_state = slo_budget(rt, spec, namespace, name, budget) if not problems else None
    observed = Observed(generation=generation, resolution=resolution, isvc=isvc, mode=mode,
                        canary_supported=supported, canary_unsupported=why,
                        annotations=dict(meta.get("annotations") or {}), checks=checks, spec_problems=problems,
                        allowed_storage_uris=rt.settings.allowed_storage_uri_list(), budget=budget_state,
                        namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""))
    decision = tick(spec, status, observed, now)
    new_status = decision.status
    new_status["inferenceService"] = name
    new_status["deploymentMode"] = mode
    # [issue 13] Knative mode on a cluster without Knative Serving: a clear condition, not a silent wait
    # [issue 16, M12] a dependency whose circuit breaker is open: said in a condition, work waits
    deps = rt.clients.dependency_condition(_dependency_urls(rt, spec), new_status.get("conditions"))
    new_status["conditions"] = merge_conditions(new_status.get("conditions"), [
        mode_condition(mode, mode != "Knative" or kube.group_version_served("serving.knative.dev", "v1")),
        *([deps] if deps else [])], generation, now)
    new_status["outbox"] = [*list(status.get("outbox") or []), *new_items(spec, decision, generation, now)]
    new_status.pop("pendingActions", None)
    if not new_status["outbox"]:
        new_status.pop("outbox")
    # [issue 13] the gateway split of a Standard-mode canary (handlers/traffic.py): who splits, and modelops' route
    traffic = None
    if decision.plan is not None and mode == "Standard":
        ingress = kube.config_map_value(rt.settings.kserve_namespace, "inferenceservice-config", "ingress")
        logs = bool((spec.get("logger") or {}).get("enabled", True))
        traffic = plan_traffic(kube, rt.settings, namespace, name, meta["uid"], decision.plan, ingress, logs,
                               status.get("traffic"))
        new_status["traffic"] = dict(traffic_status(traffic, (status.get("traffic") or {}).get("message", "")
                                                    if traffic.route is not None else ""))
    rt.ensure_acting()
    body = writer.write(body, body.get("status") or {}, new_status)
    rt.metrics.rollout(namespace, name, new_status, checks, [e.reason for e in decision.events])
    rt.metrics.slos(namespace, name, slos_of(spec) if not problems else [])

    held = ""
    if decision.plan is not None:
        settings = rt.settings
        plan = decision.plan
        modelops_route = traffic is not None and traffic.owner == "modelops"
        # [issue 13] modelops' route carries the steps: the canary's trafficPercent stays as it was created, so a
        # step changes nothing in the InferenceService (KServe would act on a new generation for nothing)
        percent = None
        if modelops_route and plan.canary is not None:
            percent = frozen_canary_percent(isvc_obj, predictor_name(plan.canary))
        manifest = carry_legacy_metadata(inference_service(
            name=name, namespace=namespace, uid=meta["uid"], spec=spec, plan=plan, mode=mode,
            defaults=Defaults(settings.server_image, settings.drift_exporter_url, settings.drift_token,
                              settings.drift_exporter_shards),
            legacy_mode_names=not has_canary, modelops_route=modelops_route, canary_traffic_percent=percent),
            isvc_obj)
        want = manifest_hash(manifest)
        record = _status_of(body).get(APPLIED)
        # [issue 13] a change that removes a predictor: the route goes first, and the InferenceService waits
        # until the gateway serves it (KServe deletes the removed predictor's Service at once)
        routed, held = None, ""
        if traffic is not None and apply_needed(isvc_obj, record, want) and \
                route_first(kube, namespace, traffic, name, isvc_obj, manifest):
            rt.ensure_acting()
            routed = apply_traffic(kube, namespace, traffic, rt.clock.now())
            held = isvc_hold(traffic, name, isvc_obj, manifest, rt.clock.now())
        if held:
            log.info("%s/%s: %s", namespace, name, held)
        elif isvc_obj is not None and not apply_needed(isvc_obj, record, want) and not record:
            # [issue 13] an InferenceService applied by an operator before the fix, up to date: remember it as
            # applied (read once) instead of rewriting it
            body = _record_applied(rt, writer, body, applied_record(isvc_obj, want))
        elif apply_needed(isvc_obj, record, want):
            live = None
            prepare_service(kube, traffic)  # [issue 13] a canary's Service of modelops exists before its Pods
            try:
                rt.ensure_acting()
                live = kube.apply(KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL, manifest)
                rt.cache.remember(ISVC, key, live)
            except KubeError as exc:
                log.error("%s/%s: applying the InferenceService failed: %s", namespace, name, exc)
                current = _status_of(body)
                failed = dict(current)
                failed["conditions"] = merge_conditions(current.get("conditions"), [
                    Condition("InferenceServiceReady", "False", "ApplyFailed", str(exc))], generation, now)
                body = writer.write(body, body.get("status") or {}, failed)
            if live is not None:
                body = _record_applied(rt, writer, body, applied_record(live, want))
        if traffic is not None:  # [issue 13] after the InferenceService: its predictor Services exist by now
            rt.ensure_acting()
            if routed is None:
                routed = apply_traffic(kube, namespace, traffic, rt.clock.now())
            moved = dict(_status_of(body))
            moved["traffic"] = dict(traffic_status(traffic, "; ".join(m for m in (held, routed) if m)))
            body = writer.write(body, body.get("status") or {}, moved)
    body = run_outbox(rt, body, budget, now)
    final = _status_of(body)
    # [issue 13] a Service of modelops waits for the gateway to serve the route without it, or carries a just
    # promoted version until KServe's Service reaches its agent; an InferenceService change waits for the
    # gateway to serve the route without the predictor it removes: look again soon
    shown = final.get("traffic") or {}
    requeue = decision.requeue_after
    if shown.get("retiring") or (shown.get("canaryService") and decision.plan is not None
                                 and decision.plan.canary is None):
        requeue = min(requeue, 5.0)
    if held:
        requeue = min(requeue, 1.0)
    return next_due(final, now, requeue)


def _record_applied(rt: Runtime, writer: StatusWriter, body: dict[str, Any],
                    record: Mapping[str, Any]) -> dict[str, Any]:
    """status.inferenceServiceApplied: what modelops applied to the InferenceService (kept here, not on the
    InferenceService, whose metadata KServe copies into the predictors' pod templates: issue 13)."""
    current = _status_of(body)
    if current.get(APPLIED) == record:
        return body
    rt.ensure_acting()
    return writer.write(body, body.get("status") or {}, {**current, APPLIED: dict(record)})


def new_items(spec: Mapping[str, Any], decision: Any, generation: int, now: datetime) -> list[OutboxItem]:
    """The tick's registry writes and notifications, then its Events, as outbox items (ids unique in the
    object: the generation, the tick's time, a random part and the position; made once and persisted, so
    the Event name derived from an id is the same on every attempt)."""
    prefix = f"{generation}/{format_time(now)}/{uuid.uuid4().hex[:8]}"
    # notifications are only queued when someone listens
    wants_notify = bool((spec.get("notifications") or {}).get("webhooks"))
    actions = [a for a in decision.actions if a["kind"] != "Notify" or wants_notify]
    items: list[OutboxItem] = [{**a, "id": f"{prefix}/{i}/{a['kind']}"} for i, a in enumerate(actions)]
    return items + outbox.event_items(decision.events, prefix)


def acknowledge(body: Mapping[str, Any], status: Mapping[str, Any], spec: Mapping[str, Any],
                now: datetime) -> dict[str, Any]:
    """The new generation recorded before the slow part: Accepted, and Ready=False until a version serves."""
    generation = int(body["metadata"].get("generation", 0))
    problems = model_deployment_problems(spec)
    updates = [Condition("Accepted", "False", "InvalidSpec", "; ".join(problems)) if problems
               else Condition("Accepted", "True", "SpecValid", f"modelops {__version__} accepted generation "
                              f"{generation}")]
    if not status.get("stable") and not any(c.get("type") == "Ready" for c in status.get("conditions") or []):
        updates.append(Condition("Ready", "False", "NoModel", "no model version resolved yet"))
    new = dict(status)
    new["conditions"] = merge_conditions(status.get("conditions"), updates, generation, now)
    new["observedGeneration"] = generation
    return new


def report_error(rt: Runtime, namespace: str, name: str, message: str | None) -> None:
    """A reconcile that failed unexpectedly says so in status (condition Reconciled=False), not only in logs."""
    rt.report_condition(GROUP, VERSION, MODEL_DEPLOYMENTS, MODEL_DEPLOYMENT, namespace, name, message)


KIND = Kind(MODEL_DEPLOYMENT, reconcile, report_error)
_SEEN: dict[tuple[str, str], tuple[Any, ...]] = {}
_ISVC_SEEN: dict[tuple[str, str], int] = {}


# ------------------------------------------------------------------------------------------ kopf wiring
@kopf.on.event(GROUP, VERSION, MODEL_DEPLOYMENTS)
async def modeldeployment_event(type: str, body: kopf.Body, name: str, namespace: str | None, logger: Any,
                                **_: Any) -> None:
    """Watch events only (re)schedule: a new object, a new generation or new annotations run it now."""
    scheduler = KIND.scheduler
    if scheduler is None or namespace is None:
        return
    key = (namespace, name)
    rt = runtime()
    if type == "DELETED":
        _SEEN.pop(key, None)
        _ISVC_SEEN.pop(key, None)
        rt.cache.forget(key, MODEL_DEPLOYMENT, ISVC)
        rt.metrics.forget(MODEL_DEPLOYMENT, namespace, name)
        scheduler.forget(key)
        return
    rt.cache.remember(MODEL_DEPLOYMENT, key, body)
    meta = body.get("metadata") or {}
    signature = (meta.get("uid"), meta.get("generation"), tuple(sorted((meta.get("annotations") or {}).items())))
    if _SEEN.get(key) != signature:
        if _SEEN.get(key, (None, None))[1] != signature[1]:
            logger.info(f"reconciling generation {meta.get('generation')}")
        _SEEN[key] = signature
        scheduler.touch(key, priority=CHANGE)


@kopf.on.event(KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL, labels={"app.kubernetes.io/managed-by": MANAGER})
async def inferenceservice_event(type: str, body: kopf.Body, namespace: str | None, **_: Any) -> None:
    """KServe reporting on an InferenceService we own re-runs its ModelDeployment at once (level-based:
    readiness, a settled rollback and canary readiness are seen without waiting for the next timer)."""
    scheduler = KIND.scheduler
    if scheduler is None or namespace is None:
        return
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == MODEL_DEPLOYMENT and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            key = (namespace, ref["name"])
            runtime().cache.remember(ISVC, key, None if type == "DELETED" else body)
            status = body.get("status") or {}
            # a hash, not the JSON itself: one int per InferenceService is all this map keeps
            signature = hash(("isvc", status.get("observedGeneration"),
                              json.dumps(status.get("conditions"), sort_keys=True),
                              json.dumps(status.get("components"), sort_keys=True),
                              json.dumps(status.get("canaryStatuses"), sort_keys=True)))
            if _ISVC_SEEN.get(key) != signature:
                _ISVC_SEEN[key] = signature
                scheduler.touch(key, 0.05, priority=REPORT)

