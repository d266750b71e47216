"""Issue 19: columnar decoding, KServe's batched logger output, backpressure, sharding."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from modelops.desired.drift_shards import exporter_url, moved
from modelops.drift.app import IngressLimits, create_app
from modelops.drift.auth import Auth
from modelops.drift.events import log_request_batch, parse_http, prediction_array, request_arrays
from modelops.drift.reference import ReferenceSpec, ReferenceStore
from modelops.drift.service import Exporter, ExporterConfig
from modelops.drift.stats import DriftConfig
from modelops.drift.window import VECTOR_MIN, Layout, categories, floats, to_category, to_float
from modelops.formats.drift_url import namespace_token, shard_of
from modelops_pipelines.profile import build_reference_profile

pytestmark = pytest.mark.unit

SECRET = "s3cret-token"
AGENT = Path(__file__).parent / "data" / "kserve_agent_v0.20.0_events.json"


def go_log_request(event: dict) -> dict:
    """One recorded agent CloudEvent as the agent's LogRequest, encoded the way Go's encoding/json writes
    kserve v0.20 pkg/logger/types.go LogRequest: *url.URL as its struct, []byte as base64, maps as objects."""
    h = {k.lower(): v for k, v in event["headers"].items()}
    src = h["ce-source"].split("://", 1)
    host, _, path = src[1].partition("/")
    url = {"Scheme": "http", "Opaque": "", "User": None, "Host": "exporter:8080", "Path": "/events",
           "RawPath": "", "OmitHost": False, "ForceQuery": False, "RawQuery": "", "Fragment": "",
           "RawFragment": ""}
    return {"url": url, "bytes": base64.b64encode(event["body"].encode()).decode(),
            "contentType": h["content-type"], "reqType": h["ce-type"], "id": h["ce-id"],
            "sourceUri": {**url, "Scheme": src[0], "Host": host, "Path": "/" + path},
            "inferenceService": h["ce-inferenceservicename"], "namespace": h["ce-namespace"],
            "component": h["ce-component"], "endpoint": h["ce-endpoint"],
            "metadata": json.loads(h["ce-metadata"]) or None, "occurrenceTime": h["ce-time"]}


def test_kserve_batched_logger_output_parses_like_the_binary_events():
    doc = json.loads(AGENT.read_text())
    batch = [go_log_request(e) for e in doc["events"]]
    batch = [{k: v for k, v in r.items() if v is not None} for r in batch]  # omitempty
    from_batch = parse_http({"content-type": "application/json"}, json.dumps(batch).encode())
    from_binary = [parse_http({k.lower(): v for k, v in e["headers"].items()}, e["body"].encode())[0]
                   for e in doc["events"]]
    assert len(from_batch) == 6
    for a, b in zip(from_batch, from_binary, strict=True):
        assert (a.id, a.kind, a.model, a.namespace, a.endpoint, a.component, a.version, a.payload) == \
            (b.id, b.kind, b.model, b.namespace, b.endpoint, b.component, b.version, b.payload)
    assert from_batch[0].source == "http://churn-v2-predictor.ns/"
    with pytest.raises(Exception) as err:
        log_request_batch([{**batch[0], "bytes": "%%%"}])
    assert getattr(err.value, "reason", None) == "invalid_payload"


def test_the_exporter_answers_a_batch_as_kserves_json_marshaller(profile_churn):
    doc = json.loads(AGENT.read_text())
    batch = [go_log_request(e) for e in doc["events"]]
    ex = Exporter(ReferenceStore([ReferenceSpec.parse("churn=mem")], loader=lambda s, u: profile_churn),
                  ExporterConfig(join_timeout=5))
    client = TestClient(create_app(ex, auth=Auth(SECRET)))
    path = f"/events/ns/modelops-e2e/{namespace_token(SECRET, 'modelops-e2e')}"
    r = client.post(path, content=json.dumps(batch), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.headers["x-log-marshal-extension"] == "json" and r.json() == batch  # what the blob store writes
    tracked = ex.find("churn", "2", "modelops-e2e")
    assert tracked is not None and tracked.window.rows_total == 15 and tracked.window.has_pred.sum() == 15
    r = client.post(path, content=json.dumps(batch[:1]), headers={"Content-Type": "application/json"})
    assert r.json() == batch[0]  # one record: the object, as KServe's handler answers


@pytest.fixture(scope="module")
def profile_churn():
    doc = json.loads(AGENT.read_text())
    body = json.loads(doc["events"][0]["body"])
    cols = {t["name"]: t["data"] * 40 for t in body["inputs"]}
    frame = pd.DataFrame(cols)
    cats = [t["name"] for t in body["inputs"] if t["datatype"] == "BYTES"]
    return build_reference_profile(frame, task="classification", categorical=cats,
                                   predictions=np.array([0, 1] * (len(frame) // 2)))


MIXED = [1, 2.5, None, "3.25", "abc", True, False, float("nan"), "", [1], {"a": 1}, 0, "1", 1.0, "x" * 300]


@pytest.mark.parametrize("seed", range(5))
def test_vector_decoding_equals_the_value_by_value_rules(seed):
    rng = np.random.default_rng(seed)
    for pool in (MIXED, [1, 2.5, 3, None, 7], ["a", "b", None, "c"], [True, 1, 0, False], ["1", 1, 1.0, "1.0"]):
        values = [pool[i] for i in rng.integers(0, len(pool), VECTOR_MIN * 3)]
        expect_f = [to_float(v) for v in values]
        got_f = floats(values).tolist()
        assert all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(got_f, expect_f, strict=True)), pool
        assert categories(values).tolist() == [to_category(v) for v in values], pool


def test_positional_rows_and_nested_tensors_decode_in_blocks():
    rows = [[i, f"c{i % 3}", i * 0.5] for i in range(40)]
    n, cols = request_arrays({"instances": rows}, ["a", "b", "c"], 100)
    assert n == 40 and isinstance(cols["a"], np.ndarray) and list(cols["b"][:3]) == ["c0", "c1", "c2"]
    nested = {"inputs": [{"name": "x", "shape": [40, 3], "datatype": "FP64", "data": [[i, i + 1, i + 2]
                                                                                      for i in range(40)]}]}
    n, cols = request_arrays(nested, ["a", "b", "c"], 100)
    assert n == 40 and list(cols["c"][:2]) == [2, 3]
    profile = {"features": {"a": {"type": "numeric"}, "b": {"type": "categorical"}, "c": {"type": "numeric"}}}
    batch = Layout(profile).batch(40, request_arrays({"instances": rows}, ["a", "b", "c"], 100)[1])
    assert batch.numeric.shape == (40, 2) and batch.numeric[39].tolist() == [39.0, 19.5]
    assert batch.categorical[:, 0].tolist()[:4] == ["c0", "c1", "c2", "c0"]
    probs = {"predictions": [[0.1, 0.9], [0.7, 0.3]] * 20}
    assert prediction_array(probs, True).tolist() == [1, 0] * 20
    assert prediction_array(probs, False).tolist() == [0.1, 0.7] * 20


# --- backpressure -------------------------------------------------------------------------------------

def _exporter(profile, **kw):
    return Exporter(ReferenceStore([ReferenceSpec.parse("m=mem")], loader=lambda s, u: profile),
                    ExporterConfig(join_timeout=0, drift=DriftConfig(min_rows=50, min_feature_rows=20), **kw))


@pytest.fixture(scope="module")
def profile_x():
    rng = np.random.default_rng(0)
    return build_reference_profile(pd.DataFrame({"x": rng.normal(0, 1, 3000)}), task="regression")


HEADERS = [(b"content-type", b"application/json"), (b"ce-specversion", b"1.0"), (b"ce-id", b"1"),
           (b"ce-source", b"x"), (b"ce-type", b"org.kubeflow.serving.inference.request"),
           (b"ce-inferenceservicename", b"m")]


def test_bodies_beyond_the_in_flight_bound_get_429_with_retry_after_and_are_counted(profile_x):
    """One slow sender holds the only slot: the next event is refused at once (no queue), counted, and told
    when to retry; once the slot is free events are accepted again."""
    ex = _exporter(profile_x)
    app = create_app(ex, auth=Auth(SECRET), limits=IngressLimits(max_inflight=1, retry_after_seconds=2))
    path = f"/events/ns/team/{namespace_token(SECRET, 'team')}"
    body = b'{"instances": [[0.5]]}'

    async def call(receive):
        sent = []

        async def send(message):
            sent.append(message)
        scope = {"type": "http", "method": "POST", "path": path, "query_string": b"",
                 "headers": [*HEADERS, (b"content-length", str(len(body)).encode())]}
        await app(scope, receive, send)
        start = sent[0]
        return start["status"], dict(start["headers"]), json.loads(sent[1]["body"])

    async def scenario():
        release = asyncio.Event()

        async def slow():
            await release.wait()
            return {"type": "http.request", "body": body, "more_body": False}

        async def fast():
            return {"type": "http.request", "body": body, "more_body": False}
        first = asyncio.create_task(call(slow))
        await asyncio.sleep(0.01)
        refused = await call(fast)
        release.set()
        return refused, await first, await call(fast)

    (status, headers, payload), first, again = asyncio.run(scenario())
    assert status == 429 and headers[b"retry-after"] == b"2" and payload["reason"] == "overloaded"
    assert first[0] == 200 and again[0] == 200
    assert ex.events_rejected["overloaded"] == 1
    metrics = TestClient(app).get("/metrics").text
    assert 'modelops_drift_events_rejected_total{reason="overloaded"} 1.0' in metrics


# --- sharding -------------------------------------------------------------------------------------------

KEYS = [(f"ns{i % 37}", f"model-{i}") for i in range(3000)]


def test_rendezvous_hashing_balances_and_moves_about_one_nth():
    for n in (1, 2, 3, 5, 8):
        counts = np.bincount([shard_of(ns, m, n) for ns, m in KEYS], minlength=n)
        assert counts.sum() == len(KEYS) and counts.min() > 0.8 * len(KEYS) / n, (n, counts)
    for n in (1, 2, 3, 4, 7):
        changed = moved(KEYS, n, n + 1)
        share = len(changed) / len(KEYS)
        assert abs(share - 1 / (n + 1)) < 0.03, (n, share)
        assert all(shard_of(*k, n + 1) == n for k in changed)  # only onto the new shard, never between old ones
    assert moved(KEYS, 3, 3) == []


def test_operator_writes_the_owning_shards_url():
    template = "http://ex-{shard}.ex-shards.ml.svc:8080/events"
    urls = {exporter_url(template, 3, ns, m) for ns, m in KEYS[:200]}
    assert urls == {f"http://ex-{i}.ex-shards.ml.svc:8080/events" for i in range(3)}
    assert exporter_url(template, 3, "a", "b") == exporter_url(template, 3, "a", "b")
    assert exporter_url("http://ex:8080/events", 1, "a", "b") == "http://ex:8080/events"
    with pytest.raises(ValueError, match="placeholder"):
        exporter_url("http://ex:8080/events", 3, "a", "b")


def test_each_shard_accepts_only_its_models_and_a_reshard_drops_only_moved_windows(profile_x, tmp_path):
    """Three shards fed every model's events: each model lands in exactly one window (no double counting),
    the others answer 421 misdirected (counted). Going to 4 shards through the shards file: each old shard
    drops exactly the windows the new shard now owns and keeps the rest; after the senders switch, every
    model again has exactly one window."""
    models = [(f"ns{i}", f"m{i}") for i in range(12)]
    shards_file = tmp_path / "shards"
    shards_file.write_text("3\n")

    def exporter(i):
        return Exporter(ReferenceStore([ReferenceSpec.parse("mem")], loader=lambda s, u: profile_x),
                        ExporterConfig(join_timeout=0, shard_id=i, shards_file=str(shards_file),
                                       max_models_per_namespace=50))
    shards = [exporter(i) for i in range(4)]
    body = json.dumps({"instances": [[0.1], [0.2]]}).encode()

    def post(ex, ns, model):
        headers = {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "1", "ce-source": "x",
                   "ce-type": "org.kubeflow.serving.inference.request", "ce-inferenceservicename": model}
        try:
            ex.handle_http(headers, body, ns)
            return 200
        except Exception as exc:
            return exc.status  # type: ignore[attr-defined]

    for ns, m in models:
        codes = [post(ex, ns, m) for ex in shards[:3]]
        assert sorted(codes) == [200, 421, 421], codes
    owners = {k: [i for i, ex in enumerate(shards[:3]) if k in ex.models] for k in models}
    assert all(len(v) == 1 and v[0] == shard_of(*k, 3) for k, v in owners.items())
    assert sum(ex.events_rejected["misdirected"] for ex in shards) == 2 * len(models)

    shards_file.write_text("4\n")
    for ex in shards:
        ex.refresh_shards(float("inf"), force=True)
    for i, ex in enumerate(shards[:3]):
        expect = {k for k in models if shard_of(*k, 3) == i and shard_of(*k, 4) == i}
        assert set(ex.models) == expect
        assert ex.resharded_models == sum(1 for k in models if shard_of(*k, 3) == i and shard_of(*k, 4) != i)
    for ns, m in models:  # senders now use the new owner's URL
        assert post(shards[shard_of(ns, m, 4)], ns, m) == 200
    windows = [k for ex in shards for k in ex.models]
    assert sorted(windows) == sorted(models)
