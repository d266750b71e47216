"""KServe payload-logger CloudEvents in, feature columns and predictions out. No web framework here.

What the KServe agent sends (``pkg/logger/worker.go`` and ``handler.go`` in kserve/kserve): one HTTP POST per
logged message, CloudEvents v1.0 in *binary* mode (attributes as ``ce-*`` headers, the inference payload
as the body, with the Content-Type of the original inference request):

- ``ce-specversion: 1.0``, ``ce-id`` (the request's ``Ce-Id`` header or a fresh UUID; the request and
  the response of one inference share it), ``ce-source`` (the agent's ``--source-uri``), ``ce-time``,
- ``ce-type``: ``org.kubeflow.serving.inference.request`` or ``org.kubeflow.serving.inference.response``,
- extensions ``ce-inferenceservicename``, ``ce-namespace``, ``ce-component`` (predictor, transformer,
  ...), ``ce-endpoint`` (``default`` or ``canary``), ``ce-metadata`` (JSON object of the headers listed in
  ``logger.metadataHeaders``: name -> [values]) and, when ``logger.metadataAnnotations`` is set,
  ``ce-annotations`` (JSON object of those InferenceService annotations).

Bodies: V1 ``{"instances": [...]}`` / ``{"predictions": [...]}``; V2 (Open Inference Protocol)
``{"inputs": [{"name", "shape", "datatype", "data"}]}`` / ``{"model_name", "model_version", "outputs":
[...]}``. Structured mode (``application/cloudevents+json``) and batches
(``application/cloudevents-batch+json``) are accepted too, for other senders and for replays.

The model version of an event is, in order: the annotation ``modelops.dev/model-version`` (set it on the
InferenceService and list it in ``logger.metadataAnnotations``), a ``Model-Version`` metadata header, the
V2 response's ``model_version``; else ``unknown``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeGuard

import numpy as np
import numpy.typing as npt
import orjson

from modelops.formats.drift_url import VERSION_ANNOTATION as _VERSION_ANNOTATION

Column = Sequence[Any] | npt.NDArray[Any]  # a list or a 1-d numpy array of one feature's raw values

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
# Predictor annotation carrying the served model version (listed in logger.metadataAnnotations).
VERSION_ANNOTATION = _VERSION_ANNOTATION
# Metadata header (logger.metadataHeaders) carrying the version, for senders that cannot annotate.
VERSION_HEADER = "model-version"
UNKNOWN_VERSION = "unknown"

# Why an event was refused: a closed set, so the rejection counter's label stays bounded.
REASONS: dict[str, int] = {
    "not_a_cloudevent": 400,  # required ce-* attributes missing
    "unsupported_event_type": 400,  # ce-type is neither inference.request nor inference.response
    "unsupported_content_type": 415,
    "invalid_json": 400,
    "invalid_payload": 422,  # JSON, but not a V1/V2 payload that matches the reference's features
    "missing_model": 400,  # no ce-inferenceservicename and no model_name in the body
    "unknown_model": 422,  # no reference profile configured for this model
    "reference_unavailable": 503,  # a reference is configured but could not be loaded (retried later)
    "body_too_large": 413,
    "too_many_rows": 413,
    "too_many_models": 429,  # the cap on tracked models is reached and none is idle
    "too_many_versions": 429,  # the cap on versions of a model is reached and none is idle
    "unauthorized": 401,  # no valid token (issue 16)
    "overloaded": 429,  # more bodies in flight than --max-inflight(-bytes): retry after Retry-After (issue 19)
    "misdirected": 421,  # this shard does not own the (namespace, model): the sender's URL is stale (issue 19)
}


class EventError(Exception):
    """An event we refuse; ``reason`` is one of REASONS (a metric label), ``message`` is for humans."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = REASONS[reason]


@dataclass
class LoggedEvent:
    id: str
    kind: Literal["request", "response"]
    model: str
    version: str | None
    payload: Any
    namespace: str | None = None
    endpoint: str | None = None
    component: str | None = None
    source: str | None = None
    # when the inference happened (epoch seconds): ``ce-time`` / ``LogRequest.occurrenceTime``, which KServe's
    # agent sets to the inference's occurrence time; None when absent or not RFC 3339 (then: on receipt)
    time: float | None = None


def event_time(value: Any) -> float | None:
    """An RFC 3339 time (Go's RFC3339Nano: ``2026-11-30T10:23:05.123456789Z``) as epoch seconds; None when
    absent or unreadable (a bad ``ce-time`` costs the event its time, not the event)."""
    if not value or not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _json(data: bytes | str, what: str) -> Any:
    try:
        return orjson.loads(data)  # C parser: the bulk of an event's cost with the stdlib one (issue 19)
    except orjson.JSONDecodeError:
        pass
    try:  # NaN/Infinity (Python servers write them) and other stdlib-only leniencies
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError("invalid_json", f"{what} is not valid JSON: {exc}") from None


def _json_object(text: str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if isinstance(text, dict | Mapping):  # KServe's LogRequest batches carry metadata/annotations as objects
        return text
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _version_hint(annotations: str | Mapping[str, Any] | None, metadata: str | Mapping[str, Any] | None,
                  payload: Any) -> str | None:
    ann = _json_object(annotations)
    if isinstance(ann.get(VERSION_ANNOTATION), str | int) and str(ann[VERSION_ANNOTATION]):
        return str(ann[VERSION_ANNOTATION])
    for name, values in _json_object(metadata).items():
        if name.lower() in (VERSION_HEADER, "x-" + VERSION_HEADER) and isinstance(values, list) and values:
            return str(values[0])
    if isinstance(payload, dict) and payload.get("model_version") not in (None, ""):
        return str(payload["model_version"])
    return None


def _check_attributes(attrs: Mapping[str, Any]) -> None:
    missing = [a for a in ("id", "type", "source", "specversion") if not attrs.get(a)]
    if missing:
        raise EventError("not_a_cloudevent", f"missing CloudEvent attribute(s): {', '.join(missing)}")


def _event(attrs: Mapping[str, Any], payload: Any) -> LoggedEvent:
    """Build from CloudEvent attributes (lower-case names without the ``ce-`` prefix)."""
    _check_attributes(attrs)
    ce_type = str(attrs["type"])
    if ce_type == REQUEST_TYPE:
        kind: Literal["request", "response"] = "request"
    elif ce_type == RESPONSE_TYPE:
        kind = "response"
    else:
        raise EventError("unsupported_event_type",
                         f"ce-type {ce_type!r} is not {REQUEST_TYPE} or {RESPONSE_TYPE}")
    model = attrs.get("inferenceservicename") or (payload.get("model_name") if isinstance(payload, dict)
                                                  else None)
    if not model:
        raise EventError("missing_model", "no ce-inferenceservicename attribute and no model_name in the body")
    return LoggedEvent(
        id=str(attrs["id"]), kind=kind, model=str(model),
        version=_version_hint(attrs.get("annotations"), attrs.get("metadata"), payload),
        payload=payload, namespace=attrs.get("namespace"), endpoint=attrs.get("endpoint"),
        component=attrs.get("component"), source=str(attrs["source"]), time=event_time(attrs.get("time")))


_KINDS: dict[Any, Literal["request", "response"]] = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}
_NON_JSON_PREFIXES = ("application/octet-stream", "image/", "audio/", "video/", "multipart/")


def parse_http(headers: Mapping[str, str], body: bytes) -> list[LoggedEvent]:
    """Events of one HTTP POST; ``headers`` keys lower-case. Raises EventError."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/cloudevents+json":
        return [_structured(_json(body, "structured CloudEvent"))]
    if content_type == "application/cloudevents-batch+json":
        batch = _json(body, "CloudEvents batch")
        if not isinstance(batch, list):
            raise EventError("not_a_cloudevent", "a CloudEvents batch must be a JSON array")
        return [_structured(e) for e in batch]
    attrs = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
    if not attrs and is_log_request_batch(content_type, body):
        return log_request_batch(_json(body, "KServe logger batch"))
    if not attrs:
        raise EventError("not_a_cloudevent",
                         "no ce-* headers (binary mode) and Content-Type is not application/cloudevents+json")
    _check_attributes(attrs)
    if content_type.startswith(_NON_JSON_PREFIXES):
        raise EventError("unsupported_content_type",
                         f"payload Content-Type {content_type!r}: only JSON inference payloads are analysed")
    # The agent copies the inference request's Content-Type, which clients often leave empty or set to
    # form encoding (curl -d); the KServe server parses the body as JSON anyway, and so do we.
    return [_event(attrs, _json(body, "event data"))]


def is_log_request_batch(content_type: str, body: bytes) -> bool:
    """A KServe agent's batched logger output: a JSON array of ``LogRequest`` objects (see log_request_batch)."""
    return content_type in ("application/json", "") and body.lstrip()[:1] == b"["


def _url_text(value: Any) -> str | None:
    """Go's encoding/json writes a ``*url.URL`` as the struct (Scheme, Host, Path, ...); senders may use text."""
    if isinstance(value, dict):
        return f"{value.get('Scheme', '')}://{value.get('Host', '')}{value.get('Path', '')}" \
            if value.get("Host") else None
    return str(value) if value else None


def log_request_batch(batch: Any) -> list[LoggedEvent]:
    """KServe's batched logger output (agent ``--log-store-path`` with ``--log-marshaller-url`` pointing here).

    ``pkg/logger`` in kserve/kserve v0.20: the agent's batch strategy collects ``LogRequest`` records and its
    ``HTTPMarshaller`` POSTs them as one JSON array (``Content-Type: application/json``, no ``ce-*`` headers):
    ``{"url", "bytes" (the payload, base64: Go's []byte), "contentType", "reqType" (the CloudEvent type),
    "id" (the CloudEvent id), "sourceUri", "inferenceService", "namespace", "component", "endpoint",
    "metadata" ({header: [values]}), "annotations" ({name: value}), "occurrenceTime"}``.
    """
    if not isinstance(batch, list):
        raise EventError("not_a_cloudevent", "a KServe logger batch must be a JSON array of LogRequest objects")
    out = []
    for record in batch:  # per record only what differs; the rules are _event's (issue 19: 200 records a POST)
        if not isinstance(record, dict):
            raise EventError("not_a_cloudevent", "a KServe logger batch must be a JSON array of LogRequest objects")
        try:  # strict: what b64decode(validate=True) refuses, in C
            raw = binascii.a2b_base64(record.get("bytes") or "", strict_mode=True)
        except (binascii.Error, TypeError, ValueError):
            raise EventError("invalid_payload", "LogRequest.bytes is not valid base64") from None
        content_type = record.get("contentType") or ""
        if content_type != "application/json":
            content_type = str(content_type).split(";")[0].strip().lower()
            if content_type.startswith(_NON_JSON_PREFIXES):
                raise EventError("unsupported_content_type",
                                 f"payload Content-Type {content_type!r}: only JSON inference payloads are analysed")
        payload = _json(raw, "LogRequest.bytes")
        event_id, kind, model = record.get("id"), _KINDS.get(record.get("reqType")), record.get("inferenceService")
        metadata, annotations = record.get("metadata"), record.get("annotations")
        if not (event_id and kind and model and isinstance(event_id, str) and isinstance(model, str)):
            attrs = {"id": event_id, "type": record.get("reqType"), "specversion": "1.0",
                     "source": _url_text(record.get("sourceUri")) or "kserve-agent",
                     "inferenceservicename": model, "namespace": record.get("namespace"),
                     "component": record.get("component"), "endpoint": record.get("endpoint"),
                     "metadata": metadata, "annotations": annotations, "time": record.get("occurrenceTime")}
            out.append(_event(attrs, payload))  # the general rules: an error names what is missing
            continue
        version = _version_hint(annotations, metadata, payload) if (annotations or metadata) else (
            str(payload["model_version"]) if isinstance(payload, dict) and payload.get("model_version")
            not in (None, "") else None)
        out.append(LoggedEvent(event_id, kind, model, version, payload, record.get("namespace"),
                               record.get("endpoint"), record.get("component"),
                               _url_text(record.get("sourceUri")) or "kserve-agent",
                               event_time(record.get("occurrenceTime"))))
    return out


def _structured(envelope: Any) -> LoggedEvent:
    if not isinstance(envelope, dict):
        raise EventError("not_a_cloudevent", "a structured CloudEvent must be a JSON object")
    if "data_base64" in envelope:
        try:
            raw = base64.b64decode(envelope["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise EventError("invalid_payload", "data_base64 is not valid base64") from None
        payload = _json(raw, "event data")
    else:
        payload = envelope.get("data")
        if isinstance(payload, str | bytes):
            payload = _json(payload, "event data")
    attrs = {k.lower(): v for k, v in envelope.items() if k not in ("data", "data_base64")}
    return _event(attrs, payload)


# --- payloads -> columns --------------------------------------------------------------------------------

def _tensor_rows(tensor: Mapping[str, Any]) -> tuple[list[int], Column]:
    shape = tensor.get("shape")
    data = tensor.get("data")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape) or not shape:
        raise EventError("invalid_payload", f"tensor {tensor.get('name')!r}: shape must be a list of sizes")
    if not isinstance(data, list):
        raise EventError("invalid_payload", f"tensor {tensor.get('name')!r}: data must be a list")
    flat = _flatten(data, shape)
    size = 1
    for s in shape:
        size *= s
    if len(flat) != size:
        raise EventError("invalid_payload", f"tensor {tensor.get('name')!r}: {len(flat)} values for shape {shape}")
    return shape, flat


def _flatten(data: list[Any], shape: Sequence[int] | None = None) -> Column:
    if not data or not isinstance(data[0], list):
        return data
    if shape is not None:
        try:  # nested rows of the declared shape: numpy walks them in C
            arr = np.array(data, dtype=object)
        except ValueError:  # ragged
            arr = None
        if arr is not None and arr.shape == tuple(shape):
            flat: npt.NDArray[Any] = arr.reshape(-1)
            return flat
    out: list[Any] = []
    stack = [data]
    while stack:  # iterative, row-major
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _is_v2_tensors(value: Any) -> TypeGuard[list[dict[str, Any]]]:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, dict) and "data" in t and "shape" in t for t in value)


def request_columns(payload: Any, features: Sequence[str], max_rows: int) -> tuple[int, dict[str, list[Any]]]:
    """Rows of a V1 or V2 request as raw columns (feature name -> list of values), in reference feature order.

    The list form of `request_arrays` (tests and callers that want plain values).
    """
    n, cols = request_arrays(payload, features, max_rows)
    return n, {f: c.tolist() if isinstance(c, np.ndarray) else list(c) for f, c in cols.items()}


def request_arrays(payload: Any, features: Sequence[str], max_rows: int) -> tuple[int, dict[str, Column]]:
    """Rows of a V1 or V2 request as raw columns (feature name -> values), in reference feature order.

    Columns are lists or numpy arrays: positional rows and nested tensors are split by numpy, not by a
    Python loop per value (issue 19).

    Positional rows/tensors must have one value per reference feature; named ones (dict rows, one V2
    tensor per feature, TF-style column dicts) may omit features (missing values) and carry extra keys.
    """
    if not isinstance(payload, dict):
        raise EventError("invalid_payload", "the inference request body must be a JSON object")
    if "instances" in payload:
        return _rows_to_columns(payload["instances"], features, max_rows)
    inputs = payload.get("inputs")
    if _is_v2_tensors(inputs):
        return _v2_columns(inputs, features, max_rows)
    if isinstance(inputs, dict):  # TF-serving columnar V1: {"inputs": {"f1": [...], ...}}
        return _named_columns(inputs, features, max_rows)
    if isinstance(inputs, list):
        return _rows_to_columns(inputs, features, max_rows)
    raise EventError("invalid_payload", "request has neither 'instances' (V1) nor 'inputs' (V2)")


def _check_rows(n: int, max_rows: int) -> None:
    if n > max_rows:
        raise EventError("too_many_rows", f"{n} rows in one event; the limit is {max_rows}")
    if n == 0:
        raise EventError("invalid_payload", "no rows in the payload")


def _rows_to_columns(rows: Any, features: Sequence[str], max_rows: int) -> tuple[int, dict[str, Column]]:
    if not isinstance(rows, list):
        raise EventError("invalid_payload", "instances must be a list of rows")
    _check_rows(len(rows), max_rows)
    nf = len(features)
    if all(isinstance(r, dict) for r in rows):
        return len(rows), {f: [r.get(f) for r in rows] for f in features}
    if all(isinstance(r, list) for r in rows):
        if len(rows) > 1:
            try:
                block = np.array(rows, dtype=object)
            except ValueError:  # ragged: the loop below names the bad row
                block = None
            if block is not None and block.shape == (len(rows), nf):
                return len(rows), {f: block[:, j] for j, f in enumerate(features)}
        for i, r in enumerate(rows):
            if len(r) != nf:
                raise EventError("invalid_payload",
                                 f"row {i} has {len(r)} values; the reference has {nf} features")
        return len(rows), {f: [r[j] for r in rows] for j, f in enumerate(features)}
    if nf == 1 and not any(isinstance(r, list | dict) for r in rows):
        return len(rows), {features[0]: list(rows)}
    raise EventError("invalid_payload", "rows must all be lists (positional) or all objects (by name)")


def _named_columns(cols: Mapping[str, Any], features: Sequence[str],
                   max_rows: int) -> tuple[int, dict[str, Column]]:
    lengths = {len(v) for v in cols.values() if isinstance(v, list)}
    if len(lengths) != 1 or not all(isinstance(v, list) for v in cols.values()):
        raise EventError("invalid_payload", "columnar inputs must be lists of one length")
    n = lengths.pop()
    _check_rows(n, max_rows)
    if not any(f in cols for f in features):
        raise EventError("invalid_payload", "none of the reference features is among the inputs")
    return n, {f: list(cols[f]) if f in cols else [None] * n for f in features}


def _v2_columns(tensors: list[dict[str, Any]], features: Sequence[str],
                max_rows: int) -> tuple[int, dict[str, Column]]:
    nf = len(features)
    by_name = {str(t.get("name")): t for t in tensors}
    if len(tensors) == 1 and tensors[0].get("name") not in features:
        shape, flat = _tensor_rows(tensors[0])
        if (len(shape) == 2 and shape[1] == nf) or (len(shape) == 1 and nf == 1):
            n = shape[0]
        else:
            raise EventError("invalid_payload",
                             f"tensor shape {shape} does not match the reference's {nf} features")
        _check_rows(n, max_rows)
        return n, {f: flat[j::nf] for j, f in enumerate(features)}
    named = [f for f in features if f in by_name]
    if not named:
        raise EventError("invalid_payload", "no input tensor is named after a reference feature")
    cols: dict[str, Column] = {}
    n = -1
    for f in named:
        shape, flat = _tensor_rows(by_name[f])
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise EventError("invalid_payload", f"tensor {f!r}: per-feature tensors must have shape [N] or [N, 1]")
        if n not in (-1, shape[0]):
            raise EventError("invalid_payload", "per-feature tensors have different row counts")
        n = shape[0]
        cols[f] = flat
    _check_rows(n, max_rows)
    return n, {f: cols.get(f, [None] * n) for f in features}


def _label(value: Any, classification: bool) -> Any:
    """One prediction: class probabilities -> argmax for a classifier, first value for a regressor."""
    if isinstance(value, list):
        if not value:
            return None
        if classification and len(value) > 1 and all(isinstance(v, int | float) for v in value):
            return max(range(len(value)), key=lambda i: value[i])
        return value[0]
    if isinstance(value, dict):
        return None
    return value


def response_predictions(payload: Any, classification: bool) -> list[Any]:
    """Predictions of a V1 (``predictions``) or V2 (first output tensor) response, one per row."""
    values: list[Any] = prediction_array(payload, classification).tolist()
    return values


def _numeric_labels(values: Any, classification: bool) -> npt.NDArray[Any] | None:
    """Labels of a numeric block in C: a value per row, or per row the argmax (classifier) / first value."""
    try:
        block = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if block.ndim == 1:
        return np.asarray(values)  # keep ints ints: categorical predictions are keyed by their text
    if block.ndim != 2 or block.shape[1] == 0:
        return None
    labels: npt.NDArray[Any] = np.argmax(block, axis=1) if classification and block.shape[1] > 1 else block[:, 0]
    return labels


def prediction_array(payload: Any, classification: bool) -> npt.NDArray[Any]:
    """`response_predictions` as an array; numeric blocks are labelled by numpy, not per row (issue 19)."""
    preds = _prediction_values(payload)
    if isinstance(preds, tuple):  # a V2 [N, C] tensor: (flat, width)
        flat, width = preds
        if width and len(flat) >= 2:
            labels = _numeric_labels(np.asarray(flat).reshape(-1, width), classification)
            if labels is not None:
                return labels
        out = np.empty(len(flat) // width if width else 0, dtype=object)
        out[:] = [_label(list(flat[i * width:(i + 1) * width]), classification) for i in range(len(out))]
        return out
    if len(preds) >= 2 and not isinstance(preds[0], dict | str):
        labels = _numeric_labels(preds, classification)
        if labels is not None and labels.shape == (len(preds),):
            return labels
    out = np.empty(len(preds), dtype=object)
    out[:] = [_label(p, classification) for p in preds]
    return out


def _prediction_values(payload: Any) -> Column | tuple[Column, int]:
    """The raw per-row predictions, or (flat values, row width) of a V2 [N, C] tensor."""
    if not isinstance(payload, dict):
        raise EventError("invalid_payload", "the inference response body must be a JSON object")
    if "predictions" in payload:
        preds = payload["predictions"]
        if not isinstance(preds, list):
            raise EventError("invalid_payload", "predictions must be a list")
        return preds
    outputs = payload.get("outputs")
    if _is_v2_tensors(outputs):
        shape, flat = _tensor_rows(outputs[0])
        if len(shape) == 1:
            return flat
        if len(shape) == 2:
            return flat, shape[1]
        raise EventError("invalid_payload", f"output tensor shape {shape}: expected [N] or [N, C]")
    raise EventError("invalid_payload", "response has neither 'predictions' (V1) nor 'outputs' (V2)")
