"""HTTP surface of the drift exporter (FastAPI).

POST /                      KServe logger CloudEvents (binary or structured mode, or a batch); also /events
POST /ingest/{model}        rows posted directly: {"version", "instances"|"inputs", "predictions"|"outputs"}
GET  /metrics               Prometheus metrics (see modelops.drift.metrics for names and PromQL)
GET  /drift/{model}         the current evaluation as JSON (?version=; default: the latest updated version)
GET  /reports/{model}       Evidently HTML report, window vs reference (?version=, ?refresh=1)
GET  /reports/{model}/drift.png   drift scores bar chart plus histograms of the most drifted features
GET  /healthz, /readyz
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from modelops.drift import report as rp
from modelops.drift.events import EventError
from modelops.drift.metrics import DriftCollector
from modelops.drift.service import Exporter, Tracked

log = logging.getLogger(__name__)


@dataclass
class ReportSettings:
    ttl: float = 60.0  # seconds a generated report is served before a changed window regenerates it
    directory: Path | None = None  # scheduled reports go here
    interval: float = 0.0  # seconds between scheduled reports (0: none)
    keep: int = 48  # scheduled reports kept per model version


class ReportCache:
    """Generated HTML per model version; bounded by the number of tracked versions."""

    def __init__(self, exporter: Exporter, settings: ReportSettings) -> None:
        self.exporter = exporter
        self.settings = settings
        self._entries: dict[tuple[str, str], tuple[int, float, str]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def html(self, tracked: Tracked, refresh: bool = False) -> tuple[str, bool]:
        """(html, served_from_cache)."""
        key = (tracked.model, tracked.version)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            live = {(t.model, t.version) for t in self.exporter.tracked()}
            for k in [k for k in self._entries if k not in live]:
                self._entries.pop(k, None)
        with lock:  # one generation per model version at a time; others wait and reuse it
            generation = tracked.window.generation
            hit = self._entries.get(key)
            if hit and not refresh and (hit[0] == generation or time.monotonic() - hit[1] < self.settings.ttl):
                return hit[2], True
            html = generate_html(self.exporter, tracked)
            self._entries[key] = (generation, time.monotonic(), html)
            return html, False


def generate_html(exporter: Exporter, tracked: Tracked) -> str:
    evaluation = exporter.evaluate(tracked)
    current, reference = exporter.window_frame(tracked)
    if len(current) == 0:
        raise HTTPException(409, f"the window of {tracked.model} {tracked.version} is empty")
    title = f"Drift report: {tracked.model} version {tracked.version} - {len(current)} rows, " \
            f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    return rp.evidently_html(current, reference, tracked.profile, evaluation.result, title)


def generate_png(exporter: Exporter, tracked: Tracked) -> bytes:
    evaluation = exporter.evaluate(tracked)
    current, _ = exporter.window_frame(tracked)
    return rp.drift_png(evaluation.result, tracked.profile, current,
                        f"{tracked.model} version {tracked.version}: window vs training reference")


def write_scheduled_reports(exporter: Exporter, settings: ReportSettings) -> list[Path]:
    """One HTML report (and PNG) per model version with a judged window, into settings.directory."""
    assert settings.directory is not None
    written: list[Path] = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for tracked in exporter.tracked():
        if exporter.evaluate(tracked).result.status != "ok":
            continue
        folder = settings.directory / _safe(tracked.model) / _safe(tracked.version)
        folder.mkdir(parents=True, exist_ok=True)
        html = generate_html(exporter, tracked)
        path = folder / f"report-{stamp}.html"
        path.write_text(html)
        (folder / "latest.html").write_text(html)
        (folder / "latest.png").write_bytes(generate_png(exporter, tracked))
        written.append(path)
        for old in sorted(folder.glob("report-*.html"))[: -settings.keep]:
            old.unlink(missing_ok=True)
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def _scheduler(exporter: Exporter, settings: ReportSettings, stop: threading.Event) -> None:
    while not stop.wait(settings.interval):
        try:
            for path in write_scheduled_reports(exporter, settings):
                log.info("wrote %s", path)
        except Exception:
            log.exception("scheduled report failed")


def _find(exporter: Exporter, model: str, version: str | None) -> Tracked:
    tracked = exporter.find(model, version)
    if tracked is None:
        what = f"model {model!r}" + (f" version {version!r}" if version else "")
        raise HTTPException(404, f"no window for {what}: no events received for it yet")
    return tracked


def create_app(exporter: Exporter, settings: ReportSettings | None = None) -> FastAPI:
    settings = settings or ReportSettings()
    registry = CollectorRegistry()
    registry.register(DriftCollector(exporter))
    reports = ReportCache(exporter, settings)
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.directory is not None and settings.interval > 0:
            threading.Thread(target=_scheduler, args=(exporter, settings, stop), daemon=True,
                             name="report-scheduler").start()
        yield
        stop.set()

    app = FastAPI(title="modelops drift exporter", version="1", lifespan=lifespan)

    async def read_body(request: Request) -> bytes:
        limit = exporter.cfg.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            exporter.reject("body_too_large")
            raise EventError("body_too_large", f"{declared} bytes; the limit is {limit} (--max-body-bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                exporter.reject("body_too_large")
                raise EventError("body_too_large", f"more than {limit} bytes (--max-body-bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    def refused(exc: EventError) -> JSONResponse:
        return JSONResponse({"reason": exc.reason, "message": exc.message}, status_code=exc.status)

    @app.post("/")
    @app.post("/events")
    async def cloudevents(request: Request) -> Any:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await read_body(request)
            return exporter.handle_http(headers, body)
        except EventError as exc:
            return refused(exc)

    @app.post("/ingest/{model}")
    async def ingest(model: str, request: Request) -> Any:
        import json

        try:
            body = await read_body(request)
        except EventError as exc:
            return refused(exc)
        try:
            payload = json.loads(body)
        except ValueError as exc:
            exporter.reject("invalid_json")
            return refused(EventError("invalid_json", f"body is not valid JSON: {exc}"))
        try:
            return exporter.ingest_batch(model, payload)
        except EventError as exc:
            return refused(exc)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/drift/{model}")
    def drift(model: str, version: str | None = Query(None)) -> Any:
        tracked = _find(exporter, model, version)
        e = exporter.evaluate(tracked)
        return {"model": e.model, "version": e.version, "reference": e.reference,
                "evaluation_seconds": e.seconds, "evaluated_at": e.evaluated_at, **e.result.as_dict()}

    @app.get("/reports/{model}", response_class=HTMLResponse)
    def report_html(model: str, version: str | None = Query(None), refresh: bool = Query(False)) -> Response:
        html, cached = reports.html(_find(exporter, model, version), refresh)
        return HTMLResponse(html, headers={"X-Report-Cache": "hit" if cached else "miss"})

    @app.get("/reports/{model}/drift.png")
    def report_png(model: str, version: str | None = Query(None)) -> Response:
        return Response(generate_png(exporter, _find(exporter, model, version)), media_type="image/png")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, Any]:
        return {"status": "ready", "models": sorted(exporter.models)}

    return app
