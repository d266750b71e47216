import base64
import json

import pytest

from modelops.drift.events import (
    EventError,
    parse_http,
    request_columns,
    response_predictions,
)

pytestmark = pytest.mark.unit
FEATURES = ["a", "b", "c"]


def binary(kind="request", **extra):
    headers = {"ce-specversion": "1.0", "ce-id": "e1", "ce-source": "http://localhost:9081/",
               "ce-type": f"org.kubeflow.serving.inference.{kind}", "ce-inferenceservicename": "iris",
               "ce-namespace": "default", "ce-component": "predictor", "ce-endpoint": "default",
               "ce-metadata": "{}", "content-type": "application/json"}
    headers.update(extra)
    return headers


def test_binary_mode_request_and_response():
    [req] = parse_http(binary(), b'{"instances": [[1, 2, "x"]]}')
    assert (req.id, req.kind, req.model, req.version, req.endpoint) == ("e1", "request", "iris", None, "default")
    [resp] = parse_http(binary("response"), b'{"predictions": [1]}')
    assert resp.kind == "response" and resp.payload == {"predictions": [1]}


def test_version_from_annotation_metadata_header_or_v2_body():
    ann = json.dumps({"modelops.dev/model-version": "4"})
    assert parse_http(binary(**{"ce-annotations": ann}), b"{}")[0].version == "4"
    meta = json.dumps({"X-Model-Version": ["5"]})
    assert parse_http(binary(**{"ce-metadata": meta}), b"{}")[0].version == "5"
    body = b'{"model_name": "iris", "model_version": "6", "outputs": []}'
    assert parse_http(binary("response"), body)[0].version == "6"


def test_empty_or_form_content_type_is_still_parsed_as_json():
    # the agent copies the client's Content-Type; curl -d sends form encoding
    headers = binary(**{"content-type": "application/x-www-form-urlencoded"})
    assert parse_http(headers, b'{"instances": []}')[0].payload == {"instances": []}
    del headers["content-type"]
    assert parse_http(headers, b'{"instances": []}')[0].kind == "request"


def test_structured_mode_data_and_base64_and_batch():
    env = {"specversion": "1.0", "id": "s1", "source": "x", "type": "org.kubeflow.serving.inference.request",
           "inferenceservicename": "iris", "data": {"instances": [[1, 2, 3]]}}
    [e] = parse_http({"content-type": "application/cloudevents+json"}, json.dumps(env).encode())
    assert e.payload == {"instances": [[1, 2, 3]]}
    env64 = {**{k: v for k, v in env.items() if k != "data"},
             "data_base64": base64.b64encode(b'{"instances": [[4, 5, 6]]}').decode()}
    [e] = parse_http({"content-type": "application/cloudevents+json"}, json.dumps(env64).encode())
    assert e.payload["instances"] == [[4, 5, 6]]
    events = parse_http({"content-type": "application/cloudevents-batch+json"}, json.dumps([env, env64]).encode())
    assert len(events) == 2


@pytest.mark.parametrize(("headers", "body", "reason", "status"), [
    ({"content-type": "application/json"}, b"{}", "not_a_cloudevent", 400),
    (binary(**{"ce-id": ""}), b"{}", "not_a_cloudevent", 400),
    (binary(**{"ce-type": "dev.other"}), b"{}", "unsupported_event_type", 400),
    (binary(), b"{nope", "invalid_json", 400),
    (binary(**{"content-type": "application/octet-stream"}), b"\x00", "unsupported_content_type", 415),
    ({k: v for k, v in binary().items() if k != "ce-inferenceservicename"}, b"{}", "missing_model", 400),
    ({"content-type": "application/cloudevents+json"}, b"[1]", "not_a_cloudevent", 400),
])
def test_malformed_events_have_a_reason(headers, body, reason, status):
    with pytest.raises(EventError) as err:
        parse_http(headers, body)
    assert (err.value.reason, err.value.status) == (reason, status)


def test_v1_rows_positional_named_and_columnar():
    assert request_columns({"instances": [[1, 2, "x"], [3, 4, "y"]]}, FEATURES, 10) == (
        2, {"a": [1, 3], "b": [2, 4], "c": ["x", "y"]})
    n, cols = request_columns({"instances": [{"a": 1, "c": "x", "zzz": 0}]}, FEATURES, 10)
    assert (n, cols) == (1, {"a": [1], "b": [None], "c": ["x"]})
    assert request_columns({"inputs": {"a": [1], "b": [2], "c": ["q"]}}, FEATURES, 10)[1]["c"] == ["q"]


def test_v2_single_matrix_tensor_and_per_feature_tensors():
    flat = {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}
    assert request_columns(flat, FEATURES, 10) == (2, {"a": [1, 4], "b": [2, 5], "c": [3, 6]})
    nested = {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]}]}
    assert request_columns(nested, FEATURES, 10)[1]["b"] == [2, 5]
    per = {"inputs": [{"name": f, "shape": [2], "datatype": "FP64", "data": [i, i]} for i, f in enumerate("ab")]}
    assert request_columns(per, FEATURES, 10) == (2, {"a": [0, 0], "b": [1, 1], "c": [None, None]})


@pytest.mark.parametrize("payload", [
    {"instances": [[1, 2]]},
    {"instances": "x"},
    {"instances": []},
    {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
    {"inputs": [{"name": "input-0", "shape": [2, 5], "datatype": "FP32", "data": list(range(10))}]},
    {"something": 1},
    [1, 2],
])
def test_payloads_that_do_not_match_the_reference_are_invalid(payload):
    with pytest.raises(EventError) as err:
        request_columns(payload, FEATURES, 10)
    assert err.value.reason == "invalid_payload"


def test_row_limit():
    with pytest.raises(EventError) as err:
        request_columns({"instances": [[1, 2, 3]] * 11}, FEATURES, 10)
    assert err.value.reason == "too_many_rows" and err.value.status == 413


def test_predictions_v1_v2_and_probabilities():
    assert response_predictions({"predictions": [1, 0]}, True) == [1, 0]
    assert response_predictions({"predictions": [[0.1, 0.9], [0.8, 0.2]]}, True) == [1, 0]
    assert response_predictions({"predictions": [[3.5], [1.0]]}, False) == [3.5, 1.0]
    out = {"outputs": [{"name": "output-0", "shape": [2], "datatype": "INT64", "data": [1, 1]}]}
    assert response_predictions(out, True) == [1, 1]
    probs = {"outputs": [{"name": "p", "shape": [2, 2], "datatype": "FP32", "data": [0.3, 0.7, 0.9, 0.1]}]}
    assert response_predictions(probs, True) == [1, 0]


def test_real_kserve_agent_events_parse_with_zero_rejects():
    """CloudEvents recorded from KServe v0.20.0's own agent (tests/unit/drift/data): binary mode, the agent's
    own ce-id shared by request and response (not the request's v2 `id`), a ce-recordedtime extension, no
    ce-annotations unless the InferenceService lists metadataAnnotations. The request carries no version: it
    comes from the response body's model_version, joined by ce-id."""
    from pathlib import Path

    doc = json.loads((Path(__file__).parent / "data" / "kserve_agent_v0.20.0_events.json").read_text())
    parsed = []
    for e in doc["events"]:
        headers = {k.lower(): v for k, v in e["headers"].items()}
        [event] = parse_http(headers, e["body"].encode())
        parsed.append(event)
    assert len(parsed) == 6
    by_id = {}
    for event in parsed:
        by_id.setdefault(event.id, {})[event.kind] = event
    assert len(by_id) == 3 and all(set(pair) == {"request", "response"} for pair in by_id.values())
    for pair in by_id.values():
        req, resp = pair["request"], pair["response"]
        assert (req.model, req.endpoint, req.version) == ("churn", "canary", None)
        assert (resp.model, resp.endpoint, resp.version) == ("churn", "canary", "2")
        assert req.id != req.payload["id"]  # the agent's event id, not the inference request's
        features = [t["name"] for t in req.payload["inputs"]]
        n, cols = request_columns(req.payload, features, max_rows=100)
        assert n == 5 and set(cols) == set(features)
        assert response_predictions(resp.payload, classification=True) == [0, 1, 0, 1, 0]
        assert req.time is not None and abs(req.time - 1795988383.6) < 1  # ce-time: 2026-11-29T21:39:43.6Z


def test_the_inference_time_comes_from_ce_time_and_a_bad_one_costs_only_the_time():
    [e] = parse_http(binary(**{"ce-time": "2026-11-29T21:39:43.619118578Z"}), b'{"instances": []}')
    assert e.time == pytest.approx(1795988383.619118)
    [e] = parse_http(binary(**{"ce-time": "2026-11-29T22:39:43+01:00"}), b'{"instances": []}')
    assert e.time == pytest.approx(1795988383.0)
    assert parse_http(binary(**{"ce-time": "soon"}), b'{"instances": []}')[0].time is None
    assert parse_http(binary(), b'{"instances": []}')[0].time is None
    env = {"specversion": "1.0", "id": "s1", "source": "x", "type": "org.kubeflow.serving.inference.request",
           "inferenceservicename": "iris", "time": "2026-11-29T21:39:43Z", "data": {"instances": []}}
    [e] = parse_http({"content-type": "application/cloudevents+json"}, json.dumps(env).encode())
    assert e.time == pytest.approx(1795988383.0)
