"""Prometheus' HTTP query API: one instant query -> `api.types.Sample` (a value, no data, or an error).

Never raises: whatever Prometheus (or a proxy in front of it) answers, including HTML, a JSON document of
another shape, a sample that is not a number, or nothing at all within the timeout, becomes a Sample with a
reason and a message for the caller's condition.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from modelops.adapters.breaker import Breaker, CircuitOpen, dependency_of
from modelops.api.types import Sample


class Prometheus:
    """Instant queries against `<base_url>/api/v1/query` with a hard timeout.

    - one sample (vector of one series, or a scalar) -> `Sample(value=...)`; NaN stays NaN (0/0 rates) and
      the analysis treats it as no data (`query_value` makes it reason NoData); "+Inf" stays +Inf (a quantile
      above the top histogram bucket) and the analysis fails it against a `max` or holds on it, never passes
      it (issue 16, H1), while `query_value` makes it no data (a drift share is never infinite, and JSON in
      status has no Inf);
    - an empty vector -> `Sample()` (no data; `query_value` gives it reason NoData);
    - several series, a non-success status, an odd answer, a timeout or a refused connection ->
      `Sample(error=..., reason=...)`;
    - with a `breaker`, a Prometheus that keeps timing out, refusing or answering 5xx is not asked at all
      while its breaker is open: `Sample(error=..., reason="PrometheusUnreachable")` at once, saying the circuit
      is open (review M12).
    """

    def __init__(self, base_url: str, timeout: float = 5.0, transport: httpx.BaseTransport | None = None,
                 breaker: Breaker | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.breaker = breaker
        self.dependency = dependency_of(self.base_url)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def query(self, promql: str, timeout: float | None = None) -> Sample:
        """`timeout` (seconds) lowers the client's own for this query, e.g. to what is left of a budget."""
        if self.breaker is not None:
            try:
                self.breaker.before(self.dependency)
            except CircuitOpen as exc:
                return _error("PrometheusUnreachable", f"Prometheus at {self.base_url} unreachable: {exc}")
        try:
            resp = self._http.get("/api/v1/query", params={"query": promql},
                                  timeout=min(self.timeout, timeout) if timeout is not None else self.timeout)
        except httpx.HTTPError as exc:
            if self.breaker is not None:
                self.breaker.failure(self.dependency)
            return _error("PrometheusUnreachable",
                          f"Prometheus at {self.base_url} unreachable: {type(exc).__name__}: {exc}")
        if self.breaker is not None:
            (self.breaker.failure if resp.status_code >= 500 else self.breaker.success)(self.dependency)
        try:
            body = resp.json()
        except ValueError:
            return _error("QueryFailed", f"Prometheus answered HTTP {resp.status_code} with no JSON")
        try:
            return _decode(body, resp.status_code)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            return _error("QueryFailed", f"Prometheus answered HTTP {resp.status_code} with an unexpected "
                          f"document ({type(exc).__name__})")

    def query_value(self, promql: str, timeout: float | None = None) -> Sample:
        """Like `query`, but a NaN or ±Inf result is no data (reason NoData), as a trigger reads it."""
        sample = self.query(promql, timeout)
        if sample.value is not None and not math.isfinite(sample.value):
            return Sample(None, "NoData", f"the query returned {sample.value}")
        if sample.value is None and not sample.reason:
            return Sample(None, "NoData", "the query returned no sample (no series matches)")
        return sample


def _error(reason: str, message: str) -> Sample:
    return Sample(None, reason, message[:500], error=message[:500])


def _decode(body: Any, status: int) -> Sample:
    if not isinstance(body, dict):
        raise TypeError("not an object")
    if body.get("status") != "success" or status >= 300:
        return _error("QueryFailed", f"Prometheus rejected the query (HTTP {status}, "
                      f"{body.get('errorType', '')}: {body.get('error', '')})")
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar":
        return _point(result)
    if data.get("resultType") != "vector":
        return _error("QueryFailed", f"query returned a {data.get('resultType')}, not an instant vector")
    if not result:
        return Sample()  # no data
    if len(result) > 1:
        return _error("AmbiguousResult", f"query returned {len(result)} series; aggregate it to one (sum, max, ...)")
    metric = result[0].get("metric") or {}
    labels = tuple(sorted((str(k), str(v)) for k, v in metric.items())) if isinstance(metric, dict) else ()
    return _point(result[0]["value"], labels)


def _point(point: Any, labels: tuple[tuple[str, str], ...] = ()) -> Sample:
    if not isinstance(point, list) or len(point) != 2:
        return _error("QueryFailed", f"unexpected sample {str(point)[:100]}")
    try:
        return Sample(value=float(point[1]), labels=labels)
    except (TypeError, ValueError):
        return _error("QueryFailed", f"sample value {str(point[1])[:50]!r} is not a number")
