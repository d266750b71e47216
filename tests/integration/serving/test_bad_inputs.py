"""Bad payloads get 4xx naming the field, never 5xx; a hypothesis fuzz of 2000+ payloads finds no 5xx."""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.serving.conftest import MAX_BODY, MAX_ROWS

pytestmark = pytest.mark.integration

GOOD = {"age": 30.5, "visits": 3, "plan": "pro", "region": "east"}


def v1(rows: Any) -> bytes:
    return json.dumps({"instances": rows}).encode()


def v2(*tensors: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(tensors), **extra}).encode()


def t(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


GOOD_V2 = [t("age", "FP64", [1], [30.5]), t("visits", "INT64", [1], [3]), t("plan", "BYTES", [1], ["pro"]),
           t("region", "BYTES", [1], ["east"])]

# (id, protocol, body, expected status, field named in the answer or None)
CASES = [
    ("not-json", "v1", b"{", 400, None),
    ("empty-body", "v1", b"", 400, None),
    ("json-array", "v1", b"[]", 400, None),
    ("no-instances", "v1", b'{"rows": []}', 400, "instances"),
    ("instances-not-list", "v1", b'{"instances": "x"}', 400, "instances"),
    ("zero-rows", "v1", v1([]), 422, "instances"),
    ("unknown-feature", "v1", v1([{**GOOD, "agee": 1}]), 422, "agee"),
    ("missing-feature", "v1", v1([{k: v for k, v in GOOD.items() if k != "plan"}]), 422, "plan"),
    ("string-for-number", "v1", v1([{**GOOD, "age": "thirty"}]), 422, "age"),
    ("numeric-string-for-number", "v1", v1([{**GOOD, "visits": "3"}]), 422, "visits"),
    ("bool-for-number", "v1", v1([{**GOOD, "age": True}]), 422, "age"),
    ("number-for-string", "v1", v1([{**GOOD, "plan": 3}]), 422, "plan"),
    ("list-for-value", "v1", v1([{**GOOD, "age": [1, 2]}]), 422, "age"),
    ("float-for-integer", "v1", v1([{**GOOD, "visits": 2.5}]), 422, "visits"),
    ("nan-literal", "v1", b'{"instances": [{"age": NaN, "visits": 3, "plan": "pro", "region": "east"}]}', 400, None),
    ("infinity", "v1", b'{"instances": [{"age": 1e400, "visits": 3, "plan": "pro", "region": "east"}]}', 400, None),
    ("nul-in-string", "v1", v1([{**GOOD, "plan": "pro\u0000"}]), 422, "plan"),
    ("long-string", "v1", v1([{**GOOD, "plan": "x" * 5000}]), 422, "plan"),
    ("row-wrong-length", "v1", v1([[30.5, 3, "pro"]]), 422, "instances"),
    ("mixed-rows", "v1", v1([GOOD, [30.5, 3, "pro", "east"]]), 400, "instances"),
    ("scalar-row", "v1", v1([5]), 400, "instances"),
    ("too-many-rows", "v1", v1([GOOD] * (MAX_ROWS + 1)), 422, "instances"),
    ("deep-nesting", "v1", b"[" * 5000 + b"]" * 5000, 400, None),
    ("v2-no-inputs", "v2", b'{"inputs": []}', 400, "inputs"),
    ("v2-shape-mismatch", "v2", v2(t("age", "FP64", [2], [1.0]), *GOOD_V2[1:]), 422, "age"),
    ("v2-bytes-for-number", "v2", v2(t("age", "BYTES", [1], ["x"]), *GOOD_V2[1:]), 422, "age"),
    ("v2-number-for-bytes", "v2", v2(*GOOD_V2[:2], t("plan", "INT64", [1], [1]), GOOD_V2[3]), 422, "plan"),
    ("v2-unknown-datatype", "v2", v2(t("age", "FP128", [1], [1.0]), *GOOD_V2[1:]), 422, "age"),
    ("v2-unknown-input", "v2", v2(*GOOD_V2, t("zip", "FP64", [1], [1.0])), 422, "zip"),
    ("v2-missing-input", "v2", v2(*GOOD_V2[:3]), 422, "region"),
    ("v2-duplicate-input", "v2", v2(*GOOD_V2, GOOD_V2[0]), 422, "age"),
    ("v2-row-count-differs", "v2", v2(t("age", "FP64", [2], [1.0, 2.0]), *GOOD_V2[1:]), 422, "visits"),
    ("v2-bad-shape", "v2", v2(t("age", "FP64", [1, 1, 1], [1.0]), *GOOD_V2[1:]), 422, "inputs[age]"),
    ("v2-negative-shape", "v2", v2(t("age", "FP64", [-1], [1.0]), *GOOD_V2[1:]), 422, "inputs[age]"),
    ("v2-matrix-for-string-model", "v2", v2(t("x", "FP64", [1, 4], [1.0, 2.0, 3.0, 4.0])), 422, "x"),
    ("v2-unknown-output", "v2", v2(*GOOD_V2, outputs=[{"name": "logits"}]), 422, "logits"),
    ("v2-data-not-list", "v2", v2(t("age", "FP64", [1], 30.5), *GOOD_V2[1:]), 400, "inputs[age]"),
    ("v2-no-data", "v2", v2({"name": "age", "datatype": "FP64", "shape": [1]}, *GOOD_V2[1:]), 400, "age"),
    ("v2-nan-string", "v2", v2(t("age", "FP64", [1], ["NaN"]), *GOOD_V2[1:]), 422, "age"),
    ("v2-id-not-string", "v2", v2(*GOOD_V2, id=5), 400, "id"),
]


@pytest.mark.parametrize(("case", "protocol", "body", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_payload_is_4xx_naming_the_field(servers: dict[str, Any], case: str, protocol: str, body: bytes,
                                             status: int, field: str | None) -> None:
    s = servers["xgb_binary"]
    path = "/v1/models/churn:predict" if protocol == "v1" else "/v2/models/churn/infer"
    r = httpx.post(s.url(path), content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == status, r.text
    if field is not None:
        assert r.json().get("field") == field, r.text
        assert field.split("[")[-1].rstrip("]") in r.json()["error"]


def test_strict_model_rejects_null_and_unknown_category(servers: dict[str, Any]) -> None:
    """A model without imputers / with handle_unknown='error' gets 422s learnt at load time, not 500s."""
    s = servers["linear_strict"]
    url = s.url("/v1/models/strict:predict")
    r = httpx.post(url, json={"instances": [{**GOOD, "age": None}]})
    assert r.status_code == 422 and r.json()["field"] == "age", r.text
    r = httpx.post(url, json={"instances": [{**GOOD, "plan": "platinum"}]})
    assert r.status_code == 422 and r.json()["field"] == "plan" and "platinum" in r.json()["error"], r.text
    assert httpx.post(url, json={"instances": [GOOD]}).status_code == 200


def test_fallback_model_rejection_is_422(servers: dict[str, Any]) -> None:
    """log1p(-1) is -inf inside the original model, which then raises: the client hears 422, not 500."""
    s = servers["rf_regression_fallback"]
    r = httpx.post(s.url("/v1/models/spend:predict"), json={"instances": [{**GOOD, "visits": -1}]})
    assert r.status_code == 422, r.text


def test_huge_bodies_are_413_before_parsing(servers: dict[str, Any]) -> None:
    s = servers["xgb_binary"]
    big = b'{"instances": [' + b" " * (MAX_BODY + 10) + b"]}"
    for path in ("/v1/models/churn:predict", "/v2/models/churn/infer", "/v2/repository/models/churn/load"):
        r = httpx.post(s.url(path), content=big, timeout=30)
        assert r.status_code == 413, (path, r.text)
    # chunked, no Content-Length: the limit holds while reading
    u = urlparse(s.http)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("POST", "/v1/models/churn:predict", body=iter([b"x" * 65536] * 40),
                     headers={"content-type": "application/json"}, encode_chunked=True)
        assert conn.getresponse().status == 413
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server may close before we finish sending: also not a 5xx
    finally:
        conn.close()


def test_grpc_bad_requests_are_client_errors(servers: dict[str, Any]) -> None:
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    s = servers["xgb_binary"]
    T = pb.ModelInferRequest.InferInputTensor
    good = [T(name="age", datatype="FP64", shape=[1], contents=pb.InferTensorContents(fp64_contents=[30.5])),
            T(name="visits", datatype="INT64", shape=[1], contents=pb.InferTensorContents(int64_contents=[3])),
            T(name="plan", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"pro"])),
            T(name="region", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"east"]))]
    bad_requests = [
        pb.ModelInferRequest(model_name="churn", inputs=good[:3]),
        pb.ModelInferRequest(model_name="churn", inputs=[T(name="age", datatype="FP64", shape=[2],
                                                           contents=pb.InferTensorContents(fp64_contents=[1.0])),
                                                         *good[1:]]),
        pb.ModelInferRequest(model_name="churn", inputs=[T(name="age", datatype="FP64", shape=[1],
                                                           contents=pb.InferTensorContents(
                                                               fp64_contents=[float("inf")])), *good[1:]]),
        pb.ModelInferRequest(model_name="churn", inputs=[*good[:3], T(name="region", datatype="BYTES", shape=[1],
                             contents=pb.InferTensorContents(bytes_contents=[b"\xff\xfe"]))]),
        pb.ModelInferRequest(model_name="churn", inputs=good, raw_input_contents=[b"\x00" * 3]),
        pb.ModelInferRequest(model_name="churn", inputs=good, outputs=[
            pb.ModelInferRequest.InferRequestedOutputTensor(name="nope")]),
        pb.ModelInferRequest(model_name="churn", inputs=[T(name="age", datatype="FP64", shape=[1],
                                                           contents=pb.InferTensorContents(
                                                               fp64_contents=[1.0] * (MAX_BODY // 8 + 10))),
                                                         *good[1:]]),
    ]

    async def go() -> list[grpc.StatusCode]:
        codes = []
        async with grpc.aio.insecure_channel(s.grpc, options=[("grpc.max_send_message_length", 4 * MAX_BODY)]) as ch:
            stub = GRPCInferenceServiceStub(ch)
            ok = await stub.ModelInfer(pb.ModelInferRequest(model_name="churn", inputs=good))
            assert ok.model_version == "3"
            for req in bad_requests:
                try:
                    await stub.ModelInfer(req)
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
        return codes

    codes = asyncio.run(go())
    assert codes[:-1] == [grpc.StatusCode.INVALID_ARGUMENT] * (len(bad_requests) - 1)
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED  # the explicit message cap


# ---------------------------------------------------------------------------------------------- fuzz

NAMES = ["age", "visits", "plan", "region", "Age", "", "instances", "inputs", "x" * 300]
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                    st.sampled_from(["pro", "basic", "east", "NaN", "Infinity", "1e400", "\u0000"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                           max_leaves=20)
rows = st.one_of(
    st.fixed_dictionaries({k: st.one_of(scalars, json_values) for k in GOOD}),
    st.dictionaries(st.sampled_from(NAMES), scalars, max_size=6),
    st.lists(scalars, min_size=0, max_size=6),
    json_values,
)
v1_bodies = st.one_of(
    st.builds(lambda r: {"instances": r}, st.lists(rows, max_size=4)),
    st.builds(lambda r: {"inputs": r}, st.lists(rows, max_size=3)),
    st.dictionaries(st.sampled_from(["instances", "inputs", "parameters", "id", "x"]), json_values, max_size=3),
    json_values,
)
datatypes = st.sampled_from(["FP64", "FP32", "INT64", "INT32", "BYTES", "BOOL", "FP16", "UINT8", "STRING", ""])
tensors = st.fixed_dictionaries(
    {"name": st.sampled_from(NAMES), "datatype": datatypes,
     "shape": st.one_of(st.lists(st.integers(min_value=-2, max_value=5), max_size=3), json_values),
     "data": st.one_of(st.lists(scalars, max_size=6), st.lists(st.lists(scalars, max_size=3), max_size=3),
                       json_values)},
    optional={"parameters": st.one_of(st.fixed_dictionaries({"binary_data_size": st.integers(-5, 50)}),
                                      json_values)})
v2_bodies = st.one_of(
    st.builds(lambda ts, o: {"inputs": ts, **({"outputs": o} if o is not None else {})}, st.lists(tensors, max_size=5),
              st.one_of(st.none(), st.lists(st.fixed_dictionaries({"name": st.sampled_from(
                  ["predict", "predict_proba", "x"])}), max_size=3), json_values)),
    st.builds(lambda ts: {"inputs": GOOD_V2[: len(ts)] + ts}, st.lists(tensors, max_size=2)),
    json_values,
)


class _Client:
    """One keep-alive connection (the fuzz sends thousands of requests)."""

    def __init__(self, base: str) -> None:
        u = urlparse(base)
        self.host, self.port = u.hostname, u.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        for attempt in (0, 1):
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                r = self.conn.getresponse()
                r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close()
                return r.status
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def test_fuzz_2000_payloads_no_5xx(servers: dict[str, Any]) -> None:
    s = servers["xgb_binary"]
    client = _Client(s.http)
    seen: dict[int, int] = {}

    @settings(max_examples=1200, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=v1_bodies, raw=st.booleans())
    def fuzz_v1(body: Any, raw: bool) -> None:
        data = json.dumps(body).encode() if not raw else json.dumps(body).encode()[: max(1, len(json.dumps(body)) // 2)]
        status = client.post("/v1/models/churn:predict", data, {"content-type": "application/json"})
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, (status, data[:500])

    @settings(max_examples=1200, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=v2_bodies, binary_header=st.one_of(st.none(), st.integers(-3, 400).map(str), st.just("x")))
    def fuzz_v2(body: Any, binary_header: str | None) -> None:
        data = json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        if binary_header is not None:
            headers["inference-header-content-length"] = binary_header
            data += b"\x00\x01\x02\x03garbage"
        status = client.post("/v2/models/churn/infer", data, headers)
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, (status, data[:500])

    fuzz_v1()
    fuzz_v2()
    assert sum(seen.values()) >= 2000, seen
    assert not any(code >= 500 for code in seen), seen
