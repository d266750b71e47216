import json

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from modelops.drift.events import EventError, LoggedEvent
from modelops.drift.metrics import DriftCollector
from modelops.drift.reference import ReferenceSpec, ReferenceStore
from modelops.drift.service import Exporter, ExporterConfig
from modelops.drift.stats import DriftConfig
from modelops_pipelines.profile import build_reference_profile

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def profile():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(0, 1, 3000), "b": rng.normal(5, 2, 3000),
                          "c": rng.choice(["x", "y", "z"], 3000)})
    return build_reference_profile(frame, task="classification", categorical=["c"],
                                   predictions=rng.integers(0, 2, 3000))


def exporter(profile, **cfg):
    store = ReferenceStore([ReferenceSpec.parse("iris=mem")], loader=lambda source, uri: profile)
    drift = DriftConfig(min_rows=100, min_feature_rows=20)
    return Exporter(store, ExporterConfig(drift=drift, **cfg))


def rows(rng, n, shift=0.0):
    return [[float(rng.normal(shift, 1)), float(rng.normal(5, 2)), str(rng.choice(["x", "y", "z"]))]
            for _ in range(n)]


def req(i, payload, model="iris", version=None):
    return LoggedEvent(id=str(i), kind="request", model=model, version=version, payload=payload)


def resp(i, payload, model="iris", version=None):
    return LoggedEvent(id=str(i), kind="response", model=model, version=version, payload=payload)


def test_spec_parsing():
    assert ReferenceSpec.parse("churn=models:/churn/3") == ReferenceSpec("churn", "models:/churn/3")
    assert ReferenceSpec.parse("models:/churn/3") == ReferenceSpec(None, "models:/churn/3")
    assert ReferenceSpec.parse("/a/b=c") == ReferenceSpec(None, "/a/b=c")


def test_request_and_response_are_joined_by_id_in_either_order(profile):
    ex = exporter(profile)
    rng = np.random.default_rng(1)
    ex.handle_event(req(1, {"instances": rows(rng, 3)}), now=0.0)
    assert len(ex.join) == 1 and not ex.models
    ex.handle_event(resp(1, {"predictions": [1, 0, 1]}, version="2"), now=0.1)
    ex.handle_event(resp(2, {"predictions": [0]}), now=0.2)
    ex.handle_event(req(2, {"instances": rows(rng, 1)}), now=0.3)
    assert len(ex.join) == 0
    window = ex.models[("", "iris")]
    assert set(window) == {"2", "unknown"}
    assert window["2"].window.count == 3 and window["2"].window.has_pred[:3].all()
    assert window["unknown"].window.count == 1


def test_lone_requests_still_count_and_lone_responses_are_dropped(profile):
    ex = exporter(profile, join_timeout=1.0)
    rng = np.random.default_rng(2)
    ex.handle_event(req(1, {"instances": rows(rng, 2)}), now=0.0)
    ex.handle_event(resp(9, {"predictions": [1]}), now=0.0)
    ex.handle_event(req(3, {"instances": rows(rng, 1)}), now=5.0)  # expires the first two
    assert ex.unmatched == {"request": 1, "response": 1}
    assert ex.models[("", "iris")]["unknown"].window.count == 2
    assert not ex.models[("", "iris")]["unknown"].window.has_pred[:2].any()


def test_memory_stays_bounded_under_a_flood(profile):
    ex = exporter(profile, window_rows=500, max_pending=100, max_pending_bytes=1 << 20, max_versions=2)
    rng = np.random.default_rng(3)
    payload = {"instances": rows(rng, 5)}
    for i in range(5000):  # requests whose responses never come, many versions
        ex.handle_event(req(i, payload, version=str(i % 7)), now=i * 1e-4)
    assert len(ex.join) <= 100 and ex.join.nbytes <= 1 << 20
    assert ex.truncated["pending"] >= 4900
    assert len(ex.models[("", "iris")]) <= 2 and ex.truncated["versions"] > 0
    for tracked in ex.models[("", "iris")].values():
        assert tracked.window.count <= 500 and tracked.window.numeric.shape[0] == 500


def test_window_forgets_rows_older_than_max_age(profile):
    ex = exporter(profile, window_age=10.0, join_timeout=0)
    rng = np.random.default_rng(4)
    ex.handle_event(req(1, {"instances": rows(rng, 150)}), now=0.0)
    ex.handle_event(req(2, {"instances": rows(rng, 150)}), now=8.0)
    tracked = ex.models[("", "iris")]["unknown"]
    assert ex.evaluate(tracked, now=9.0).result.rows == 300
    assert ex.evaluate(tracked, now=15.0).result.rows == 150
    assert ex.evaluate(tracked, now=30.0).result.status == "insufficient_data"


def test_caps_on_models_and_unknown_models(profile):
    store = ReferenceStore([ReferenceSpec.parse("mem")], loader=lambda source, uri: profile)
    ex = Exporter(store, ExporterConfig(max_models=2, join_timeout=0))
    rng = np.random.default_rng(5)
    for m in ("m1", "m2"):
        ex.handle_event(req(1, {"instances": rows(rng, 1)}, model=m))
    with pytest.raises(EventError) as err:
        ex.handle_event(req(1, {"instances": rows(rng, 1)}, model="m3"))
    assert err.value.reason == "too_many_models"
    only_iris = exporter(profile)
    with pytest.raises(EventError) as err:
        only_iris.handle_event(req(1, {"instances": rows(rng, 1)}, model="other"))
    assert err.value.reason == "unknown_model"


def test_reference_load_failure_is_503_and_retried_later(profile):
    calls = []

    def broken(source, uri):
        calls.append(source)
        raise OSError("no such artifact")

    ex = Exporter(ReferenceStore([ReferenceSpec.parse("models:/iris/{version}")], loader=broken))
    for _ in range(3):
        with pytest.raises(EventError) as err:
            ex.handle_event(req(1, {"instances": []}, version="3"))
        assert err.value.reason == "reference_unavailable" and err.value.status == 503
    assert calls == ["models:/iris/3"]  # not hammered: retried after RETRY_SECONDS


def test_metrics_have_bounded_labels_and_no_zero_for_insufficient(profile):
    ex = exporter(profile, join_timeout=0, max_features=2)
    rng = np.random.default_rng(6)
    ex.ingest_batch("iris", {"version": "1", "instances": rows(rng, 50)})
    ex.ingest_batch("iris", {"version": "2", "instances": rows(rng, 400, shift=2.0),
                             "predictions": [1] * 400})
    registry = CollectorRegistry()
    registry.register(DriftCollector(ex))
    text = generate_latest(registry).decode()
    assert 'modelops_drift_insufficient_data{model="iris",model_namespace="",version="1"} 1.0' in text
    assert 'modelops_drift_share{model="iris",model_namespace="",version="1"}' not in text
    assert 'modelops_drift_feature_drift{feature="a",method="wasserstein_norm",model="iris",model_namespace="",version="2"} 1.0' in text
    assert 'feature="c"' not in text  # over --max-features: judged, counted, not exported
    assert 'modelops_drift_features_not_exported{model="iris",model_namespace="",version="2"} 1.0' in text
    assert 'modelops_drift_share{model="iris",model_namespace="",version="2"} 0.3333' in text
    assert 'modelops_drift_prediction_drift{method="jensenshannon",model="iris",model_namespace="",version="2"} 1.0' in text
    assert 'modelops_drift_truncated_total{what="features"} 2.0' in text
    assert 'modelops_drift_events_rejected_total{reason="too_many_models"} 0.0' in text
    assert "modelops_drift_evaluation_duration_seconds_count 1.0" in text
    json.dumps(ex.evaluate(ex.find("iris", "2")).result.as_dict())  # the /drift JSON is serializable
