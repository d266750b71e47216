"""Prometheus' HTTP query API: one instant query -> `api.types.Sample` (a value, no data, or an error), or a
histogram's bucket vector -> `api.types.Buckets` (cumulative counts by `le`, no data, or an error).

Never raises: whatever Prometheus (or a proxy in front of it) answers, including HTML, a JSON document of
another shape, a sample that is not a number, or nothing at all within the timeout, becomes a Sample with a
reason and a message for the caller's condition.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from modelops.adapters.breaker import Breaker, CircuitOpen, dependency_of
from modelops.api.types import Buckets, Sample


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
        answer = self._ask(promql, timeout)
        if isinstance(answer, Sample):
            return answer
        body, status = answer
        try:
            return _decode(body, status)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            return _error("QueryFailed", f"Prometheus answered HTTP {status} with an unexpected "
                          f"document ({type(exc).__name__})")

    def query_buckets(self, promql: str, timeout: float | None = None) -> Buckets:
        """A histogram's bucket vector (e.g. `sum by (le) (x_bucket{...} - x_bucket{...} offset 30s)`): one series per `le`.

        An empty vector is no data (`Buckets()`); a series without a numeric `le`, a scalar, and every failure
        `query` maps to an error are errors here too, with the same reasons (so the breaker and the analysis
        count them alike).
        """
        answer = self._ask(promql, timeout)
        if isinstance(answer, Sample):
            return Buckets(reason=answer.reason, message=answer.message, error=answer.error)
        body, status = answer
        try:
            return _decode_buckets(body, status)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            msg = f"Prometheus answered HTTP {status} with an unexpected document ({type(exc).__name__})"
            return Buckets(reason="QueryFailed", message=msg, error=msg)

    def _ask(self, promql: str, timeout: float | None) -> tuple[Any, int] | Sample:
        """The JSON answer and HTTP status of one instant query, or the error `Sample` of a failed exchange."""
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
            return resp.json(), resp.status_code
        except ValueError:
            return _error("QueryFailed", f"Prometheus answered HTTP {resp.status_code} with no JSON")

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


def _decode_buckets(body: Any, status: int) -> Buckets:
    if not isinstance(body, dict):
        raise TypeError("not an object")
    if body.get("status") != "success" or status >= 300:
        msg = (f"Prometheus rejected the query (HTTP {status}, {body.get('errorType', '')}: "
               f"{body.get('error', '')})")[:500]
        return Buckets(reason="QueryFailed", message=msg, error=msg)
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        msg = f"bucket query returned a {data.get('resultType')}, not an instant vector of le buckets"
        return Buckets(reason="QueryFailed", message=msg, error=msg)
    counts: dict[float, float] = {}
    for series in data.get("result") or []:
        le = (series.get("metric") or {}).get("le")
        try:
            bound, count = float(str(le)), float(series["value"][1])
        except (TypeError, ValueError):
            msg = (f"bucket query returned a series with le={le!r} and value {str(series.get('value'))[:60]}: "
                   "aggregate it by le (sum by (le) (...))")
            return Buckets(reason="QueryFailed", message=msg, error=msg)
        if math.isnan(bound):
            msg = "bucket query returned a series with le=NaN"
            return Buckets(reason="QueryFailed", message=msg, error=msg)
        counts[bound] = counts.get(bound, 0.0) + count  # "1" and "1.0" are one bucket
    return Buckets(tuple(sorted(counts.items())))


def _point(point: Any, labels: tuple[tuple[str, str], ...] = ()) -> Sample:
    if not isinstance(point, list) or len(point) != 2:
        return _error("QueryFailed", f"unexpected sample {str(point)[:100]}")
    try:
        return Sample(value=float(point[1]), labels=labels)
    except (TypeError, ValueError):
        return _error("QueryFailed", f"sample value {str(point[1])[:50]!r} is not a number")
