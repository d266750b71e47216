"""One instant PromQL query against the Prometheus HTTP API, reduced to a single number or a reason why not.

Small and generic on purpose (`query_one`), so it can merge with the rollout's metrics adapter.
"""

from __future__ import annotations

import math

import httpx

from modelops.decide.triggers import DriftSample


def query_one(base_url: str, query: str, timeout: float = 5.0) -> DriftSample:
    """Evaluate `query` now; exactly one sample (vector of one, or a scalar) is a value, anything else a reason."""
    url = base_url.rstrip("/") + "/api/v1/query"
    try:
        resp = httpx.get(url, params={"query": query}, timeout=timeout)
    except httpx.HTTPError as exc:
        return DriftSample(None, "PrometheusUnreachable", f"Prometheus at {base_url} is unreachable "
                           f"({type(exc).__name__}: {exc})")
    try:
        body = resp.json()
    except ValueError:
        return DriftSample(None, "QueryFailed", f"Prometheus answered HTTP {resp.status_code} without JSON")
    if resp.status_code != 200 or body.get("status") != "success":
        return DriftSample(None, "QueryFailed", f"Prometheus rejected the query (HTTP {resp.status_code}, "
                           f"{body.get('errorType', '')}: {body.get('error', '')})")
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar":
        points = [result]
    elif data.get("resultType") == "vector":
        points = [r.get("value") for r in result or []]
    else:
        return DriftSample(None, "QueryFailed", f"the query returned a {data.get('resultType')}, not a vector")
    if not points:
        return DriftSample(None, "NoData", "the drift query returned no sample (no series matches)")
    if len(points) > 1:
        return DriftSample(None, "AmbiguousResult", f"the drift query returned {len(points)} series; aggregate it "
                           "to one (e.g. max(...))")
    point = points[0]
    if not isinstance(point, list) or len(point) != 2:
        return DriftSample(None, "QueryFailed", f"unexpected sample {point!r}")
    value = float(point[1])
    if not math.isfinite(value):
        # NaN (no data) or ±Inf: neither is a drift share, and JSON (status.drift.value) has neither
        return DriftSample(None, "NoData", f"the drift query returned {value}")
    return DriftSample(value)
