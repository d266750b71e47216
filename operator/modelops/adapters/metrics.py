"""Prometheus' HTTP query API: one instant query -> a value, no data, or an error. Never raises."""

from __future__ import annotations

import math

import httpx

from modelops.decide.analysis import Sample


class Prometheus:
    """Instant queries against `<base_url>/api/v1/query` with a hard timeout.

    - one sample (vector of one series, or a scalar) -> `Sample(value=...)`; NaN stays NaN (0/0 rates) and
      the analysis treats it as no data; "+Inf" stays +Inf (a quantile above the top histogram bucket) and
      the analysis fails it against a `max` or holds on it, never passes it (issue 16, H1);
    - an empty vector -> `Sample()` (no data);
    - several series, a non-success status, a timeout or a refused connection -> `Sample(error=...)`.
    """

    def __init__(self, base_url: str, timeout: float = 5.0, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def query(self, promql: str) -> Sample:
        try:
            resp = self._http.get("/api/v1/query", params={"query": promql})
        except httpx.HTTPError as exc:
            return Sample(error=f"Prometheus at {self.base_url} unreachable: {type(exc).__name__}: {exc}")
        try:
            body = resp.json()
        except ValueError:
            return Sample(error=f"Prometheus answered {resp.status_code} with no JSON")
        if body.get("status") != "success":
            return Sample(error=f"{body.get('errorType', resp.status_code)}: {body.get('error', '')}"[:500])
        data = body.get("data") or {}
        result = data.get("result")
        if data.get("resultType") == "scalar":
            return Sample(value=_float(result[1]))
        if data.get("resultType") != "vector":
            return Sample(error=f"query returned a {data.get('resultType')}, not an instant vector")
        if not result:
            return Sample()
        if len(result) > 1:
            return Sample(error=f"query returned {len(result)} series; aggregate it to one (sum, max, ...)")
        return Sample(value=_float(result[0]["value"][1]))


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
