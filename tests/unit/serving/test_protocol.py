"""The infer routes at the HTTP protocol level (serving/protocol.py) and the per-loop-turn batcher.

In process: uvicorn's server state and config, the protocol bound to a small model over a transport that
records what is written, and a stand-in ASGI app where KServe's would be (it records what reaches it).
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from modelops.serving.batching import TurnBatcher
from modelops.serving.metrics import Recorder
from modelops.serving.outputs import Prediction
from modelops.serving.protocol import ModelopsHttpProtocol
from modelops.serving.schema import Batch, Feature, InputError, Limits, ModelSpec
from tests.fixtures.asgi_transport import Transport

pytestmark = pytest.mark.unit

SPEC = ModelSpec(name="m", task="regression", features=(Feature("a", "number"), Feature("b", "number")),
                 version="3", run_id="r1", family="test")


class Harness:
    def __init__(self, predict: Any = None, max_body: int = 4096) -> None:
        self.calls: list[int] = []  # rows per model call
        self.asgi: list[tuple[str, str, bytes]] = []

        def model_predict(batch: Batch) -> Prediction:
            self.calls.append(batch.rows)
            if predict is not None:
                return predict(batch)  # type: ignore[no-any-return]
            return Prediction(values=batch.columns["a"] + 10 * batch.columns["b"])

        self.model = SimpleNamespace(
            name="m", ready=True, spec=SPEC, limits=Limits(max_rows=100),
            headers={"x-model-name": "m", "x-model-version": "3", "x-model-run-id": "r1",
                     "x-modelops-backend": "onnxruntime"},
            recorder=Recorder("m-protocol-test", "3"),
            turn=TurnBatcher(model_predict, ThreadPoolExecutor(1), max_rows=64, inline_rows=64, inline=True))

        async def app(scope: Any, receive: Any, send: Any) -> None:
            body = b""
            while True:
                msg = await receive()
                body += msg.get("body", b"")
                if not msg.get("more_body"):
                    break
            self.asgi.append((scope["method"], scope["path"], body))
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain"), (b"content-length", b"8")]})
            await send({"type": "http.response.body", "body": b"from-app"})

        self.config = Config(app=app, log_config=None, lifespan="off")
        self.config.load()
        self.state = ServerState()
        self.state.default_headers = [(b"date", b"Mon, 30 Nov 2026 06:00:00 GMT"), (b"server", b"uvicorn")]
        self.cls = ModelopsHttpProtocol.bind(self.model, max_body)

    def connect(self) -> tuple[ModelopsHttpProtocol, Transport]:
        proto = self.cls(config=self.config, server_state=self.state, app_state={})
        transport = Transport()
        proto.connection_made(transport)  # type: ignore[arg-type]
        return proto, transport


def v2(rows: list[list[float]], extra: dict[str, Any] | None = None) -> bytes:
    flat = [v for r in rows for v in r]
    return json.dumps({"id": "q1", "inputs": [{"name": "a", "datatype": "FP64", "shape": [len(rows)],
                                               "data": flat[0::2]},
                                              {"name": "b", "datatype": "FP64", "shape": [len(rows)],
                                               "data": flat[1::2]}], **(extra or {})}).encode()


def post(path: str, body: bytes, headers: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{headers}"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        if lines[0].split()[1].startswith("1"):  # an interim 100 Continue: no body
            raw = rest
            continue
        n = int(headers["content-length"])
        out.append((int(lines[0].split()[1]), headers, rest[:n]))
        raw = rest[n:]
    return out


async def turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_v2_and_v1_are_answered_by_the_protocol_in_one_write_with_the_model_headers() -> None:
    async def go() -> None:
        h = Harness()
        proto, t = h.connect()
        proto.data_received(post("/v2/models/m/infer", v2([[1.0, 2.0]])))
        await turn()
        assert len(t.writes) == 1 and not h.asgi
        [(status, headers, body)] = responses(t.writes[0])
        assert status == 200
        assert headers["content-type"] == "application/json" and headers["x-model-version"] == "3"
        assert headers["x-modelops-backend"] == "onnxruntime" and headers["server"] == "uvicorn"
        assert json.loads(body) == {"model_name": "m", "model_version": "3", "id": "q1", "outputs": [
            {"name": "predict", "datatype": "FP64", "shape": [1], "data": [21.0]}]}
        proto.data_received(post("/v1/models/m:predict", json.dumps({"instances": [[1, 2], [3, 4]]}).encode()))
        await turn()
        assert json.loads(responses(t.writes[1])[0][2]) == {"predictions": [21.0, 43.0]}
        assert not t.closed

    run(go())


def test_requests_of_one_loop_turn_are_one_model_call() -> None:
    async def go() -> None:
        h = Harness()
        conns = [h.connect() for _ in range(5)]
        for i, (proto, _) in enumerate(conns):
            proto.data_received(post("/v2/models/m/infer", v2([[float(i), 0.0]])))
        await turn()
        assert h.calls == [5]
        for i, (_, t) in enumerate(conns):
            [(status, _, body)] = responses(b"".join(t.writes))
            assert status == 200 and json.loads(body)["outputs"][0]["data"] == [float(i)]

    run(go())


def test_a_bad_request_gets_its_own_422_naming_the_field_and_the_others_their_answers() -> None:
    def strict(batch: Batch) -> Prediction:
        if (batch.columns["a"] < 0).any():
            raise InputError("the model rejected the input: a < 0", field="a")
        return Prediction(values=batch.columns["a"].copy())

    async def go() -> None:
        h = Harness(predict=strict)
        (p1, t1), (p2, t2), (p3, t3) = h.connect(), h.connect(), h.connect()
        p1.data_received(post("/v2/models/m/infer", v2([[1.0, 0.0]])))
        p2.data_received(post("/v2/models/m/infer", v2([[-1.0, 0.0]])))
        p3.data_received(post("/v2/models/m/infer", b'{"inputs":[{"name":"a","datatype":"FP64","shape":[1],'
                                                     b'"data":["x"]},{"name":"b","datatype":"FP64","shape":[1],'
                                                     b'"data":[0]}]}'))
        await turn()
        assert responses(t1.writes[0])[0][0] == 200
        status, _, body = responses(t2.writes[0])[0]
        assert status == 422 and json.loads(body)["field"] == "a"
        status, _, body = responses(t3.writes[0])[0]
        assert status == 422 and json.loads(body).get("field") == "a", body
        assert h.calls == [2, 1, 1]  # merged call failed, then one by one; the invalid one never reached it

    run(go())


def test_bad_json_is_400_and_unknown_output_422() -> None:
    async def go() -> None:
        h = Harness()
        proto, t = h.connect()
        proto.data_received(post("/v2/models/m/infer", b"{nope"))
        await turn()
        proto.data_received(post("/v2/models/m/infer", v2([[1.0, 2.0]], {"outputs": [{"name": "zz"}]})))
        await turn()
        (s1, _, b1), (s2, _, b2) = responses(b"".join(t.writes))
        assert s1 == 400 and "not valid JSON" in json.loads(b1)["error"]
        assert s2 == 422 and json.loads(b2)["field"] == "zz"

    run(go())


@pytest.mark.parametrize("request_bytes", [
    b"GET /v2/models/m HTTP/1.1\r\nhost: x\r\n\r\n",
    post("/v2/models/other/infer", b"{}"),
    post("/v2/models/m/infer?debug=1", b"{}"),
    post("/v2/models/m/infer", b"{}", "ce-specversion: 1.0\r\n"),
    post("/v2/models/m/infer", b"{}", "expect: 100-continue\r\n"),
    b"POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    post("/v2/models/m/infer", b"{" + b" " * 5000 + b"}"),  # over max_body: the ASGI layer answers 413
], ids=["get", "other-model", "query", "cloudevent", "expect", "chunked", "too-large"])
def test_everything_else_goes_to_the_app(request_bytes: bytes) -> None:
    async def go() -> None:
        h = Harness()
        proto, t = h.connect()
        proto.data_received(request_bytes)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(h.asgi) == 1 and not h.calls
        assert responses(b"".join(t.writes))[0][2] == b"from-app"

    run(go())


def test_pipelined_requests_are_answered_in_order() -> None:
    async def go() -> None:
        h = Harness()
        proto, t = h.connect()
        proto.data_received(post("/v2/models/m/infer", v2([[1.0, 0.0]])) + b"GET /v2/health/ready HTTP/1.1\r\n"
                            b"host: x\r\n\r\n" + post("/v2/models/m/infer", v2([[2.0, 0.0]])))
        for _ in range(30):
            await asyncio.sleep(0)
        got = responses(b"".join(t.writes))
        assert [g[0] for g in got] == [200, 200, 200]
        assert json.loads(got[0][2])["outputs"][0]["data"] == [1.0]
        # behind a request in flight on the same connection, uvicorn queues the rest and hands them to the app
        # in order (KServe's app with the ASGI fast layer answers an infer there)
        assert got[1][2] == b"from-app" and got[2][2] == b"from-app"
        assert [(m, p) for m, p, _ in h.asgi] == [("GET", "/v2/health/ready"), ("POST", "/v2/models/m/infer")]
        assert h.calls == [1]

    run(go())


def test_connection_close_and_http_1_0_close_after_the_response() -> None:
    async def go() -> None:
        h = Harness()
        proto, t = h.connect()
        proto.data_received(post("/v2/models/m/infer", v2([[1.0, 0.0]]), "connection: close\r\n"))
        await turn()
        assert t.closed and responses(t.writes[0])[0][1]["connection"] == "close"
        proto, t = h.connect()
        body = v2([[1.0, 0.0]])
        proto.data_received(b"POST /v2/models/m/infer HTTP/1.0\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await turn()
        assert t.closed and responses(t.writes[0])[0][0] == 200

    run(go())


def test_a_client_gone_before_the_answer_gets_no_write() -> None:
    async def go() -> None:
        h = Harness()
        proto, t = h.connect()
        proto.data_received(post("/v2/models/m/infer", v2([[1.0, 0.0]])))
        proto.connection_lost(None)
        await turn()
        assert h.calls == [1] and t.writes == []

    run(go())


def test_not_ready_is_503() -> None:
    async def go() -> None:
        h = Harness()
        h.model.ready = False
        proto, t = h.connect()
        proto.data_received(post("/v2/models/m/infer", v2([[1.0, 0.0]])))
        await turn()
        assert responses(t.writes[0])[0][0] == 503 and not h.calls

    run(go())


def test_turn_batcher_splits_above_max_rows_and_offloads_large_batches() -> None:
    async def go() -> None:
        seen: list[int] = []

        def predict(batch: Batch) -> Prediction:
            seen.append(batch.rows)
            return Prediction(values=batch.columns["a"].copy())

        tb = TurnBatcher(predict, ThreadPoolExecutor(1), max_rows=4, inline_rows=2, inline=True)

        def batch(n: int, start: float) -> Batch:
            a = np.arange(start, start + n, dtype=np.float64)
            return Batch({"a": a}, n)

        got = await asyncio.gather(*(tb.submit(batch(2, 10.0 * i)) for i in range(3)))
        assert seen == [4, 2]  # 4 rows reached max_rows: flushed at once (in the executor, > inline_rows)
        assert [list(p.values) for p in got] == [[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]]  # type: ignore[arg-type]

    run(go())
