"""The REST hot path: a raw ASGI layer in front of KServe's FastAPI app.

It answers this model's V1 predict and V2 infer (JSON and the binary data extension), V2 model metadata and
the readiness probes during drain; everything else (health, /metrics, model list, CloudEvents) goes to
KServe's own routes. Per request it does what the inference needs and nothing else: body limit while
reading, orjson, validation straight into numpy columns (no pandas), the model, orjson out, two metric
observations. The request body limit is enforced for every POST, before parsing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from modelops.serving import outputs
from modelops.serving.outputs import Prediction
from modelops.serving.schema import Batch, InputError, V2Request, decode_v1, decode_v2, split_binary_body

log = logging.getLogger("modelops.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY
_BINARY_HEADER = b"inference-header-content-length"
INTERNAL_ERROR = b'{"error":"internal server error"}'


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class FastHTTP:
    def __init__(self, inner: ASGIApp, model: Any, max_body_bytes: int, drain_seconds: float = 0.0) -> None:
        self.inner = inner
        self.model = model
        self.max_body = max_body_bytes
        self.drain_seconds = drain_seconds
        name = model.name
        self.v1_predict = f"/v1/models/{name}:predict"
        self.v2_infer = f"/v2/models/{name}/infer"
        self.v2_versions = f"/v2/models/{name}/versions/"
        self.v2_metadata = f"/v2/models/{name}"
        self.ready_paths = {"/v2/health/ready", f"/v2/models/{name}/ready", f"/v1/models/{name}"}
        self._drain_hooked = False

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        hs = [(b"content-type", b"application/json")]
        hs.extend((k.encode(), v.encode("latin-1", "replace")) for k, v in self.model.headers.items())
        return hs

    # ------------------------------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            method = scope["method"]
            path = scope["path"]
            if method == "POST":
                await self._post(path, scope, receive, send)
                return
            if method == "GET":
                if path in self.ready_paths and self.model.draining:
                    await _reply(send, 503, b'{"error":"draining"}', [(b"content-type", b"application/json")])
                    return
                if path == self.v2_metadata:
                    await _reply(send, 200, orjson.dumps(self.model.metadata()), self.response_headers())
                    return
        elif kind == "lifespan":
            await self.inner(scope, self._lifespan_receive(receive), send)
            return
        await self.inner(scope, receive, send)

    def _protocol(self, path: str) -> str | None:
        if path == self.v1_predict:
            return "v1"
        if path == self.v2_infer or (path.startswith(self.v2_versions) and path.endswith("/infer")):
            return "v2"
        return None

    async def _post(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = {}
        for k, v in scope["headers"]:
            headers[k] = v
        protocol = self._protocol(path)
        t0 = time.perf_counter()
        try:
            body = await self._read_body(headers.get(b"content-length"), receive)
        except _TooLarge:
            msg = orjson.dumps({"error": f"request body exceeds {self.max_body} bytes"})
            await _reply(send, 413, msg, [(b"content-type", b"application/json"), (b"connection", b"close")])
            if protocol:
                self.model.recorder.observe(protocol, 413, time.perf_counter() - t0)
            return
        except _Disconnected:
            return
        if protocol is None or _is_cloudevent(headers):
            await self._delegate(protocol, scope, body, receive, send, t0)
            return
        await self._infer(protocol, headers, body, send, t0)

    async def _read_body(self, content_length: bytes | None, receive: Receive) -> bytes:
        if content_length is not None:
            try:
                if int(content_length) > self.max_body:
                    raise _TooLarge
            except ValueError:
                pass  # the server has already rejected malformed framing
        chunks = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise _Disconnected
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _infer(self, protocol: str, headers: dict[bytes, bytes], body: bytes, send: Send, t0: float) -> None:
        model = self.model
        rows = 0
        try:
            batch, req = decode_request(model, protocol, body, headers.get(_BINARY_HEADER))
            rows = batch.rows
            pred = await model.infer_batch(batch)
            data = encode_response(model, protocol, pred, req)
            status = 200
        except InputError as exc:
            status = exc.status
            data = orjson.dumps(exc.body())
        except Exception:
            log.exception("inference failed")
            status = 500
            data = INTERNAL_ERROR
        await _reply(send, status, data, self.response_headers())
        model.recorder.observe(protocol, status, time.perf_counter() - t0, rows if status == 200 else 0)

    async def _delegate(self, protocol: str | None, scope: Scope, body: bytes, receive: Receive, send: Send,
                        t0: float) -> None:
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if protocol is None:
            await self.inner(scope, replay, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.inner(scope, replay, capture)
        finally:
            self.model.recorder.observe(protocol, status, time.perf_counter() - t0)

    # ------------------------------------------------------------------------------------------ drain

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self._hook_sigterm()
            return msg

        return wrapped

    def _hook_sigterm(self) -> None:
        """Run in front of uvicorn's SIGTERM handler: fail readiness at once, keep serving `drain_seconds`,
        then let uvicorn close the listener and wait for in-flight requests (its graceful shutdown)."""
        if self._drain_hooked or threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return
        loop = asyncio.get_running_loop()
        self._drain_hooked = True

        def on_sigterm(sig: int, frame: Any) -> None:
            if self.model.draining:  # a second SIGTERM: stop waiting
                previous(sig, frame)
                return
            self.model.start_drain()
            if self.drain_seconds > 0:
                loop.call_soon_threadsafe(loop.call_later, self.drain_seconds, previous, sig, None)
            else:
                previous(sig, frame)

        signal.signal(signal.SIGTERM, on_sigterm)


def decode_request(model: Any, protocol: str, body: bytes, binary_length: bytes | None
                   ) -> tuple[Batch, V2Request | None]:
    """A V1 predict or V2 infer body -> validated columns (InputError: 4xx naming the field)."""
    if not model.ready:
        raise InputError("model is not ready", status=503)
    if protocol == "v1":
        return decode_v1(_loads(body), model.spec, model.limits), None
    binary = None
    if binary_length is not None:
        body, binary = split_binary_body(body, binary_length.decode("latin-1"))
    req = decode_v2(_loads(body), model.spec, model.limits, binary)
    return req.batch, req


def encode_response(model: Any, protocol: str, pred: Prediction, req: V2Request | None) -> bytes:
    """The response body (InputError when a requested V2 output does not exist)."""
    if protocol == "v1" or req is None:
        return orjson.dumps(outputs.v1_body(pred), option=_JSON_OPTS)
    return orjson.dumps(outputs.v2_body(pred, model.spec, model.name, req.request_id, req.outputs),
                        option=_JSON_OPTS)


def _loads(body: bytes) -> Any:
    if not body:
        raise InputError("empty request body", status=400)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"request body is not valid JSON: {str(exc)[:200]}", status=400) from None


def _is_cloudevent(headers: dict[bytes, bytes]) -> bool:
    return b"ce-specversion" in headers or is_cloudevent_type(headers.get(b"content-type", b""))


def is_cloudevent_type(content_type: bytes) -> bool:
    """A structured-mode CloudEvent (KServe's dataplane decodes those; binary mode has ce-specversion)."""
    return content_type.startswith(b"application/cloudevents+json")


async def _reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
