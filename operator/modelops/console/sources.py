"""Read-only sources of evidence and live metrics: MLflow's REST API, Prometheus, the drift exporter.

Every call has a timeout; an outage makes the page say "unavailable" for that panel instead of failing
the page (the API server is the only source a page cannot do without).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx


class SourceError(Exception):
    pass


class Mlflow:
    def __init__(self, uri: str, timeout: float) -> None:
        self.uri = uri.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.uri, timeout=timeout)
        self._artifacts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._versions: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._short: dict[tuple[str, str], tuple[float, Any]] = {}

    async def _get(self, endpoint: str, **params: Any) -> dict[str, Any]:
        path = endpoint
        try:
            resp = await self.http.get(f"/api/2.0/mlflow/{endpoint}", params=params)
        except httpx.HTTPError as exc:
            raise SourceError(f"MLflow at {self.uri}: {type(exc).__name__}") from None
        if resp.status_code == 404 or (resp.status_code == 400 and "RESOURCE_DOES_NOT_EXIST" in resp.text):
            return {}
        if resp.status_code >= 300:
            raise SourceError(f"MLflow {path}: HTTP {resp.status_code} {resp.text[:200]}")
        out: dict[str, Any] = resp.json()
        return out

    async def version(self, model: str, version: str, max_age: float = 0.0) -> dict[str, Any]:
        """One registered version; with max_age > 0 an answer that young is reused (evidence: the trainer's
        tags, metrics and run of a registered version do not change)."""
        import time

        key = (model, version)
        hit = self._versions.get(key)
        if max_age > 0 and hit and time.monotonic() - hit[0] < max_age:
            return hit[1]
        out: dict[str, Any] = (await self._get("model-versions/get", name=model, version=version)).get(
            "model_version") or {}
        if len(self._versions) > 4096:
            self._versions.clear()
        self._versions[key] = (time.monotonic(), out)
        return out

    async def versions(self, model: str, max_age: float = 0.0) -> list[dict[str, Any]]:
        async def fetch() -> Any:
            doc = await self._get("model-versions/search", filter=f"name='{model}'", max_results=200)
            return sorted(doc.get("model_versions") or [], key=lambda v: int(v.get("version", 0)))

        out: list[dict[str, Any]] = await self._cached(("versions", model), max_age, fetch)
        return out

    async def registered(self, model: str, max_age: float = 0.0) -> dict[str, Any]:
        async def fetch() -> Any:
            return (await self._get("registered-models/get", name=model)).get("registered_model") or {}

        out: dict[str, Any] = await self._cached(("registered", model), max_age, fetch)
        return out

    async def _cached(self, key: tuple[str, str], max_age: float, fetch: Any) -> Any:
        import time

        hit = self._short.get(key)
        if max_age > 0 and hit and time.monotonic() - hit[0] < max_age:
            return hit[1]
        value = await fetch()
        if len(self._short) > 4096:
            self._short.clear()
        self._short[key] = (time.monotonic(), value)
        return value

    async def run(self, run_id: str) -> dict[str, Any]:
        if not run_id:
            return {}
        return (await self._get("runs/get", run_id=run_id)).get("run") or {}

    async def artifacts(self, run_id: str, path: str = "") -> list[dict[str, Any]]:
        """A finished run's artifact listing (cached: the trainer never adds to a registered version's run)."""
        key = (run_id, path)
        if key in self._artifacts:
            return self._artifacts[key]
        doc = await self._get("artifacts/list", run_id=run_id, **({"path": path} if path else {}))
        files = list(doc.get("files") or [])
        if len(self._artifacts) > 4096:
            self._artifacts.clear()
        self._artifacts[key] = files
        return files

    async def artifact(self, run_id: str, path: str) -> bytes:
        try:
            resp = await self.http.get("/get-artifact", params={"path": path, "run_uuid": run_id})
        except httpx.HTTPError as exc:
            raise SourceError(f"MLflow artifact: {type(exc).__name__}") from None
        if resp.status_code >= 300:
            raise SourceError(f"MLflow artifact {path}: HTTP {resp.status_code}")
        return resp.content

    async def set_version_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            try:
                resp = await self.http.post("/api/2.0/mlflow/model-versions/set-tag",
                                            json={"name": model, "version": version, "key": key, "value": value})
            except httpx.HTTPError as exc:
                raise SourceError(f"MLflow set-tag: {type(exc).__name__}") from None
            if resp.status_code >= 300:
                raise SourceError(f"MLflow set-tag {key}: HTTP {resp.status_code} {resp.text[:200]}")


def run_facts(run: Mapping[str, Any]) -> dict[str, str]:
    """What a person wants to know about a training run, from MLflow's run JSON."""
    info, data = run.get("info") or {}, run.get("data") or {}
    tags = {t["key"]: t["value"] for t in data.get("tags") or []}
    params = {p["key"]: p["value"] for p in data.get("params") or []}
    out: dict[str, str] = {}
    if info.get("run_id"):
        out["run id"] = str(info["run_id"])
    if info.get("start_time"):
        from datetime import UTC, datetime

        out["trained"] = datetime.fromtimestamp(int(info["start_time"]) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    for key in ("data_hash", "modelops.data_hash", "data.hash", "dataset_hash"):
        if key in tags or key in params:
            out["data hash"] = tags.get(key) or params[key]
            break
    for key in ("model_type", "best_model", "estimator", "modelops.model_type"):
        if key in tags or key in params:
            out["model type"] = tags.get(key) or params[key]
            break
    return out


def run_metrics(run: Mapping[str, Any]) -> dict[str, float]:
    return {m["key"]: float(m["value"]) for m in (run.get("data") or {}).get("metrics") or []}


class Prometheus:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def _call(self, path: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            resp = await self.http.get(path, params=params)
            doc = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SourceError(f"Prometheus at {self.url}: {type(exc).__name__}") from None
        if doc.get("status") != "success":
            raise SourceError(f"Prometheus: {doc.get('error', resp.status_code)}")
        return list((doc.get("data") or {}).get("result") or [])

    async def query(self, promql: str) -> list[dict[str, Any]]:
        return await self._call("/api/v1/query", {"query": promql})

    async def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return await self._call("/api/v1/query_range", {"query": promql, "start": start, "end": end, "step": step})


class DriftExporter:
    """The drift exporter's read API (`GET /drift/{model}`), with its bearer token (modelops.drift.auth)."""

    def __init__(self, url: str, timeout: float, token: str = "") -> None:
        self.url = url.rstrip("/").removesuffix("/events")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=self.url, timeout=timeout, headers=headers)

    async def drift(self, model: str, namespace: str) -> dict[str, Any]:
        """The current evaluation of `model` in `namespace` (the exporter keeps each namespace apart); {} when
        the exporter has seen nothing of it."""
        try:
            resp = await self.http.get(f"/drift/{model}", params={"namespace": namespace})
        except httpx.HTTPError as exc:
            raise SourceError(f"drift exporter at {self.url}: {type(exc).__name__}") from None
        if resp.status_code == 404:
            return {}
        if resp.status_code >= 300:
            raise SourceError(f"drift exporter: HTTP {resp.status_code}")
        out: dict[str, Any] = resp.json()
        return out


async def predict(url: str, model: str, inputs: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    """One KServe V2 inference request (POST {url}/v2/models/{model}/infer)."""
    async with httpx.AsyncClient(timeout=timeout) as http:
        try:
            resp = await http.post(f"{url.rstrip('/')}/v2/models/{model}/infer", json={"inputs": inputs})
        except httpx.HTTPError as exc:
            raise SourceError(f"model endpoint {url}: {type(exc).__name__}") from None
    try:
        body: dict[str, Any] = resp.json()
    except json.JSONDecodeError:
        body = {"error": resp.text[:500]}
    body["_status"] = resp.status_code
    return body


async def gather_quiet(*aws: Any) -> list[Any]:
    """Run concurrently; a SourceError becomes its message (a string) in that slot."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    out = []
    for r in results:
        if isinstance(r, SourceError):
            out.append(str(r))
        elif isinstance(r, BaseException):
            raise r
        else:
            out.append(r)
    return out
