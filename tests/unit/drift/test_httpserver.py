"""The exporter's HTTP plumbing of issue 19: one write per response, cached namespace tokens."""

from __future__ import annotations

import asyncio

import pytest

from modelops.drift import auth as auth_mod
from modelops.drift.auth import Auth
from modelops.drift.httpserver import FLUSH_BYTES, CoalescingTransport
from modelops.formats.drift_url import namespace_token

pytestmark = pytest.mark.unit


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default


def test_writes_of_one_loop_turn_go_out_as_one():
    async def main() -> FakeTransport:
        raw = FakeTransport()
        t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        t.write(b"{}")
        assert raw.writes == []  # nothing sent within the turn
        assert t.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await asyncio.sleep(0)
        assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        t.write(b"next")
        await asyncio.sleep(0)
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)  # everything else is the real transport's
        return raw

    raw = asyncio.run(main())
    assert raw.writes[-1] == b"next"


def test_close_flushes_first_and_large_writes_go_at_once():
    async def main() -> None:
        raw = FakeTransport()
        t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"head")
        t.write(b"x" * FLUSH_BYTES)
        assert raw.writes == [b"head" + b"x" * FLUSH_BYTES]
        t.write(b"tail")
        t.close()
        assert raw.writes[-1] == b"tail" and raw.closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing left and does not write after close
        assert len(raw.writes) == 2

    asyncio.run(main())


def test_namespace_tokens_are_cached_only_once_verified(monkeypatch):
    auth = Auth("secret")
    good = namespace_token("secret", "team-a")
    assert not auth.namespace_ok("team-a", "0" * 64)
    assert not auth.namespace_ok("forged", "0" * 64)
    assert auth._verified == {}  # a wrong token puts nothing in the cache
    assert auth.namespace_ok("team-a", good)
    assert auth.namespace_ok("team-a", good)  # from the cache
    assert not auth.namespace_ok("team-a", good[:-1] + ("0" if good[-1] != "0" else "1"))
    assert not auth.namespace_ok("team-b", good)  # one namespace's token is not another's
    monkeypatch.setattr(auth_mod, "CACHED_NAMESPACES", 2)
    for ns in ("n1", "n2", "n3"):
        assert auth.namespace_ok(ns, namespace_token("secret", ns))
        assert len(auth._verified) <= 2
    assert Auth("secret") == Auth("secret")  # the cache is not part of the value


def test_events_ingest_and_feedback_share_one_auth_and_body_limit():
    """Issue 19's code debt: /feedback goes through the same front as the events (EventIngress)."""
    import numpy as np
    import pandas as pd
    from fastapi.testclient import TestClient

    from modelops.drift.app import create_app
    from modelops.drift.reference import ReferenceSpec, ReferenceStore
    from modelops.drift.service import Exporter, ExporterConfig
    from modelops_pipelines.profile import build_reference_profile

    profile = build_reference_profile(pd.DataFrame({"x": np.random.default_rng(0).normal(0, 1, 500)}),
                                      task="regression")
    ex = Exporter(ReferenceStore([ReferenceSpec.parse("churn=mem")], loader=lambda s, u: profile),
                  ExporterConfig(max_body_bytes=100))
    client = TestClient(create_app(ex, auth=Auth("secret")))
    bearer = {"Authorization": "Bearer secret", "Content-Type": "application/json"}
    big = b'{"id": "x", "label": 1, "pad": "' + b"x" * 200 + b'"}'
    token = namespace_token("secret", "team")
    for path, forged in (("/events", "/events"), ("/ingest/churn", "/ingest/churn"), ("/feedback", "/feedback"),
                         (f"/events/ns/team/{token}", "/events/ns/team/" + "0" * 64),
                         (f"/feedback/ns/team/{token}", "/feedback/ns/team/" + "0" * 64)):
        r = client.post(path, content=big, headers=bearer)
        assert r.status_code == 413 and r.json()["reason"] == "body_too_large", (path, r.text)
        r = client.post(forged, content=b"{}", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (forged, r.text)
    assert ex.events_rejected["body_too_large"] == 5 and ex.events_rejected["unauthorized"] == 5
    r = client.post("/feedback/ns/team/wrong", json={"id": "x", "label": 1})
    assert r.status_code == 401 and "feedback URL of the namespace" in r.json()["message"]
    assert client.get("/feedback").status_code == 405  # as FastAPI answered a GET on its POST route
    assert client.post("/feedback", json=[], headers=bearer).json() == {
        "joined": 0, "unmatched": 0, "expired": 0, "duplicate": 0, "invalid": 0, "early": 0}
