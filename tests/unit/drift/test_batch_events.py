"""Issue 19: the events of one POST handled column-wise (Exporter.handle_events) end exactly where handling them
one by one (Exporter.handle_event) ends: windows, join table, counters and the label feedback store."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelops.drift import events as ev
from modelops.drift.reference import ReferenceSpec, ReferenceStore
from modelops.drift.service import Exporter, ExporterConfig

pytestmark = pytest.mark.unit

REQ, RESP = ev.REQUEST_TYPE, ev.RESPONSE_TYPE


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    from modelops_pipelines.profile import build_reference_profile

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(0, 1, 400), "b": rng.lognormal(0, 1, 400),
                          "c": rng.choice(["x", "y", "z"], 400)})
    return build_reference_profile(frame, task="classification", categorical=["c"],
                                   predictions=rng.integers(0, 2, 400))


def exporter(profile: dict[str, Any], **kw: Any) -> Exporter:
    return Exporter(ReferenceStore([ReferenceSpec.parse("m=mem"), ReferenceSpec.parse("n=mem")],
                                   loader=lambda s, u: profile), ExporterConfig(**kw))


def event(kind: str, eid: str, payload: Any, model: str = "m", version: str | None = None,
          namespace: str = "team") -> ev.LoggedEvent:
    return ev.LoggedEvent(eid, "request" if kind == REQ else "response", model, version, payload,
                          namespace=namespace, source="test")


def row(rng: random.Random) -> list[Any]:
    return [round(rng.gauss(0, 1), 3), round(rng.lognormvariate(0, 1), 3), rng.choice(["x", "y", "z", None, 1])]


def mixed_batch(seed: int) -> tuple[list[ev.LoggedEvent], list[ev.LoggedEvent]]:
    """(events sent before, the batch): every way a batch's events can relate to each other and the join."""
    rng = random.Random(seed)
    before = [event(REQ, "early", {"instances": [row(rng)]}),  # its response comes in the batch
              event(RESP, "early-resp", {"predictions": [[0.3, 0.7]]}),  # its request comes in the batch
              event(REQ, "clash", {"instances": [row(rng)]})]  # the batch carries this id's pair again
    batch = [event(RESP, "early", {"predictions": [[0.9, 0.1]]}),
             event(REQ, "early-resp", {"instances": [row(rng)]}),
             event(REQ, "clash", {"instances": [row(rng)]}), event(RESP, "clash", {"predictions": [1]})]
    for i in range(12):  # single-row pairs, probabilities or classes
        pred = [[0.2, 0.8]] if i % 2 else [i % 2]
        batch += [event(REQ, f"p{i}", {"instances": [row(rng)]}), event(RESP, f"p{i}", {"predictions": pred})]
    for i in range(3):  # multi-row pairs, and one whose response has fewer rows
        rows = [row(rng) for _ in range(3)]
        preds = [[0.6, 0.4], [0.1, 0.9], [0.5, 0.5]][: 3 if i < 2 else 2]
        batch += [event(REQ, f"multi{i}", {"instances": rows}), event(RESP, f"multi{i}", {"predictions": preds})]
    v2 = {"inputs": [{"name": "a", "shape": [2], "datatype": "FP64", "data": [0.5, 1.5]},
                     {"name": "b", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
                     {"name": "c", "shape": [2], "datatype": "BYTES", "data": ["x", "z"]}]}
    batch += [event(REQ, "v2", v2), event(RESP, "v2", {"model_name": "m", "model_version": "7", "outputs": [
        {"name": "output-0", "shape": [2], "datatype": "INT64", "data": [0, 1]}]}, version="7")]
    batch += [event(REQ, "dict-rows", {"instances": [{"a": 1.0, "c": "y"}]}),
              event(RESP, "dict-rows", {"predictions": [0]})]
    batch += [event(REQ, "lonely", {"instances": [row(rng)]}),  # waits in the join table
              event(RESP, "orphan", {"predictions": [1]}),
              event(REQ, "dup", {"instances": [row(rng)]}), event(REQ, "dup", {"instances": [row(rng)]}),
              event(RESP, "dup", {"predictions": [0]}),
              event(REQ, "other-ns", {"instances": [row(rng)]}, namespace="else"),
              event(RESP, "other-ns", {"predictions": [1]}, namespace="team"),  # ids of two namespaces
              event(REQ, "n1", {"instances": [row(rng)]}, model="n"), event(RESP, "n1", {"predictions": [1]},
                                                                             model="n", version="2"),
              event(RESP, "resp-first", {"predictions": [0]}), event(REQ, "resp-first", {"instances": [row(rng)]})]
    rng.shuffle(batch)
    return before, batch


def state(ex: Exporter) -> dict[str, Any]:
    windows = {}
    for t in ex.tracked():
        w = t.window
        order = w._order(1e9)
        rows = [(tuple(w.numeric[i].tolist()), tuple(w.categorical[i].tolist()),
                 w.preds[i] if w.has_pred[i] else "none") for i in order]
        windows[(t.namespace, t.model, t.version)] = sorted(map(repr, rows))
    join = {k: (p.model, p.namespace, p.version, p.request is not None and p.request.rows,
                p.response is not None and p.response.tolist()) for k, p in ex.join.entries.items()}
    store = ex.feedback.store
    pending = store.state == 1
    return {"windows": windows, "join": join, "received": dict(ex.events_received),
            "rejected": dict(ex.events_rejected), "unmatched": dict(ex.unmatched),
            "truncated": dict(ex.truncated), "rows": dict(ex.rows_ingested),
            "feedback": sorted(zip(store.key[pending].tolist(), store.pred[pending].tolist(),
                                   np.nan_to_num(store.score[pending], nan=-1).tolist(), strict=True)),
            "served": {k: sorted(map(tuple, np.nan_to_num(v.served.live(1e9), nan=-1).tolist()))
                       for k, v in ex.feedback.versions.items()}}


@pytest.mark.parametrize("seed", range(4))
def test_a_batch_handled_column_wise_ends_where_one_by_one_ends(profile, seed):
    before, batch = mixed_batch(seed)
    one, many = exporter(profile), exporter(profile)
    one.feedback.clock = many.feedback.clock = lambda: 1000.0  # type: ignore[method-assign]
    for ex in (one, many):
        for e in before:
            ex.handle_event(e, now=10.0)
    for e in batch:
        one.handle_event(e, now=11.0)
    many.handle_events(batch, now=11.0)
    a, b = state(one), state(many)
    assert a["windows"] and a["join"] and a["feedback"]  # the batch exercised windows, joins and labels
    assert a == b


def test_the_batch_pairs_what_it_can_without_the_join_table_and_windows_per_version_once(profile):
    _, batch = mixed_batch(0)
    ex = exporter(profile)
    ex.handle_events(batch, now=11.0)
    t = ex.find("m", ev.UNKNOWN_VERSION, "team")
    assert t is not None and t.window.generation <= 3  # the pairs in one append (plus the mismatched ones)
    assert "team/p3" not in ex.join.entries and "team/lonely" in ex.join.entries


def test_join_timeout_zero_keeps_its_meaning_in_a_batch(profile):
    _, batch = mixed_batch(1)
    one, many = exporter(profile, join_timeout=0), exporter(profile, join_timeout=0)
    one.feedback.clock = many.feedback.clock = lambda: 1000.0  # type: ignore[method-assign]
    for e in batch:
        one.handle_event(e, now=11.0)
    many.handle_events(batch, now=11.0)
    assert state(one) == state(many)


def test_a_bad_event_in_a_batch_is_refused_as_one_by_one_refuses_it(profile):
    _, batch = mixed_batch(2)
    bad = event(REQ, "bad", {"instances": [[1.0, 2.0]]})  # two values for three features
    batch = [*batch[:10], bad, *batch[10:]]
    one, many = exporter(profile), exporter(profile)
    one.feedback.clock = many.feedback.clock = lambda: 1000.0  # type: ignore[method-assign]
    errors = []
    for run in (lambda: [one.handle_event(e, now=11.0) for e in batch],
                lambda: many.handle_events(batch, now=11.0)):
        with pytest.raises(ev.EventError) as err:
            run()
        errors.append((err.value.reason, err.value.message))
    assert errors[0] == errors[1] and errors[0][0] == "invalid_payload"
    assert state(one) == state(many)


def go_record(e: ev.LoggedEvent) -> dict[str, Any]:
    return {"url": {"Scheme": "http", "Host": "exporter", "Path": "/"},
            "bytes": base64.b64encode(json.dumps(e.payload).encode()).decode(), "contentType": "application/json",
            "reqType": REQ if e.kind == "request" else RESP, "id": e.id, "inferenceService": e.model,
            "namespace": e.namespace, "component": "predictor", "endpoint": "default",
            "sourceUri": {"Scheme": "http", "Host": "src", "Path": "/"}, "metadata": {}}


def test_a_kserve_logger_batch_over_http_counts_as_its_events_one_by_one(profile):
    _, batch = mixed_batch(3)
    body = json.dumps([go_record(e) for e in batch]).encode()
    one, many = exporter(profile), exporter(profile)
    one.feedback.clock = many.feedback.clock = lambda: 1000.0  # type: ignore[method-assign]
    assert many.handle_http({"content-type": "application/json"}, body) == {"accepted": len(batch)}
    for e in ev.parse_http({"content-type": "application/json"}, body):
        one.handle_event(e)
    a, b = state(one), state(many)
    assert a["windows"] == b["windows"] and a["received"] == b["received"] and a["feedback"] == b["feedback"]


def test_log_request_records_parse_as_the_cloudevent_rules_say():
    rec = go_record(event(REQ, "x", {"instances": [[1, 2, "x"]]}))
    parsed = ev.log_request_batch([rec, {**rec, "metadata": {"Model-Version": ["3"]}},
                                   {**rec, "annotations": {ev.VERSION_ANNOTATION: "4"}}])
    assert [p.version for p in parsed] == [None, "3", "4"]
    assert parsed[0].source == "http://src/" and parsed[0].namespace == "team" and parsed[0].kind == "request"
    for broken, reason in (({"reqType": "other"}, "unsupported_event_type"), ({"id": ""}, "not_a_cloudevent"),
                           ({"inferenceService": None}, "missing_model"), ({"bytes": "YWI"}, "invalid_payload"),
                           ({"bytes": "YW Jj"}, "invalid_payload"),
                           ({"contentType": "image/png"}, "unsupported_content_type")):
        with pytest.raises(ev.EventError) as err:
            ev.log_request_batch([{**rec, **broken}])
        assert err.value.reason == reason, broken


def test_event_bodies_are_decoded_on_the_loop_up_to_inline_bytes_and_beyond_in_the_one_decode_thread(
        profile, monkeypatch):
    """Issue 19: a pool of decoding threads only took turns on the GIL with the event loop (the batched-event
    p99); a body up to INLINE_BYTES is decoded on the loop, a larger one in the single decode thread."""
    from fastapi.testclient import TestClient

    from modelops.drift import app as app_module
    from modelops.drift.auth import Auth
    from modelops.formats.drift_url import namespace_token

    ex = exporter(profile)
    threads: list[tuple[str, bool]] = []  # (thread name, on the event loop)
    handle = ex.handle_http

    def recording(*args: Any) -> Any:
        import asyncio
        import threading

        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        threads.append((threading.current_thread().name, on_loop))
        return handle(*args)
    monkeypatch.setattr(ex, "handle_http", recording)
    client = TestClient(app_module.create_app(ex, auth=Auth("s")))
    headers = {"content-type": "application/json", "ce-specversion": "1.0", "ce-source": "x",
               "ce-type": REQ, "ce-inferenceservicename": "m"}
    rng = random.Random(0)
    body = json.dumps({"instances": [row(rng) for _ in range(5000)]}).encode()
    assert 64 << 10 < len(body) <= app_module.INLINE_BYTES
    path = f"/events/ns/team/{namespace_token('s', 'team')}"
    assert client.post(path, content=body, headers={**headers, "ce-id": "1"}).json() == {"accepted": 1}
    monkeypatch.setattr(app_module, "INLINE_BYTES", 1000)
    for i in (2, 3):
        assert client.post(path, content=body, headers={**headers, "ce-id": str(i)}).json() == {"accepted": 1}
    assert threads[0][1] and threads[1:] == [("event-decode_0", False)] * 2
    assert ex.join.entries.keys() == {"team/1", "team/2", "team/3"}


def test_a_logged_predictions_time_is_its_inferences_time_in_a_batch_and_one_by_one(profile):
    """Issue 17: a label's delay runs from the inference (ce-time / LogRequest.occurrenceTime), per event."""
    import dataclasses

    from modelops.drift.feedback import id_keys

    rng = random.Random(3)
    times = {"p0": 9_000.0, "p1": 9_100.0, "m": 9_200.0, "none": None, "ahead": 20_000.0}
    batch = []
    for eid, t in times.items():
        rows = 3 if eid == "m" else 1
        batch += [event(REQ, eid, {"instances": [row(rng) for _ in range(rows)]}),
                  dataclasses.replace(event(RESP, eid, {"predictions": [[0.3, 0.7]] * rows}), time=t)]
    ids = ["p0", "p1", "m#0", "m#1", "m#2", "none", "ahead"]
    want = [9_000.0, 9_100.0, 9_200.0, 9_200.0, 9_200.0, 10_000.0, 10_000.0]  # unknown or ahead: now
    one, many = exporter(profile), exporter(profile)
    one.feedback.clock = many.feedback.clock = lambda: 10_000.0  # type: ignore[method-assign]
    many.handle_events(batch, now=5.0)
    for e in batch:
        one.handle_event(e, now=5.0)
    for ex in (one, many):
        slots, _ = ex.feedback.store.index.find(id_keys("team", ids))
        assert (slots >= 0).all() and ex.feedback.store.ts[slots].tolist() == want
    # over HTTP: the LogRequest's occurrenceTime (Go's RFC 3339 with nanoseconds) and a binary event's ce-time
    rec = {**go_record(batch[1]), "occurrenceTime": "1970-01-01T02:30:00.123456789Z"}
    assert [e.time for e in ev.log_request_batch([rec, {**rec, "occurrenceTime": "yesterday"}])] == [
        pytest.approx(9_000.123456), None]
