"""HTTP surface of the drift exporter (FastAPI).

POST /events/ns/{namespace}/{token}   KServe logger CloudEvents for one namespace (the URL the operator writes)
POST /                      CloudEvents (binary or structured mode, or a batch), bearer token; also /events
POST /ingest/{model}        rows posted directly: {"version", "instances"|"inputs", "predictions"|"outputs"}
                            (?namespace=), bearer token
POST /feedback              ground truth by inference id (issue 17; modelops.drift.feedback): JSON
                            {"id", "label", "ts"?}, a list of them, or a CloudEvent of type
                            org.kubeflow.serving.feedback (binary or structured) whose data is one of those;
                            bearer token (?namespace=); answers {"joined", "unmatched", "expired",
                            "duplicate", "invalid"}; 400 for a body that is not JSON of that shape
POST /feedback/ns/{namespace}/{token}   the same, for one namespace (the URL scheme of the event endpoint)
GET  /metrics               Prometheus metrics (see modelops.drift.metrics for names and PromQL)
GET  /drift/{model}         the current evaluation as JSON (?namespace=, ?version=; default: the latest
                            updated version), bearer token
GET  /reports/{model}       Evidently HTML report, window vs reference (?namespace=, ?version=, ?refresh=1),
                            bearer token; a refresh is honoured at most once per report TTL
GET  /reports/{model}/drift.png   drift scores bar chart plus histograms of the most drifted features
GET  /healthz, /readyz

Authentication: see modelops.drift.auth (401 without a valid token).

The POSTs that carry data (events, /ingest, /feedback) do not go through FastAPI: `EventIngress` takes them
straight from ASGI, with one implementation of their authentication, body limit and refusals. For event
POSTs it decodes bodies up to `INLINE_BYTES` on the event loop, one after another (threads would only take
turns on the GIL, see INLINE_BYTES), and larger ones in one decode thread, and bounds the bodies in flight (`IngressLimits`): beyond them an event is
answered 429 with ``Retry-After`` and counted (``modelops_drift_events_rejected_total{reason="overloaded"}``)
instead of queueing without bound (issue 19). KServe's agent sends its batched logger output (a JSON array of
LogRequest records, agent ``--log-marshaller-url`` pointed at the namespace URL) to the same routes; the
answer to such a batch is what KServe's own JSON marshaller answers (the records as JSON, header
``X-Log-Marshal-Extension: json``), so the agent's blob store keeps receiving them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from modelops.drift import report as rp
from modelops.drift.auth import Auth
from modelops.drift.events import EventError, is_log_request_batch
from modelops.drift.feedback import FeedbackError
from modelops.drift.metrics import DriftCollector
from modelops.drift.service import Exporter, Tracked
from modelops.formats.drift_url import NAMESPACE_PATH

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
        self._entries: dict[tuple[str, str, str], tuple[int, float, str]] = {}
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def html(self, tracked: Tracked, refresh: bool = False) -> tuple[str, bool]:
        """(html, served_from_cache)."""
        key = (tracked.namespace, tracked.model, tracked.version)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            live = {(t.namespace, t.model, t.version) for t in self.exporter.tracked()}
            for k in [k for k in self._entries if k not in live]:
                self._entries.pop(k, None)
        with lock:  # one generation per model version at a time; others wait and reuse it
            generation = tracked.window.generation
            hit = self._entries.get(key)
            fresh = hit is not None and time.monotonic() - hit[1] < self.settings.ttl
            # ?refresh=1 regenerates at most once per TTL: an expensive endpoint is not a CPU lever (M6)
            if hit and (fresh or (not refresh and hit[0] == generation)):
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
        base = settings.directory / _safe(tracked.namespace) if tracked.namespace else settings.directory
        folder = base / _safe(tracked.model) / _safe(tracked.version)
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


def _find(exporter: Exporter, model: str, version: str | None, namespace: str | None = None) -> Tracked:
    try:
        tracked = exporter.find(model, version, namespace)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    if tracked is None:
        what = f"model {model!r}" + (f" version {version!r}" if version else "")
        raise HTTPException(404, f"no window for {what}: no events received for it yet")
    return tracked


# Bodies up to this size are decoded on the event loop, larger ones in the one decode thread (issue 19).
# Decoding is CPU work under the GIL either way; profiled with 250 kB batched events (1 ms of decoding
# each) at 80% of the saturated rate, decoding them in a pool of threads made the p99 ingest latency 52 ms:
# every thread and the event loop took turns on the GIL in 5 ms switch intervals, so a request waited for
# all the bodies decoded at once and the loop waited to read the next one. On the loop the events are
# decoded one after another in arrival order, ~5 ms for a 1 MiB body at most.
INLINE_BYTES = 1 << 20


@dataclass(frozen=True)
class IngressLimits:
    """Backpressure: event bodies being read or decoded at once, and their bytes. Beyond either: 429."""

    max_inflight: int = 64
    max_inflight_bytes: int = 64 << 20
    retry_after_seconds: int = 1


Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


#: POST routes answered by EventIngress: the namespace URLs below these prefixes, and the bearer URLs
EVENTS, INGEST, FEEDBACK = "events", "ingest", "feedback"
FEEDBACK_PATH = "/feedback"
_BEARER_HINT = {
    EVENTS: "or post to the namespace URL the operator writes into the logger",
    INGEST: "or post to the namespace URL the operator writes into the logger",
    FEEDBACK: "or post to the feedback URL of the namespace",
}


@dataclass(frozen=True)
class _Route:
    kind: str  # EVENTS, INGEST or FEEDBACK
    namespace: str | None  # None: bearer-authenticated events (the events' ce-namespace counts)
    token: str | None  # the namespace token of the URL; None: bearer token
    model: str | None = None  # POST /ingest/{model}


def _route(scope: dict[str, Any]) -> _Route | None:
    path: str = scope["path"]
    if path in ("/", "/events"):
        return _Route(EVENTS, None, None)
    if path.startswith(NAMESPACE_PATH + "/") and path.count("/") == 4:
        namespace, token = path[len(NAMESPACE_PATH) + 1:].split("/")
        return _Route(EVENTS, namespace, token)
    if path.startswith("/ingest/") and path.count("/") == 2 and len(path) > len("/ingest/"):
        return _Route(INGEST, _query_namespace(scope), None, path[len("/ingest/"):])
    if path == FEEDBACK_PATH:
        return _Route(FEEDBACK, _query_namespace(scope), None)
    if path.startswith(FEEDBACK_PATH + "/ns/") and path.count("/") == 4:
        namespace, token = path[len(FEEDBACK_PATH) + 4:].split("/")
        if namespace and token:
            return _Route(FEEDBACK, namespace, token)
    return None


def _query_namespace(scope: dict[str, Any]) -> str:
    values: list[str] = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("namespace", [""])
    return values[0]


class EventIngress:
    """ASGI front for the POSTs that carry data (events, /ingest, /feedback): one implementation of their
    authentication, body limit and refusals; event bodies are also bounded in flight and decoded here.
    Everything else goes to `app`."""

    def __init__(self, app: Any, exporter: Exporter, auth: Auth, limits: IngressLimits) -> None:
        self.app = app
        self.exporter = exporter
        self.auth = auth
        self.limits = limits
        self.inflight = 0
        self.inflight_bytes = 0
        self._decoder: ThreadPoolExecutor | None = None  # bodies beyond INLINE_BYTES (created on first use)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        route = _route(scope) if scope["type"] == "http" else None
        if route is None or (scope["method"] != "POST" and route.kind != FEEDBACK):
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":  # the feedback URLs take POST only
            return await _respond(send, 405, b'{"detail":"Method Not Allowed"}', [(b"allow", b"POST")])
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            self._authenticate(route, headers)
            size = self._declared_size(headers)
            if route.kind == FEEDBACK:
                return await self._feedback(route, headers, await self._body(receive), send)
            if self.inflight >= self.limits.max_inflight or (
                    self.inflight and self.inflight_bytes + size > self.limits.max_inflight_bytes):
                raise self._refuse("overloaded", f"{self.inflight} event bodies ({self.inflight_bytes} bytes) are "
                                   f"being decoded; retry after {self.limits.retry_after_seconds}s")
            self.inflight += 1
            self.inflight_bytes += size
            try:
                body = await self._body(receive)
                if route.model is not None:
                    result = await self._ingest(route.model, body, route.namespace or "")
                elif len(body) <= INLINE_BYTES:
                    result = self.exporter.handle_http(headers, body, route.namespace)
                else:
                    result = await self._decode_thread(self.exporter.handle_http, headers, body, route.namespace)
            finally:
                self.inflight -= 1
                self.inflight_bytes -= size
        except EventError as exc:
            return await self._refused(send, exc)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if route.model is None and not any(k.startswith("ce-") for k in headers) and \
                is_log_request_batch(content_type, body):
            # KServe's HTTPMarshaller contract: the marshalled batch back (one record: the object itself)
            records = orjson.loads(body)
            out = orjson.dumps(records[0]) if len(records) == 1 else body
            return await _respond(send, 200, out, [(b"x-log-marshal-extension", b"json")])
        return await _respond(send, 200, orjson.dumps(result), [])

    def _authenticate(self, route: _Route, headers: dict[str, str]) -> None:
        """Raises EventError (401, counted) unless the request carries the credential its URL asks for."""
        if route.token is None:
            if not self.auth.bearer_ok(headers.get("authorization")):
                raise self._refuse("unauthorized", "no valid bearer token: send Authorization: Bearer <token> (the "
                                   f"chart's drift exporter Secret), {_BEARER_HINT[route.kind]}")
        elif not self.auth.namespace_ok(route.namespace or "", route.token):
            message = f"the token in the URL is not namespace {route.namespace!r}'s"
            if route.kind == FEEDBACK:
                message += f": send Authorization: Bearer <token> (the chart's drift exporter Secret), " \
                           f"{_BEARER_HINT[FEEDBACK]}"
            raise self._refuse("unauthorized", message)

    def _declared_size(self, headers: dict[str, str]) -> int:
        declared = headers.get("content-length", "")
        size = int(declared) if declared.isdigit() else 0
        limit = self.exporter.cfg.max_body_bytes
        if size > limit:
            raise self._refuse("body_too_large", f"{size} bytes; the limit is {limit} (--max-body-bytes)")
        return size

    async def _feedback(self, route: _Route, headers: dict[str, str], body: bytes, send: Send) -> None:
        try:
            result = await run_in_threadpool(self.exporter.handle_feedback, headers, body, route.namespace or "")
        except FeedbackError as exc:
            self.exporter.reject("invalid_payload")
            return await _respond(send, 400, orjson.dumps({"reason": "invalid_feedback", "message": str(exc)}), [])
        return await _respond(send, 200, orjson.dumps(result), [])

    async def _refused(self, send: Send, exc: EventError) -> None:
        extra = []
        if exc.status == 401:
            extra.append((b"www-authenticate", b"Bearer"))
        if exc.status == 429:
            extra.append((b"retry-after", str(self.limits.retry_after_seconds).encode()))
        await _respond(send, exc.status, orjson.dumps({"reason": exc.reason, "message": exc.message}), extra)

    async def _ingest(self, model: str, body: bytes, namespace: str) -> dict[str, Any]:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise self._refuse("invalid_json", f"body is not valid JSON: {exc}") from None
        if len(body) <= INLINE_BYTES:
            return self.exporter.ingest_batch(model, payload, None, namespace)
        return await self._decode_thread(self.exporter.ingest_batch, model, payload, None, namespace)

    async def _decode_thread(self, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        """`fn(*args)` in the one decode thread: bodies beyond INLINE_BYTES are decoded one at a time there,
        so at most one decoding thread competes with the event loop for the GIL."""
        if self._decoder is None:
            self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-decode")
        return await asyncio.get_running_loop().run_in_executor(self._decoder, lambda: fn(*args))

    def _refuse(self, reason: str, message: str) -> EventError:
        self.exporter.reject(reason)
        return EventError(reason, message)

    async def _body(self, receive: Receive) -> bytes:
        limit = self.exporter.cfg.max_body_bytes
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise EventError("invalid_payload", "the client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise self._refuse("body_too_large", f"more than {limit} bytes (--max-body-bytes)")
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def create_app(exporter: Exporter, settings: ReportSettings | None = None, auth: Auth | None = None,
               limits: IngressLimits | None = None) -> EventIngress:
    """The app. `auth` None or with an empty secret: no authentication (the CLI needs --no-auth for that).

    `EventIngress` answers the POSTs (events, /ingest); the FastAPI app behind it everything else.
    """
    auth = auth or Auth("")
    return EventIngress(_reads_app(exporter, settings, auth), exporter, auth, limits or IngressLimits())


def _reads_app(exporter: Exporter, settings: ReportSettings | None, auth: Auth) -> FastAPI:
    """Metrics, drift, reports and probes."""
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

    def bearer(request: Request) -> None:
        if not auth.bearer_ok(request.headers.get("authorization")):
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/drift/{model}", dependencies=[Depends(bearer)])
    def drift(model: str, version: str | None = Query(None), namespace: str | None = Query(None)) -> Any:
        tracked = _find(exporter, model, version, namespace)
        e = exporter.evaluate(tracked)
        return {"model": e.model, "namespace": e.namespace, "version": e.version, "reference": e.reference,
                "evaluation_seconds": e.seconds, "evaluated_at": e.evaluated_at, **e.result.as_dict()}

    @app.get("/reports/{model}", response_class=HTMLResponse, dependencies=[Depends(bearer)])
    def report_html(model: str, version: str | None = Query(None), refresh: bool = Query(False),
                    namespace: str | None = Query(None)) -> Response:
        html, cached = reports.html(_find(exporter, model, version, namespace), refresh)
        return HTMLResponse(html, headers={"X-Report-Cache": "hit" if cached else "miss"})

    @app.get("/reports/{model}/drift.png", dependencies=[Depends(bearer)])
    def report_png(model: str, version: str | None = Query(None), namespace: str | None = Query(None)) -> Response:
        return Response(generate_png(exporter, _find(exporter, model, version, namespace)), media_type="image/png")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, Any]:
        return {"status": "ready", "models": len(exporter.models)}

    return app
