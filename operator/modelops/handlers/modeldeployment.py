"""Kopf handlers of ModelDeployment: one reconcile loop per object around the pure `decide.rollout.tick`.

Each ModelDeployment gets a Kopf daemon (a per-object timer whose interval is whatever the last tick asked
for: the registry poll interval when idle, the analysis interval or the rest of a step's pause during a
rollout). A spec or annotation change wakes the daemon at once, so a change reaches the InferenceService
in one round trip. One reconcile:

1. read the object fresh (never act on a stale watch copy) and run the outbox (`status.pendingActions`)
   a previous tick left behind (registry changes, notifications; each idempotent);
2. observe: resolve the model in MLflow, read the InferenceService, the deployment mode, whether the CRD
   can express a canary, and query Prometheus when an analysis is due;
3. `tick(spec, status, observed, now)`;
4. write status with a resourceVersion precondition (the decision and its outbox are durable first),
   then server-side apply the InferenceService derived from status, post events, run the new outbox and
   clear it.
Blocking I/O runs on a bounded thread pool, so 1000 objects do not mean 1000 threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from modelops import __version__
from modelops.adapters.kube import Conflict, Kube, api_error_message
from modelops.adapters.metrics import Prometheus
from modelops.adapters.notify import Notifier, NotifyError, Webhook
from modelops.adapters.registry import TAG_STORAGE_URI, MlflowRegistry, ModelVersion, RegistryError
from modelops.api import GROUP, MODEL_DEPLOYMENT, MODEL_DEPLOYMENTS, VERSION
from modelops.decide import analysis
from modelops.decide.conditions import Condition, merge_conditions
from modelops.decide.durations import format_duration
from modelops.decide.kserve_status import isvc_state, mode_condition
from modelops.decide.rollout import (
    CANDIDATE_ALIAS,
    TAG_REJECTED,
    ModelRef,
    Observed,
    Resolution,
    analysis_due,
    analysis_interval,
    metrics_of,
    tick,
    tracked_alias,
    uses_candidate_alias,
)
from modelops.decide.spec_checks import model_deployment_problems
from modelops.desired.inference_service import (
    ANN_DESIRED_HASH,
    ISVC_PLURAL,
    KSERVE_GROUP,
    KSERVE_VERSION,
    Defaults,
    canary_support,
    deployment_mode,
    inference_service,
)
from modelops.formats.artifacts import TAG_ARTIFACT_SHA256
from modelops.handlers.traffic import apply_traffic, plan_traffic, traffic_status
from modelops.settings import OperatorSettings

log = logging.getLogger("modelops.modeldeployment")
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
#: Notifications are retried this many ticks, then dropped (logged); registry actions are retried forever.
NOTIFY_ATTEMPTS = 5


class _Runtime:
    """Process-wide clients, created on first use (handlers import cheaply)."""

    def __init__(self) -> None:
        self.settings = OperatorSettings()
        self.kube = Kube()
        self.pool = ThreadPoolExecutor(max_workers=self.settings.reconcile_workers,
                                       thread_name_prefix="modeldeployment")
        self.notifier = Notifier()
        self._registries: dict[tuple[str, str, str], MlflowRegistry] = {}
        self._prometheus: dict[str, Prometheus] = {}
        self._uris: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    def registry(self, spec: Mapping[str, Any], namespace: str) -> MlflowRegistry:
        reg = spec.get("registry") or {}
        uri = reg.get("trackingUri") or self.settings.mlflow_tracking_uri
        secret = (reg.get("credentialsSecretRef") or {}).get("name", "")
        key = (uri, namespace if secret else "", secret)
        with self._lock:
            if key in self._registries:
                return self._registries[key]
        creds: dict[str, str] = {}
        if secret:
            try:
                creds = self.kube.secret_values(namespace, secret)
            except ApiException as exc:
                raise RegistryError("CredentialsUnavailable",
                                    f"secret {secret}: {api_error_message(exc)}") from exc
        client = MlflowRegistry(uri, username=creds.get("MLFLOW_TRACKING_USERNAME"),
                                password=creds.get("MLFLOW_TRACKING_PASSWORD"),
                                token=creds.get("MLFLOW_TRACKING_TOKEN"),
                                artifacts_destination=self.settings.mlflow_artifacts_destination or None)
        with self._lock:
            return self._registries.setdefault(key, client)

    def prometheus(self, url: str) -> Prometheus:
        with self._lock:
            if url not in self._prometheus:
                self._prometheus[url] = Prometheus(url)
            return self._prometheus[url]

    def storage_uri(self, reg: MlflowRegistry, mv: ModelVersion) -> str:
        # A version's artifact location never changes; its storage-uri tag may, so it is part of the key.
        key = (reg.tracking_uri, f"{mv.name}/{mv.version}", mv.tags.get(TAG_STORAGE_URI, ""))
        if key not in self._uris:
            self._uris[key] = reg.storage_uri(mv)
        return self._uris[key]


def _lean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy without `metadata.managedFields`: nothing here reads them, and with server-side apply they
    are the largest part of an object (about half of an InferenceService), kept once per object in the cache."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k != "metadata"}
    out["metadata"] = {k: copy.deepcopy(v) for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return out


class _Cache:
    """The latest ModelDeployments and InferenceServices, fed by the watches and by our own write responses.

    A steady-state reconcile then costs no API call at all. Entries only move forward in resourceVersion, so
    a late watch event never hides our own newer write; a conflicting write drops the entry (next read is a
    GET). The InferenceService map also knows "absent" (None) once a watch or GET said so. Entries are stored
    without managedFields (`_lean`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mds: dict[tuple[str, str], dict[str, Any]] = {}
        self._isvcs: dict[tuple[str, str], dict[str, Any] | None] = {}

    @staticmethod
    def _newer(new: Mapping[str, Any] | None, old: Mapping[str, Any] | None) -> bool:
        if new is None or old is None:
            return True
        try:
            return int(new["metadata"]["resourceVersion"]) >= int(old["metadata"]["resourceVersion"])
        except (KeyError, ValueError, TypeError):
            return True

    def get_md(self, key: tuple[str, str]) -> dict[str, Any] | None:
        with self._lock:
            obj = self._mds.get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def remember_md(self, key: tuple[str, str], obj: Mapping[str, Any]) -> None:
        with self._lock:
            if self._newer(obj, self._mds.get(key)):
                self._mds[key] = _lean(obj)

    def forget_md(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._mds.pop(key, None)
            self._isvcs.pop(key, None)

    def has_isvc(self, key: tuple[str, str]) -> bool:
        return key in self._isvcs

    def get_isvc(self, key: tuple[str, str]) -> dict[str, Any] | None:
        with self._lock:
            obj = self._isvcs.get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def remember_isvc(self, key: tuple[str, str], obj: Mapping[str, Any] | None) -> None:
        with self._lock:
            if obj is None or key not in self._isvcs or self._newer(obj, self._isvcs.get(key)):
                self._isvcs[key] = _lean(obj) if obj is not None else None


CACHE = _Cache()
_RT: _Runtime | None = None
_WAKE: dict[str, asyncio.Event] = {}


def runtime() -> _Runtime:
    global _RT
    if _RT is None:
        _RT = _Runtime()
    return _RT


# ------------------------------------------------------------------------------------------ observing
def _ref(rt: _Runtime, reg: MlflowRegistry, mv: ModelVersion, alias: str) -> ModelRef:
    return ModelRef(storage_uri=rt.storage_uri(reg, mv), version=mv.version, run_id=mv.run_id, alias=alias,
                    rejected=mv.tags.get(TAG_REJECTED, ""), digest=mv.tags.get(TAG_ARTIFACT_SHA256, ""))


def resolve(rt: _Runtime, spec: Mapping[str, Any], namespace: str) -> Resolution:
    model = spec.get("model") or {}
    if model.get("storageUri"):
        return Resolution(ModelRef(storage_uri=model["storageUri"]))
    name = model.get("name", "")
    try:
        reg = rt.registry(spec, namespace)
        if model.get("version"):
            mv = reg.get_version(name, str(model["version"]))
            if mv is None:
                return Resolution(error=f"{name} version {model['version']} does not exist in MLflow",
                                  reason="VersionNotFound")
            return Resolution(_ref(rt, reg, mv, ""))
        alias = tracked_alias(spec)
        tracked = reg.get_alias(name, alias)
        candidate = reg.get_alias(name, CANDIDATE_ALIAS) if uses_candidate_alias(spec) else None
        if tracked is None and candidate is None:
            return Resolution(error=f"registered model {name!r} has no alias {alias!r}"
                              + (f" or {CANDIDATE_ALIAS!r}" if uses_candidate_alias(spec) else ""),
                              reason="AliasNotFound")
        return Resolution(_ref(rt, reg, tracked, alias) if tracked else None,
                          _ref(rt, reg, candidate, CANDIDATE_ALIAS) if candidate else None)
    except RegistryError as exc:
        return Resolution(error=str(exc), reason=exc.reason)


def run_analysis(rt: _Runtime, spec: Mapping[str, Any], namespace: str, name: str,
                 observed_isvc: Any) -> list[analysis.Check]:
    an = (spec.get("rollout") or {}).get("analysis") or {}
    prom = rt.prometheus(an.get("prometheusUrl") or rt.settings.prometheus_url)
    window = format_duration(analysis_interval(spec))
    revision = {"canary": getattr(observed_isvc, "canary_revision", ""),
                "stable": getattr(observed_isvc, "stable_revision", "")}
    context: dict[analysis.Side, dict[str, str]] = {
        side: {"namespace": namespace, "name": name, "side": side, "revision": revision[side], "interval": window}
        for side in ("canary", "stable")}
    metrics = metrics_of(spec)
    samples = {(q.metric, q.side): prom.query(q.promql) for q in analysis.queries(metrics, context)}
    return analysis.evaluate_all(metrics, samples)


# ------------------------------------------------------------------------------------------ effects
def run_actions(rt: _Runtime, actions: list[dict[str, Any]], spec: Mapping[str, Any], body: Mapping[str, Any]
                ) -> list[dict[str, Any]]:
    """Execute the outbox; return what must be retried."""
    left: list[dict[str, Any]] = []
    meta = body["metadata"]
    for act in actions:
        try:
            kind = act["kind"]
            if kind == "Notify":
                hooks = webhooks(rt, spec, meta["namespace"])
                if hooks:
                    rt.notifier.send(hooks, act["event"], act["message"],
                                     {"kind": MODEL_DEPLOYMENT, "namespace": meta["namespace"], "name": meta["name"]})
                continue
            reg = rt.registry(spec, meta["namespace"])
            if kind == "SetAlias":
                reg.set_alias(act["model"], act["alias"], act["version"], act.get("ifVersion"))
            elif kind == "DeleteAlias":
                reg.delete_alias(act["model"], act["alias"], act.get("ifVersion"))
            elif kind == "TagVersion":
                for key, value in act["tags"].items():
                    reg.set_version_tag(act["model"], act["version"], key, value)
        except (RegistryError, NotifyError, ApiException) as exc:
            attempts = int(act.get("attempts", 0)) + 1
            log.warning("%s/%s: %s failed (attempt %d): %s", meta["namespace"], meta["name"], act["kind"],
                        attempts, exc)
            if act["kind"] == "Notify" and attempts >= NOTIFY_ATTEMPTS:
                continue
            left.append({**act, "attempts": attempts})
    return left


def webhooks(rt: _Runtime, spec: Mapping[str, Any], namespace: str) -> list[Webhook]:
    out = []
    for hook in (spec.get("notifications") or {}).get("webhooks") or []:
        url = hook.get("url", "")
        ref = hook.get("urlSecretRef")
        if ref:
            url = rt.kube.secret_values(namespace, ref["name"]).get(ref["key"], url)
        out.append(Webhook(url=url, format=hook.get("format", "json"), events=tuple(hook.get("events") or ())))
    return out


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch turning `old` into `new` (removed keys become null, nested maps recurse)."""
    out: dict[str, Any] = {}
    for key in old:
        if key not in new:
            out[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                out[key] = sub
        elif before != value:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------ reconcile
def reconcile(namespace: str, name: str) -> float:
    """One full reconcile of one ModelDeployment; returns seconds until the next one."""
    rt = runtime()
    kube = rt.kube
    key = (namespace, name)
    body = CACHE.get_md(key)
    if body is None:
        body = kube.get(GROUP, VERSION, MODEL_DEPLOYMENTS, namespace, name)
        if body is not None:
            CACHE.remember_md(key, body)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return 3600.0
    meta, spec = body["metadata"], body.get("spec") or {}
    status: dict[str, Any] = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
    now = datetime.now(UTC)
    generation = int(meta.get("generation", 0))
    rv = meta.get("resourceVersion")
    if status.get("observedGeneration") != generation and not (spec.get("model") or {}).get("storageUri"):
        # Acknowledge a new generation at once: resolving in MLflow can take a few seconds.
        status, rv = acknowledge(kube, body, status, spec, now)
    left = run_actions(rt, list(status.get("pendingActions") or []), spec, body)

    mode = deployment_mode(spec, kube.config_map_value(rt.settings.kserve_namespace, "inferenceservice-config",
                                                       "deploy"))
    has_canary = kube.accepts_field(KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL, namespace, CANARY_PROBE,
                                    "spec.canary")
    supported, why = canary_support(mode, has_canary)
    if CACHE.has_isvc(key):
        isvc_obj = CACHE.get_isvc(key)
    else:
        isvc_obj = kube.get(KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL, namespace, name)
        CACHE.remember_isvc(key, isvc_obj)
    isvc = isvc_state(isvc_obj, meta["uid"], mode)
    problems = model_deployment_problems(spec)
    resolution = resolve(rt, spec, namespace) if not problems else Resolution()
    checks = run_analysis(rt, spec, namespace, name, isvc) if analysis_due(spec, status, now) else None
    observed = Observed(generation=generation, resolution=resolution, isvc=isvc, mode=mode,
                        canary_supported=supported, canary_unsupported=why,
                        annotations=dict(meta.get("annotations") or {}), checks=checks, spec_problems=problems,
                        allowed_storage_uris=rt.settings.allowed_storage_uri_list())
    decision = tick(spec, status, observed, now)
    new_status = decision.status
    new_status["inferenceService"] = name
    new_status["deploymentMode"] = mode
    # [issue 13] Knative mode on a cluster without Knative Serving: a clear condition, not a silent wait
    new_status["conditions"] = merge_conditions(new_status.get("conditions"), [
        mode_condition(mode, mode != "Knative" or kube.group_version_served("serving.knative.dev", "v1"))],
        generation, now)
    # notifications are only queued when someone listens
    wants_notify = bool((spec.get("notifications") or {}).get("webhooks"))
    new_actions = [a for a in decision.actions if a["kind"] != "Notify" or wants_notify]
    new_status["pendingActions"] = left + new_actions
    if not new_status["pendingActions"]:
        new_status.pop("pendingActions")
    # [issue 13] the gateway split of a Standard-mode canary (handlers/traffic.py): who splits, and modelops' route
    traffic = None
    if decision.plan is not None and mode == "Standard":
        ingress = kube.config_map_value(rt.settings.kserve_namespace, "inferenceservice-config", "ingress")
        traffic = plan_traffic(kube, rt.settings, namespace, name, meta["uid"], decision.plan, ingress)
        new_status["traffic"] = dict(traffic_status(traffic, (status.get("traffic") or {}).get("message", "")
                                                    if traffic.route is not None else ""))
    rv = write_status(kube, namespace, name, status, new_status, rv)

    if decision.plan is not None:
        settings = rt.settings
        manifest = inference_service(
            name=name, namespace=namespace, uid=meta["uid"], spec=spec, plan=decision.plan, mode=mode,
            defaults=Defaults(settings.server_image, settings.drift_exporter_url, settings.drift_token),
            legacy_mode_names=not has_canary, modelops_route=traffic is not None and traffic.owner == "modelops")
        applied = ((isvc_obj or {}).get("metadata", {}).get("annotations") or {}).get(ANN_DESIRED_HASH)
        if applied != manifest["metadata"]["annotations"][ANN_DESIRED_HASH]:
            try:
                CACHE.remember_isvc(key, kube.apply(KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL, manifest))
            except ApiException as exc:
                msg = api_error_message(exc)
                log.error("%s/%s: applying the InferenceService failed: %s", namespace, name, msg)
                failed = dict(new_status)
                failed["conditions"] = merge_conditions(new_status.get("conditions"), [
                    Condition("InferenceServiceReady", "False", "ApplyFailed", msg)], generation, now)
                rv = write_status(kube, namespace, name, new_status, failed, rv)
                new_status = failed
        if traffic is not None:  # [issue 13] after the InferenceService: its predictor Services exist by now
            moved = dict(new_status)
            moved["traffic"] = dict(traffic_status(traffic, apply_traffic(kube, namespace, traffic)))
            rv = write_status(kube, namespace, name, new_status, moved, rv)
            new_status = moved
    ref = {"apiVersion": body["apiVersion"], "kind": body["kind"], "name": name, "uid": meta["uid"],
           "namespace": namespace}
    for ev in decision.events:
        log.log(logging.WARNING if ev.type == "Warning" else logging.INFO, "%s: %s", ev.reason, ev.message,
                extra={"k8s_ref": ref})
        with contextlib.suppress(ApiException):
            kube.event(body, ev.type, ev.reason, ev.message)
    if new_actions:
        remaining = run_actions(rt, new_actions, spec, body)
        done = dict(new_status)
        done["pendingActions"] = left + remaining
        if not done["pendingActions"]:
            done.pop("pendingActions")
        write_status(kube, namespace, name, new_status, done, rv)
    return decision.requeue_after


def acknowledge(kube: Kube, body: Mapping[str, Any], status: dict[str, Any], spec: Mapping[str, Any],
                now: datetime) -> tuple[dict[str, Any], str | None]:
    """Record the new generation before the slow part: Accepted, and Ready=False until a version serves."""
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
    rv = write_status(kube, body["metadata"]["namespace"], body["metadata"]["name"], status, new,
                      body["metadata"].get("resourceVersion"))
    return new, rv


def write_status(kube: Kube, namespace: str, name: str, old: Mapping[str, Any], new: Mapping[str, Any],
                 rv: str | None) -> str | None:
    patch = merge_patch(old, new)
    if not patch:
        return rv
    try:
        obj = kube.patch_status(GROUP, VERSION, MODEL_DEPLOYMENTS, namespace, name, patch, rv)
    except Conflict:
        CACHE.forget_md((namespace, name))  # decide again on a fresh read
        raise
    CACHE.remember_md((namespace, name), obj)
    result: str | None = obj["metadata"].get("resourceVersion")
    return result


# ------------------------------------------------------------------------------------------ kopf wiring
Key = tuple[str, str]


#: Scheduler priorities: a user's change first, then KServe reporting, then the objects' own timers.
CHANGE, REPORT, TIMER = 0, 1, 2


class Scheduler:
    """Per-object timers on one asyncio task: each ModelDeployment is due again after the delay its last
    reconcile asked for, or at once when a watch event shows a new generation or new annotations.

    Unlike Kopf daemons/timers this needs no finalizer on the object (deleting a ModelDeployment never waits
    for the operator) and no task per object. One reconcile per object at a time; a change that arrives
    during a reconcile schedules another one right after it.

    At most `concurrency` reconciles run; when more are due, the rest wait here, ordered by priority
    (CHANGE, REPORT, TIMER) and then by due time, so a user's edit is never queued behind a backlog of
    periodic ticks (measured with 1000 ModelDeployments on 2 busy cores: a FIFO semaphore made an edit wait
    9 s behind the timers; see bench/rollout_latency.py).
    """

    def __init__(self, run: Any, concurrency: int) -> None:
        self._run = run
        self._concurrency = concurrency
        self._due: dict[Key, float] = {}
        self._priority: dict[Key, int] = {}
        self._running: set[Key] = set()
        self._gone: set[Key] = set()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def touch(self, key: Key, delay: float = 0.0, priority: int = TIMER) -> None:
        self._gone.discard(key)
        due = time.monotonic() + delay
        self._due[key] = min(self._due.get(key, due), due)
        self._priority[key] = min(self._priority.get(key, priority), priority)
        self._wake.set()

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)
        self._priority.pop(key, None)
        self._gone.add(key)

    def _next(self, now: float) -> list[Key]:
        """The due objects to start now, most urgent first, within the free slots."""
        free = self._concurrency - len(self._running)
        if free <= 0:
            return []
        ready = [k for k, t in self._due.items() if t <= now and k not in self._running]
        ready.sort(key=lambda k: (self._priority.get(k, TIMER), self._due[k]))
        return ready[:free]

    async def run_forever(self) -> None:
        while True:
            now = time.monotonic()
            for key in self._next(now):
                del self._due[key]
                self._priority.pop(key, None)
                self._running.add(key)
                task = asyncio.create_task(self._one(key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            waiting = [t for k, t in self._due.items() if k not in self._running]
            # with every slot busy, the next wake-up is a finishing reconcile (it calls touch)
            timeout = max(0.0, min(waiting) - now) if waiting and len(self._running) < self._concurrency else 60.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _one(self, key: Key) -> None:
        delay = 10.0
        try:
            delay = await self._run(*key)
        finally:
            self._running.discard(key)
            if key in self._gone:
                self._gone.discard(key)
                self._due.pop(key, None)
                self._priority.pop(key, None)
                self._wake.set()
            else:
                self.touch(key, delay)


_SCHEDULER: Scheduler | None = None
_SEEN: dict[Key, tuple[Any, ...]] = {}


async def _reconcile_async(namespace: str, name: str) -> float:
    rt = runtime()
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(rt.pool, reconcile, namespace, name)
    except Conflict:
        return 0.2  # someone else wrote first: decide again on the fresh object
    except ApiException as exc:
        log.warning("%s/%s: reconcile failed: %s", namespace, name, api_error_message(exc))
        return 5.0
    except Exception:  # keep the loop alive; the next tick starts from status again
        log.exception("%s/%s: reconcile failed", namespace, name)
        return 10.0


@kopf.on.startup()
async def modeldeployment_start(**_: Any) -> None:
    global _SCHEDULER
    rt = runtime()
    _SCHEDULER = Scheduler(_reconcile_async, concurrency=rt.settings.reconcile_workers * 2)
    task = asyncio.get_running_loop().create_task(_SCHEDULER.run_forever())
    _BACKGROUND.add(task)


_BACKGROUND: set[asyncio.Task[None]] = set()


@kopf.on.cleanup()
async def modeldeployment_stop(**_: Any) -> None:
    for task in _BACKGROUND:
        task.cancel()


@kopf.on.event(GROUP, VERSION, MODEL_DEPLOYMENTS)
async def modeldeployment_event(type: str, body: kopf.Body, name: str, namespace: str, logger: Any,
                                **_: Any) -> None:
    """Watch events only (re)schedule: a new object, a new generation or new annotations run it now."""
    key = (namespace, name)
    if _SCHEDULER is None:
        return
    if type == "DELETED":
        _SEEN.pop(key, None)
        CACHE.forget_md(key)
        _SCHEDULER.forget(key)
        return
    CACHE.remember_md(key, body)
    meta = body.get("metadata") or {}
    signature = (meta.get("uid"), meta.get("generation"), tuple(sorted((meta.get("annotations") or {}).items())))
    if _SEEN.get(key) != signature:
        if _SEEN.get(key, (None, None))[1] != signature[1]:
            logger.info(f"reconciling generation {meta.get('generation')}")
        _SEEN[key] = signature
        _SCHEDULER.touch(key, priority=CHANGE)


@kopf.on.event(KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL, labels={"app.kubernetes.io/managed-by": "modelops"})
async def inferenceservice_event(type: str, body: kopf.Body, namespace: str, **_: Any) -> None:
    """KServe reporting on an InferenceService we own re-runs its ModelDeployment at once (level-based:
    readiness, a settled rollback and canary readiness are seen without waiting for the next timer)."""
    if _SCHEDULER is None:
        return
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == MODEL_DEPLOYMENT and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            key = (namespace, ref["name"])
            CACHE.remember_isvc(key, None if type == "DELETED" else body)
            status = body.get("status") or {}
            # a hash, not the JSON itself: one int per InferenceService is all this map keeps
            signature = hash(("isvc", status.get("observedGeneration"),
                              json.dumps(status.get("conditions"), sort_keys=True),
                              json.dumps(status.get("components"), sort_keys=True),
                              json.dumps(status.get("canaryStatuses"), sort_keys=True)))
            if _ISVC_SEEN.get(key) != signature:
                _ISVC_SEEN[key] = signature
                _SCHEDULER.touch(key, 0.05, priority=REPORT)


_ISVC_SEEN: dict[Key, int] = {}
