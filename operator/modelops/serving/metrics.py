"""Prometheus metrics of the model server (served on /metrics by the KServe REST server)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

REQUESTS = Counter("modelops_serving_requests_total", "Inference requests by protocol and status", _LABELS)
LATENCY = Histogram("modelops_serving_request_duration_seconds", "Inference request latency (server side)",
                    _LABELS, buckets=LATENCY_BUCKETS)
ROWS = Counter("modelops_serving_rows_total", "Rows predicted", ("model", "version", "protocol"))
FAST_PATH = Gauge("modelops_serving_fast_path", "1 when the compiled fast path serves, 0 when the original does",
                  ("model", "version", "backend"))
MODEL_INFO = Gauge("modelops_serving_model_info", "The served model (always 1)",
                   ("model", "version", "run_id", "family", "backend"))
INFLIGHT = Gauge("modelops_serving_inflight_requests", "Inference requests being processed", ("model",))
BATCH_ROWS = Histogram("modelops_serving_batch_rows", "Rows per model call (requests merged in one event-loop turn)",
                       ("model",), buckets=(1, 2, 4, 8, 16, 32, 64, 128, 512, 2048, 10000))
DRAINING = Gauge("modelops_serving_draining", "1 after SIGTERM while in-flight requests drain", ("model",))


class Recorder:
    """Pre-bound metric children, so that recording a request costs a dict lookup and two observations."""

    def __init__(self, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._rows: dict[str, Counter] = {}
        self.inflight = INFLIGHT.labels(model=model)
        self.batch_rows = BATCH_ROWS.labels(model=model)

    def observe(self, protocol: str, status: str | int, seconds: float, rows: int = 0) -> None:
        key = (protocol, str(status))
        pair = self._children.get(key)
        if pair is None:
            labels = {"model": self.model, "version": self.version, "protocol": protocol, "status": key[1]}
            pair = (REQUESTS.labels(**labels), LATENCY.labels(**labels))
            self._children[key] = pair
        pair[0].inc()
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
