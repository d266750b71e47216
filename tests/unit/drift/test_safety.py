"""The drift exporter's findings of the reliability review (issue 16, M6 and M7), as reproduced there."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from modelops.drift.app import create_app
from modelops.drift.auth import Auth
from modelops.drift.events import EventError, LoggedEvent
from modelops.drift.reference import MAX_FAILED, ReferenceSpec, ReferenceStore
from modelops.drift.service import Exporter, ExporterConfig
from modelops.drift.stats import DriftConfig
from modelops.formats.drift_url import logger_url, namespace_token
from modelops_pipelines.profile import build_reference_profile

pytestmark = pytest.mark.unit

SECRET = "s3cret-token"


@pytest.fixture(scope="module")
def profile():
    rng = np.random.default_rng(0)
    return build_reference_profile(pd.DataFrame({"x": rng.normal(0, 1, 3000)}), task="regression")


def event(i, model, namespace=None, version=None, rows=1, shift=0.0, rng=None):
    rng = rng or np.random.default_rng(i)
    return LoggedEvent(id=str(i), kind="request", model=model, version=version, namespace=namespace,
                       payload={"instances": [[float(v)] for v in rng.normal(shift, 1, rows)]})


def cfg(**kw):
    return ExporterConfig(join_timeout=0, drift=DriftConfig(min_rows=50, min_feature_rows=20), **kw)


def test_two_namespaces_same_model_are_two_windows(profile):
    """M7: team-a sends N(0,1), team-b N(3,1), both to an InferenceService named churn."""
    ex = Exporter(ReferenceStore([ReferenceSpec.parse("churn=mem")], loader=lambda s, u: profile), cfg())
    rng = np.random.default_rng(1)
    for i in range(3):
        ex.handle_event(event(i, "churn", "team-a", rows=1000, rng=rng))
        ex.handle_event(event(100 + i, "churn", "team-b", rows=1000, shift=3.0, rng=rng))
    assert set(ex.models) == {("team-a", "churn"), ("team-b", "churn")}
    a = ex.evaluate(ex.find("churn", namespace="team-a"))
    b = ex.evaluate(ex.find("churn", namespace="team-b"))
    assert a.result.rows == 3000 and b.result.rows == 3000
    assert a.result.drift_share == 0.0 and b.result.drift_share == 1.0
    with pytest.raises(ValueError, match="namespaces team-a, team-b"):
        ex.find("churn")  # ambiguous without a namespace: never a mixed answer


def test_junk_model_names_cannot_lock_out_or_evict_real_ones(profile):
    """M6 D: 50 junk names fill the caps; the real model, hours later, is still tracked; a live one stays."""
    ex = Exporter(ReferenceStore([ReferenceSpec.parse("mem")], loader=lambda s, u: profile),
                  cfg(max_models=50, max_models_per_namespace=10, idle_seconds=600))
    ex.handle_event(event(0, "live", "prod", rows=10), now=0.0)
    refused = 0
    for i in range(200):  # a flood from another namespace
        try:
            ex.handle_event(event(i, f"junk{i}", "attacker"), now=1.0 + i / 1000)
        except EventError as exc:
            assert exc.reason == "too_many_models"
            refused += 1
    assert refused == 190 and len([k for k in ex.models if k[0] == "attacker"]) == 10
    ex.handle_event(event(1, "live", "prod", rows=10), now=2.0)
    assert ("prod", "live") in ex.models  # not evicted by the flood
    ex.handle_event(event(2, "churn", "prod", rows=10), now=3 * 3600.0)  # hours later: tracked
    assert ("prod", "churn") in ex.models
    # the flood in one namespace, hours later, makes room among its own idle names only
    ex.handle_event(event(3, "junk-new", "attacker"), now=3 * 3600.0)
    assert ("prod", "live") in ex.models and len([k for k in ex.models if k[0] == "attacker"]) == 10


def test_junk_versions_cannot_evict_a_live_version(profile):
    """M6 C: one real event for version 7, then five one-row events for versions bogus0..4."""
    ex = Exporter(ReferenceStore([ReferenceSpec.parse("churn=mem/{version}")], loader=lambda s, u: profile),
                  cfg(max_versions=5))
    ex.handle_event(event(0, "churn", "ns", version="7", rows=500), now=0.0)
    for i in range(5):
        try:
            ex.handle_event(event(i + 1, "churn", "ns", version=f"bogus{i}"), now=1.0 + i)
        except EventError as exc:
            assert exc.reason == "too_many_versions"
    assert "7" in ex.models[("ns", "churn")]
    assert ex.models[("ns", "churn")]["7"].window.count == 500


def test_reference_downloads_run_outside_the_exporter_lock(profile):
    """M6 A: the loader runs while another thread can take the exporter's lock."""
    held = []

    def loader(source, uri):
        got = threading.Event()
        t = threading.Thread(target=lambda: (ex.lock.acquire(), got.set(), ex.lock.release()))
        t.start()
        t.join(5)
        held.append(got.is_set())
        return profile

    ex = Exporter(ReferenceStore([ReferenceSpec.parse("churn=models:/churn/{version}")], loader=loader), cfg())
    ex.handle_event(event(0, "churn", "ns", version="3"))
    assert held == [True]


def test_failed_reference_loads_are_bounded(profile):
    """M6 B: 2,000 events with versions x0..x1999 gave 2,001 loader calls and 2,000 cached failures."""
    calls = []

    def broken(source, uri):
        calls.append(source)
        raise OSError("not found")

    store = ReferenceStore([ReferenceSpec.parse("churn=models:/churn/{version}")], loader=broken)
    ex = Exporter(store, cfg())
    for i in range(2000):
        with pytest.raises(EventError):
            ex.handle_event(event(i, "churn", "ns", version=f"x{i}"))
    assert len(calls) <= 5 and len(store._failed) <= MAX_FAILED
    many = ReferenceStore([ReferenceSpec.parse("models:/{model}/1")], loader=broken)
    for i in range(MAX_FAILED + 500):  # distinct models, each failing once
        with pytest.raises(RuntimeError):
            many.get(f"m{i}", "1")
    assert len(many._failed) <= MAX_FAILED and len(many._model_failures) <= MAX_FAILED + 1


def _client(profile):
    ex = Exporter(ReferenceStore([ReferenceSpec.parse("churn=mem")], loader=lambda s, u: profile), cfg())
    return ex, TestClient(create_app(ex, auth=Auth(SECRET)))


HEADERS = {"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "x", "Ce-Type": "org.kubeflow.serving.inference.request",
           "Ce-Inferenceservicename": "churn", "Ce-Namespace": "team-b", "Content-Type": "application/json"}
BODY = b'{"instances": [[0.5], [0.1]]}'


def test_unauthenticated_events_and_reads_get_401(profile):
    ex, client = _client(profile)
    for path in ("/", "/events", "/events/ns/team-a/wrong", f"/events/ns/team-b/{namespace_token(SECRET, 'team-a')}"):
        r = client.post(path, content=BODY, headers=HEADERS)
        assert r.status_code == 401 and r.json()["reason"] == "unauthorized", (path, r.text)
    r = client.post("/ingest/churn", json={"instances": [[1.0]]})
    assert r.status_code == 401
    for path in ("/drift/churn", "/reports/churn", "/reports/churn/drift.png"):
        assert client.get(path).status_code == 401, path
    assert not ex.models
    assert client.get("/metrics").status_code == 200 and client.get("/healthz").status_code == 200


def test_namespace_url_files_events_under_its_own_namespace(profile):
    ex, client = _client(profile)
    url = logger_url("http://exporter:8080/events", SECRET, "team-a")
    path = url.removeprefix("http://exporter:8080")
    assert path == f"/events/ns/team-a/{namespace_token(SECRET, 'team-a')}"
    r = client.post(path, content=BODY, headers=HEADERS)  # the event claims ce-namespace team-b
    assert r.status_code == 200, r.text
    assert set(ex.models) == {("team-a", "churn")}  # filed under the authenticated namespace
    r = client.post("/events", content=BODY, headers={**HEADERS, "Authorization": f"Bearer {SECRET}"})
    assert r.status_code == 200 and ("team-b", "churn") in ex.models
    r = client.get("/drift/churn", params={"namespace": "team-a"}, headers={"Authorization": f"Bearer {SECRET}"})
    assert r.status_code == 200 and r.json()["namespace"] == "team-a"
    assert client.get("/drift/churn", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 409
