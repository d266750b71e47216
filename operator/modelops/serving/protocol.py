"""The hot infer routes at the HTTP protocol level, in front of KServe's app on the same port.

KServe's REST server is uvicorn running a FastAPI app. Per request uvicorn builds an ASGI scope, creates a task
and a request/response cycle, and writes the head and the body separately; that machinery, not the model,
bounded the single-row throughput under concurrency (issue 19). `ModelopsHttpProtocol` is uvicorn's own
httptools protocol (so every other route, keep-alive, pipelining, timeouts, graceful shutdown and the
connection bookkeeping stay uvicorn's) with one change: a POST to this model's V1 predict or V2 infer route
that arrives on an idle connection with a Content-Length within the body limit is answered right here, from the
parser's callbacks:

- the body is decoded and validated by the same functions as the ASGI layer (`http.decode_request`), so every
  4xx status and message naming the field is the same;
- valid requests go to the model's `TurnBatcher`: every request that arrived in one poll of the event loop is
  predicted by one model call at the end of that turn (no timer, no added wait);
- the response (same body, same headers: content-type, x-model-name/-version/-run-id, x-modelops-backend, and
  uvicorn's date/server) is written with one system call; metrics and the access log line are recorded as on
  the ASGI path.

Everything else goes to KServe's app through uvicorn unchanged: other paths and methods, CloudEvents
(ce-specversion or application/cloudevents+json: KServe's dataplane decodes them), chunked bodies,
`Expect: 100-continue`, bodies over the limit (the ASGI layer answers 413), upgrades, and a request that arrives
while another on the same connection is still being answered (pipelining keeps uvicorn's ordering: this
protocol's in-flight request stands as uvicorn's current cycle until its response is written).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from modelops.httpio import CoalescingHttpToolsProtocol
from modelops.serving.http import INTERNAL_ERROR, decode_request, encode_response, is_cloudevent_type
from modelops.serving.outputs import Prediction
from modelops.serving.schema import InputError, V2Request

log = logging.getLogger("modelops.serving")

_STATUS = {200: b"HTTP/1.1 200 OK\r\n", 400: b"HTTP/1.1 400 Bad Request\r\n",
           413: b"HTTP/1.1 413 Request Entity Too Large\r\n", 422: b"HTTP/1.1 422 Unprocessable Entity\r\n",
           500: b"HTTP/1.1 500 Internal Server Error\r\n", 503: b"HTTP/1.1 503 Service Unavailable\r\n"}


def _status_line(status: int) -> bytes:
    line = _STATUS.get(status)
    if line is None:
        import http

        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


class _NoEvent:
    """uvicorn's connection_lost sets the current cycle's message_event; ours has nothing waiting on it."""

    __slots__ = ()

    def set(self) -> None:
        return None


_NO_EVENT = _NoEvent()


class FastRequest:
    """One request answered by the protocol; while in flight it stands as uvicorn's current cycle."""

    __slots__ = ("binary_length", "body", "disconnected", "keep_alive", "kind", "message_event",
                 "response_complete", "rows", "t0", "target", "v2", "version")

    def __init__(self, kind: str, keep_alive: bool, binary_length: bytes | None, target: bytes, version: str
                 ) -> None:
        self.kind = kind
        self.version = version
        self.keep_alive = keep_alive
        self.binary_length = binary_length
        self.target = target
        self.body: list[bytes] = []
        self.response_complete = False
        self.disconnected = False
        self.message_event = _NO_EVENT
        self.rows = 0
        self.v2: V2Request | None = None
        self.t0 = time.perf_counter()


class Routes:
    """This model's infer routes, matched on the raw request target (no query string, no escapes)."""

    def __init__(self, name: str) -> None:
        self.v1 = f"/v1/models/{name}:predict".encode()
        self.v2 = f"/v2/models/{name}/infer".encode()
        self.v2_versions = f"/v2/models/{name}/versions/".encode()

    def match(self, target: bytes) -> str | None:
        if target == self.v2:
            return "v2"
        if target == self.v1:
            return "v1"
        if target.startswith(self.v2_versions) and target.endswith(b"/infer") and b"?" not in target \
                and b"%" not in target and target.count(b"/") == 6:
            return "v2"
        return None


class ModelopsHttpProtocol(CoalescingHttpToolsProtocol):
    """uvicorn's httptools protocol answering the hot infer routes itself (bound to a model by `bind`)."""

    model: Any = None
    routes: Routes
    max_body: int = 0
    head: bytes = b""  # content-type and the model's headers, ready to send
    _headers_cache: list[Any]  # [uvicorn's default_headers list, its encoding], shared by the connections

    @classmethod
    def bind(cls, model: Any, max_body: int) -> type[ModelopsHttpProtocol]:
        head = [b"content-type: application/json\r\n"]
        for k, v in model.headers.items():
            head.append(k.encode("latin-1") + b": " + v.encode("latin-1", "replace") + b"\r\n")
        attrs = {"model": model, "routes": Routes(model.name), "max_body": max_body, "head": b"".join(head),
                 "_headers_cache": [None, b""]}
        return type("ModelopsHttpProtocol", (cls,), attrs)

    # ------------------------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        self._fast: FastRequest | None = None
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        fast = self._accept()
        if fast is None:
            super().on_headers_complete()
            return
        self._fast = fast
        self.cycle = fast  # type: ignore[assignment]  # uvicorn queues a pipelined request behind it

    def on_body(self, body: bytes) -> None:
        fast = self._fast
        if fast is None:
            super().on_body(body)
            return
        fast.body.append(body)

    def on_message_complete(self) -> None:
        fast = self._fast
        if fast is None:
            super().on_message_complete()
            return
        self._fast = None
        body = fast.body[0] if len(fast.body) == 1 else b"".join(fast.body)
        fast.body = []
        model = self.model
        try:
            batch, fast.v2 = decode_request(model, fast.kind, body, fast.binary_length)
        except InputError as exc:
            self._respond(fast, exc.status, orjson.dumps(exc.body()))
            return
        except Exception:
            log.exception("inference failed")
            self._respond(fast, 500, INTERNAL_ERROR)
            return
        fast.rows = batch.rows
        model.turn.add(batch, lambda pred, exc: self._predicted(fast, pred, exc))

    # ------------------------------------------------------------------------------------- fast requests

    def _accept(self) -> FastRequest | None:
        """A FastRequest when this request is ours to answer here, else None (uvicorn and KServe's app)."""
        parser = self.parser
        if parser.get_method() != b"POST" or self.pipeline or (
                self.cycle is not None and not self.cycle.response_complete):
            return None
        kind = self.routes.match(self.url)
        if kind is None or self.model.turn is None or parser.should_upgrade():
            return None
        length = binary = None
        for name, value in self.headers:
            if name == b"content-length":
                length = value
            elif name == b"inference-header-content-length":
                binary = value
            elif name == b"expect" or name == b"ce-specversion" or name == b"transfer-encoding" or (
                    name == b"content-type" and is_cloudevent_type(value)):
                return None
        if length is None or not length.isdigit() or int(length) > self.max_body:
            return None
        version = parser.get_http_version()
        self.scope["method"] = "POST"
        if version != "1.1":
            self.scope["http_version"] = version
        return FastRequest(kind, version != "1.0" and parser.should_keep_alive(), binary, self.url, version)

    def _predicted(self, fast: FastRequest, pred: Prediction | None, exc: BaseException | None) -> None:
        if exc is None and pred is not None:
            try:
                self._respond(fast, 200, encode_response(self.model, fast.kind, pred, fast.v2))
                return
            except InputError as err:
                exc = err
            except Exception as err:
                exc = err
        if isinstance(exc, InputError):
            self._respond(fast, exc.status, orjson.dumps(exc.body()))
        else:
            log.error("inference failed", exc_info=exc)
            self._respond(fast, 500, INTERNAL_ERROR)

    def _respond(self, fast: FastRequest, status: int, data: bytes) -> None:
        fast.response_complete = True
        self.model.recorder.observe(fast.kind, status, time.perf_counter() - fast.t0,
                                    fast.rows if status == 200 else 0)
        if fast.disconnected:
            return
        parts = [_status_line(status), self.head, self._default_headers()]
        if not fast.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"content-length: " + str(len(data)).encode() + b"\r\n\r\n")
        parts.append(data)
        self.transport.write_now(b"".join(parts))  # type: ignore[attr-defined]
        if self.access_log and self.access_logger.isEnabledFor(logging.INFO):
            self.access_logger.info('%s - "POST %s HTTP/%s" %d', self._client(), fast.target.decode("latin-1"),
                                    fast.version, status)
        if not fast.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _default_headers(self) -> bytes:
        """uvicorn's date and server headers, encoded once per new list (uvicorn replaces it every second)."""
        current = self.server_state.default_headers
        cached = self._headers_cache
        if cached[0] is not current:
            cached[:] = [current, b"".join(n + b": " + v + b"\r\n" for n, v in current)]
        return cached[1]  # type: ignore[no-any-return]

    def _client(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "-"
