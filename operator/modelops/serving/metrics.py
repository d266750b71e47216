"""Prometheus metrics of the model server (served on /metrics by the KServe REST server)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import REGISTRY, Gauge
from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# Sub-millisecond buckets: the fast path answers in ~100 µs, a histogram starting at 5 ms would hide it.
# Ten per decade (the R10 preferred numbers: adjacent bounds at most 1.28x apart) from 100 µs to 5 s, so that
# a quantile read by histogram_quantile is within that factor of the truth: a canary check such as the
# sample's `latency-p99` with `baseline: {maxRatio: 1.5}` compares two quantiles, and with the former
# 1-2.5-5 bounds (2-2.5x apart) one request either side of 25 ms moved an estimate by a whole bucket (e2e:
# canary/stable 2.06 for a canary as fast as its stable version). Every former bound is still one, so a
# latency SLO's threshold (decide/slo.py) stays a bucket bound.
_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
LATENCY_BUCKETS = tuple(round(m * 10.0 ** e, 10) for e in range(-4, 1) for m in _R10 if m * 10.0 ** e <= 5.0)
_LABELS = ("model", "version", "protocol", "status")


class _CounterChild:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount

    def get(self) -> float:
        return self.value


class _HistogramChild:
    __slots__ = ("_bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        # the first bucket whose bound is >= amount, as prometheus_client's Histogram.observe finds it
        self.counts[bisect_left(self._bounds, amount)] += 1
        self.sum += amount


class _Family(Collector):
    """A labelled counter or histogram that prometheus_client exposes exactly as its own Counter / Histogram
    (same samples: _total/_created, _bucket/_count/_sum/_created), with observations that take no lock.

    prometheus_client's metrics lock a mutex per update (three per histogram observation, two per counter
    increment) and walk the bucket bounds one by one: on the model server's hot path that was about 2.5 µs of
    every request. Every observation here happens on the server's event-loop thread (the REST hot path, the
    ASGI layer, the gRPC aio servicer), and so does every /metrics scrape (KServe's async handler), so plain
    attribute updates are enough; the bucket is found by bisection."""

    def __init__(self, kind: str, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float] = (), registry: Any = REGISTRY) -> None:
        self._kind = kind
        self._name = name.removesuffix("_total") if kind == "counter" else name
        self._doc = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = tuple(float(b) for b in buckets)
        if kind == "histogram":
            if list(self._bounds) != sorted(self._bounds) or not self._bounds:
                raise ValueError("Buckets not in sorted order")
            if self._bounds[-1] == float("inf"):
                self._bounds = self._bounds[:-1]
            self._les = [floatToGoString(b) for b in self._bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._children: dict[tuple[str, ...], Any] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, *values: Any, **labels: Any) -> Any:
        if labels:
            if values or set(labels) != set(self._labelnames):
                raise ValueError(f"expected labels {self._labelnames}")
            values = tuple(labels[n] for n in self._labelnames)
        elif len(values) != len(self._labelnames):
            raise ValueError(f"expected labels {self._labelnames}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = _HistogramChild(self._bounds) if self._kind == "histogram" else _CounterChild()
            self._children[key] = child
        return child

    def describe(self) -> Iterable[Metric]:
        return [Metric(self._name, self._doc, self._kind)]

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self._name, self._doc, self._kind)
        name = self._name
        created = _prometheus_metrics._use_created  # off with PROMETHEUS_DISABLE_CREATED_SERIES, as for its own
        for key, child in list(self._children.items()):
            labels = dict(zip(self._labelnames, key, strict=True))
            if self._kind == "counter":
                metric.samples.append(Sample(name + "_total", labels, child.value, None, None))
                if created:
                    metric.samples.append(Sample(name + "_created", labels, child.created, None, None))
                continue
            acc = 0.0
            for le, n in zip(self._les, child.counts, strict=True):
                acc += n
                metric.samples.append(Sample(name + "_bucket", {**labels, "le": le}, acc, None, None))
            metric.samples.append(Sample(name + "_count", labels, acc, None, None))
            metric.samples.append(Sample(name + "_sum", labels, child.sum, None, None))
            if created:
                metric.samples.append(Sample(name + "_created", labels, child.created, None, None))
        return [metric]


REQUESTS = _Family("counter", "modelops_serving_requests_total", "Inference requests by protocol and status", _LABELS)
LATENCY = _Family("histogram", "modelops_serving_request_duration_seconds",
                  "Inference request latency (server side)", _LABELS, buckets=LATENCY_BUCKETS)
ROWS = _Family("counter", "modelops_serving_rows_total", "Rows predicted", ("model", "version", "protocol"))
FAST_PATH = Gauge("modelops_serving_fast_path", "1 when the compiled fast path serves, 0 when the original does",
                  ("model", "version", "backend"))
MODEL_INFO = Gauge("modelops_serving_model_info", "The served model (always 1)",
                   ("model", "version", "run_id", "family", "backend"))
INFLIGHT = Gauge("modelops_serving_inflight_requests", "Inference requests being processed", ("model",))
BATCH_ROWS = _Family("histogram", "modelops_serving_batch_rows",
                     "Rows per model call (requests merged in one event-loop turn)", ("model",),
                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 512, 2048, 10000))
DRAINING = Gauge("modelops_serving_draining", "1 after SIGTERM while in-flight requests drain", ("model",))


class Recorder:
    """Pre-bound metric children, so that recording a request costs a dict lookup and two observations."""

    def __init__(self, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self._children: dict[tuple[str, str | int], tuple[_CounterChild, _HistogramChild]] = {}
        self._rows: dict[str, _CounterChild] = {}
        self.inflight = INFLIGHT.labels(model=model)
        self.batch_rows = BATCH_ROWS.labels(model=model)

    def observe(self, protocol: str, status: str | int, seconds: float, rows: int = 0) -> None:
        key = (protocol, status)
        pair = self._children.get(key)
        if pair is None:
            labels = {"model": self.model, "version": self.version, "protocol": protocol, "status": str(status)}
            pair = (REQUESTS.labels(**labels), LATENCY.labels(**labels))
            self._children[key] = pair
        pair[0].value += 1
        pair[1].observe(seconds)
        if rows:
            c = self._rows.get(protocol)
            if c is None:
                c = self._rows[protocol] = ROWS.labels(model=self.model, version=self.version, protocol=protocol)
            c.inc(rows)

    def model_loaded(self, run_id: str, family: str, backend: str, fast: bool) -> None:
        MODEL_INFO.labels(model=self.model, version=self.version, run_id=run_id, family=family,
                          backend=backend).set(1)
        FAST_PATH.labels(model=self.model, version=self.version, backend=backend).set(1 if fast else 0)
        DRAINING.labels(model=self.model).set(0)

    def draining(self) -> None:
        DRAINING.labels(model=self.model).set(1)
