"""The operator's own Prometheus metrics (served on `/metrics`, scraped by the chart's ServiceMonitor).

Labels are bounded: `kind` (the two kinds), `namespace` and the object's name (one set per live object; an
object's series are removed when it is deleted), `phase`/`result`/`outcome`/`trigger`/`adapter`/`reason`
(closed vocabularies, anything else is recorded as "Other"), and `check` (an analysis metric's name: at
most 20 per ModelDeployment, a DNS label, CRD-validated). No version string or free text is ever a label.

Series (the chart's alerts and dashboard read these; `charts/modelops/README.md` lists them):

- `modelops_reconcile_total{kind,result}`, `modelops_reconcile_errors_total{kind}`,
  `modelops_reconcile_duration_seconds{kind}`, `modelops_reconcile_queue_depth{kind}` (objects due and
  waiting for a slot), `modelops_reconcile_known_objects{kind}`;
- `modelops_rollout_phase{namespace,modeldeployment,phase}` (1 for the current phase; `count by (phase)`
  gives rollouts by phase), `modelops_rollout_canary_weight{namespace,modeldeployment}`,
  `modelops_rollout_step{namespace,modeldeployment}` (1-based, 0: none),
  `modelops_rollout_step_started_timestamp_seconds{namespace,modeldeployment}`,
  `modelops_rollout_analysis_checks_total{namespace,modeldeployment,check,result}`,
  `modelops_rollout_promotions_total{namespace,modeldeployment}`,
  `modelops_rollout_rollbacks_total{namespace,modeldeployment}`;
- `modelops_retrain_runs_started_total{namespace,retrainschedule,trigger}`,
  `modelops_retrain_runs_total{namespace,retrainschedule,trigger,outcome}` (a run that reached a final state);
- `modelops_adapter_errors_total{adapter,reason}` (registry, prometheus, kube).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from modelops.api.times import parse_time

KINDS = frozenset({"ModelDeployment", "RetrainSchedule"})
RECONCILE_RESULTS = frozenset({"ok", "gone", "conflict", "not_leader", "kube_error", "error"})
#: status.rollout.state, or Stable when no rollout is in progress
PHASES = ("Stable", "Progressing", "Paused", "AwaitingApproval", "RollingBack")
CHECK_RESULTS = frozenset({"Pass", "Fail", "Inconclusive", "Error"})
TRIGGERS = frozenset({"schedule", "drift", "manual"})
#: the states a run leaves Pending/Running for (decide/retrain.py)
OUTCOMES = frozenset({"Succeeded", "GateFailed", "AwaitingApproval", "Approved", "Rejected", "Failed", "Replaced",
                      "Lost"})
ADAPTERS = frozenset({"registry", "prometheus", "kube"})
RUN_ACTIVE = frozenset({"Pending", "Running"})
OTHER = "Other"
#: Reconciles take milliseconds (cache hits) to seconds (MLflow, Prometheus within the budget).
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _bounded(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else OTHER


class OperatorMetrics:
    """One registry per runtime (tests make their own); thread-safe (reconciles run on a thread pool)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        md, rs = ("namespace", "modeldeployment"), ("namespace", "retrainschedule")
        self.reconciles = Counter("modelops_reconcile_total", "Reconciles by kind and result", ("kind", "result"),
                                  registry=r)
        self.reconcile_errors = Counter("modelops_reconcile_errors_total",
                                        "Reconciles that failed (reported in the object's Reconciled condition)",
                                        ("kind",), registry=r)
        self.reconcile_seconds = Histogram("modelops_reconcile_duration_seconds", "Reconcile wall time", ("kind",),
                                           buckets=RECONCILE_BUCKETS, registry=r)
        #: kind -> () -> (objects due and waiting for a slot, objects known); read at scrape time
        self.queues: dict[str, Callable[[], tuple[int, int]]] = {}
        r.register(_QueueCollector(self.queues))
        self.phase = Gauge("modelops_rollout_phase", "1 for the rollout phase a ModelDeployment is in",
                           (*md, "phase"), registry=r)
        self.weight = Gauge("modelops_rollout_canary_weight", "Traffic percent on the canary (0: none)", md,
                            registry=r)
        self.step = Gauge("modelops_rollout_step", "The canary step in progress (1-based; 0: none)", md, registry=r)
        self.step_started = Gauge("modelops_rollout_step_started_timestamp_seconds",
                                  "When the current canary step began (Unix seconds)", md, registry=r)
        self.checks = Counter("modelops_rollout_analysis_checks_total", "Canary analysis verdicts per check",
                              (*md, "check", "result"), registry=r)
        self.promotions = Counter("modelops_rollout_promotions_total", "Canaries promoted", md, registry=r)
        self.rollbacks = Counter("modelops_rollout_rollbacks_total", "Canaries rolled back", md, registry=r)
        self.runs_started = Counter("modelops_retrain_runs_started_total", "Training runs started by trigger",
                                    (*rs, "trigger"), registry=r)
        self.runs = Counter("modelops_retrain_runs_total", "Training runs that reached a final state",
                            (*rs, "trigger", "outcome"), registry=r)
        slo = ("namespace", "isvc", "slo")
        self.slo_objective = Gauge("modelops_slo_objective_ratio", "A ModelDeployment's SLO objective (0..1)", slo,
                                   registry=r)
        self.slo_threshold = Gauge("modelops_slo_burn_rate_threshold", "Error ratio above which a burn alert "
                                   "fires (budget share x window / long window x error budget)", (*slo, "burn"),
                                   registry=r)
        self.slo_le = Gauge("modelops_slo_latency_le", "1 for the latency bucket (le) a latency SLO counts as fast",
                            ("namespace", "isvc", "le"), registry=r)
        self.adapter_errors = Counter("modelops_adapter_errors_total", "Errors of the registry, Prometheus and "
                                      "Kubernetes adapters", ("adapter", "reason"), registry=r)
        self._lock = threading.Lock()
        #: label sets per object, so a deleted object's series go with it
        self._series: dict[tuple[str, str, str], set[tuple[Any, tuple[str, ...]]]] = {}
        self._server: Any = None

    # ------------------------------------------------------------------ bookkeeping
    def _labels(self, metric: Any, kind: str, namespace: str, name: str, *rest: str) -> Any:
        values = (namespace, name, *rest)
        with self._lock:
            self._series.setdefault((kind, namespace, name), set()).add((metric, values))
        return metric.labels(*values)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Remove the series of a deleted object (bounded cardinality: live objects only)."""
        with self._lock:
            series = self._series.pop((kind, namespace, name), set())
        for metric, values in series:
            with contextlib.suppress(KeyError):
                metric.remove(*values)

    def forget_all(self) -> None:
        """Remove every object's series (this replica lost the leader Lease: a standby reports no rollout, so
        `count by (phase)` never counts a deployment twice)."""
        with self._lock:
            keys = list(self._series)
        for kind, namespace, name in keys:
            self.forget(kind, namespace, name)

    # ------------------------------------------------------------------ the runtime
    def reconciled(self, kind: str, result: str, seconds: float) -> None:
        k = _bounded(kind, KINDS)
        self.reconciles.labels(k, _bounded(result, RECONCILE_RESULTS)).inc()
        self.reconcile_seconds.labels(k).observe(seconds)
        if result in ("kube_error", "error"):
            self.reconcile_errors.labels(k).inc()

    def adapter_error(self, adapter: str, reason: str) -> None:
        # reasons are the adapters' closed vocabularies (RegistryError.reason, Sample.reason); cap the length
        self.adapter_errors.labels(_bounded(adapter, ADAPTERS), (reason or "Error")[:40]).inc()

    # ------------------------------------------------------------------ ModelDeployment
    def rollout(self, namespace: str, name: str, status: Mapping[str, Any], checks: Iterable[Any] | None,
                reasons: Iterable[str]) -> None:
        """After a ModelDeployment's status was written: its phase, weight and step start; the analysis
        verdicts of this pass; promotions and rollbacks from the pass's Events."""
        kind = "ModelDeployment"
        ro = status.get("rollout") or {}
        phase = _bounded(str(ro.get("state") or "Stable"), PHASES)
        for p in PHASES:
            g = self._labels(self.phase, kind, namespace, name, p)
            g.set(1 if p == phase else 0)
        self._labels(self.weight, kind, namespace, name).set(float(ro.get("weight") or 0) if ro else 0.0)
        self._labels(self.step, kind, namespace, name).set(int(ro.get("step", 0)) + 1 if ro else 0)
        started = parse_time(ro.get("stepStartedAt")) if ro else None
        step = self._labels(self.step_started, kind, namespace, name)
        step.set(_unix(started) if started is not None else 0.0)
        for check in checks or ():
            self._labels(self.checks, kind, namespace, name, str(check.name)[:63],
                         _bounded(str(check.result), CHECK_RESULTS)).inc()
        # both counters exist from the first pass at 0, so increase() sees the first promotion and rollback
        promotions = self._labels(self.promotions, kind, namespace, name)
        rollbacks = self._labels(self.rollbacks, kind, namespace, name)
        for reason in reasons:
            if reason == "Promoted":
                promotions.inc()
            elif reason == "RolledBack":
                rollbacks.inc()

    def slos(self, namespace: str, name: str, slos: Iterable[Any]) -> None:
        """A ModelDeployment's SLOs (decide/slo.py) as the series the chart's burn-rate rules join on; series of
        SLOs no longer declared are removed."""
        kind = "ModelDeployment"
        wanted: set[tuple[Any, tuple[str, ...]]] = set()
        for slo in slos:
            self._labels(self.slo_objective, kind, namespace, name, slo.name).set(slo.objective / 100.0)
            wanted.add((self.slo_objective, (namespace, name, slo.name)))
            for burn, threshold in slo.burn_thresholds().items():
                self._labels(self.slo_threshold, kind, namespace, name, slo.name, burn).set(threshold)
                wanted.add((self.slo_threshold, (namespace, name, slo.name, burn)))
            if slo.threshold_seconds is not None:
                le = str(floatToGoString(slo.threshold_seconds))  # type: ignore[no-untyped-call]
                self._labels(self.slo_le, kind, namespace, name, le).set(1)
                wanted.add((self.slo_le, (namespace, name, le)))
        with self._lock:
            series = self._series.get((kind, namespace, name), set())
            stale = {s for s in series if s[0] in (self.slo_objective, self.slo_threshold, self.slo_le)} - wanted
            series -= stale
        for metric, values in stale:
            with contextlib.suppress(KeyError):
                metric.remove(*values)

    # ------------------------------------------------------------------ RetrainSchedule
    def retrain(self, namespace: str, name: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """Runs that started, and runs that reached a final state, between two written statuses."""
        kind = "RetrainSchedule"
        old = {str(r.get("id")): str(r.get("state")) for r in before.get("runs") or []}
        for run in after.get("runs") or []:
            rid, state = str(run.get("id")), str(run.get("state"))
            trigger = _bounded(str(run.get("trigger")), TRIGGERS)
            if rid not in old:
                self._labels(self.runs_started, kind, namespace, name, trigger).inc()
            if state not in RUN_ACTIVE and old.get(rid) != state and (old.get(rid) in RUN_ACTIVE or rid not in old):
                self._labels(self.runs, kind, namespace, name, trigger, _bounded(state, OUTCOMES)).inc()

    # ------------------------------------------------------------------ serving
    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Start the /metrics HTTP server on a daemon thread; the bound port (0 picks a free one)."""
        if self._server is None:
            self._server, _thread = start_http_server(port, addr, registry=self.registry)
        return int(self._server.server_port)

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _unix(t: datetime) -> float:
    return t.timestamp()


class _QueueCollector(Collector):
    """The schedulers' queue depth and size, read when Prometheus scrapes (always current)."""

    def __init__(self, queues: Mapping[str, Callable[[], tuple[int, int]]]) -> None:
        self._queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("modelops_reconcile_queue_depth",
                                  "Objects due for a reconcile and waiting for a slot", labels=["kind"])
        known = GaugeMetricFamily("modelops_reconcile_known_objects", "Objects the scheduler tracks",
                                  labels=["kind"])
        for kind, probe in list(self._queues.items()):
            waiting, size = probe()
            depth.add_metric([_bounded(kind, KINDS)], waiting)
            known.add_metric([_bounded(kind, KINDS)], size)
        yield depth
        yield known
