"""The infer routes answered at the HTTP protocol level equal what KServe's app (with our ASGI layer) answers.

A query string sends the same request through uvicorn's ASGI cycle and KServe's app instead (serving/protocol.py
lists what takes that way), so each pair below is the same request served both ways by one real server.
"""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

ROW = {"f0": 0.5, "f1": -1.0, "f2": 2.0, "f3": 0.1, "f4": 0.0, "f5": 1.5, "f6": -0.3, "f7": 0.9, "f8": 3.0,
       "f9": -2.0}


def v2_body(row: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"id": "r-1", "inputs": [{"name": k, "datatype": "FP64", "shape": [1], "data": [v]}
                                               for k, v in row.items()], **extra}).encode()


def both_ways(url: str, body: bytes) -> tuple[httpx.Response, httpx.Response]:
    with httpx.Client(timeout=30) as client:
        fast = client.post(url, content=body, headers={"content-type": "application/json"})
        via_app = client.post(url + "?via=app", content=body, headers={"content-type": "application/json"})
    return fast, via_app


def comparable(r: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {k: v for k, v in r.headers.items() if k not in ("date",)}
    return r.status_code, headers, r.json()


@pytest.mark.parametrize("case", ["ok", "unknown_output", "wrong_type", "bad_json", "missing_input"])
def test_v2_protocol_level_answer_equals_the_app_answer(servers: dict[str, Any], case: str) -> None:
    s = servers["booster"]
    body = {
        "ok": v2_body(ROW),
        "unknown_output": v2_body(ROW, outputs=[{"name": "nope"}]),
        "wrong_type": v2_body({**ROW, "f3": "abc"}),
        "bad_json": b'{"inputs": [',
        "missing_input": v2_body({k: v for k, v in ROW.items() if k != "f9"}),
    }[case]
    fast, via_app = both_ways(s.url(f"/v2/models/{s.name}/infer"), body)
    assert comparable(fast) == comparable(via_app)
    assert fast.status_code == (200 if case == "ok" else 400 if case == "bad_json" else 422), fast.text
    if case == "ok":
        assert fast.headers["x-model-name"] == s.name and fast.headers["content-type"] == "application/json"


def test_v1_protocol_level_answer_equals_the_app_answer(servers: dict[str, Any]) -> None:
    s = servers["booster"]
    fast, via_app = both_ways(s.url(f"/v1/models/{s.name}:predict"), json.dumps({"instances": [ROW, ROW]}).encode())
    assert fast.status_code == 200 and comparable(fast) == comparable(via_app)


def test_pipelined_requests_on_one_connection_are_answered_in_order(servers: dict[str, Any]) -> None:
    s = servers["booster"]
    host, port = s.http.removeprefix("http://").split(":")
    ok, bad = v2_body(ROW), v2_body({**ROW, "f3": "abc"})

    def post(body: bytes) -> bytes:
        return (f"POST /v2/models/{s.name}/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode() + body

    wire = post(ok) + f"GET /v2/models/{s.name}/ready HTTP/1.1\r\nhost: x\r\n\r\n".encode() + post(bad) + post(ok)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(wire)
        got = b""
        while got.count(b"HTTP/1.1 ") < 4 or not got.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
    statuses = [int(part.split(b" ", 1)[0]) for part in got.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [200, 200, 422, 200], got[:2000]


def test_concurrent_requests_all_answered_and_counted(servers: dict[str, Any]) -> None:
    s = servers["booster"]
    url = s.url(f"/v2/models/{s.name}/infer")

    def metric(text: str, name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and f'model="{s.name}"' in line)

    before = httpx.get(s.url("/metrics")).text
    rows = [{**ROW, "f0": float(i)} for i in range(64)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda r: httpx.post(url, content=v2_body(r), timeout=30), rows))
    assert [a.status_code for a in answers] == [200] * 64
    with httpx.Client() as client:  # each answer is its own row's: equal to the row alone
        for r, a in list(zip(rows, answers, strict=True))[::9]:
            alone = client.post(url, content=v2_body(r))
            assert alone.json()["outputs"] == a.json()["outputs"]
    after = httpx.get(s.url("/metrics")).text
    name = "modelops_serving_requests_total{"
    assert metric(after, name) - metric(before, name) >= 64 + 8
    calls = metric(after, "modelops_serving_batch_rows_count") - metric(before, "modelops_serving_batch_rows_count")
    rows_sum = metric(after, "modelops_serving_batch_rows_sum") - metric(before, "modelops_serving_batch_rows_sum")
    assert rows_sum == 64 + 8 and 1 <= calls <= 64 + 8
