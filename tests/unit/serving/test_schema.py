"""The input contract: decoding V1 / V2 payloads into validated columns, table-driven."""

from __future__ import annotations

import asyncio
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.serving import outputs
from modelops.serving.batching import MicroBatcher, concat, split
from modelops.serving.outputs import Prediction
from modelops.serving.resources import cpu_limit
from modelops.serving.schema import (
    Batch,
    Feature,
    InputError,
    Limits,
    ModelSpec,
    decode_v1,
    decode_v2,
    features_from_contract,
    kind_of,
    split_binary_body,
)

pytestmark = pytest.mark.unit

SPEC = ModelSpec(name="m", task="classification", classes=("no", "yes"), version="2", features=(
    Feature("age", "number"), Feature("visits", "integer"), Feature("plan", "string"),
    Feature("strict", "number", nullable=False), Feature("region", "string", categories=("n", "s"))))
NUMERIC = ModelSpec(name="n", task="regression", features=(Feature("a", "number"), Feature("b", "number")))
LIMITS = Limits(max_rows=5)
ROW = {"age": 1.5, "visits": 2, "plan": "pro", "strict": 0.0, "region": "n"}


def test_records_and_lists_decode_to_the_same_columns() -> None:
    a = decode_v1({"instances": [ROW, {**ROW, "age": None, "plan": None}]}, SPEC, LIMITS)
    b = decode_v1({"instances": [list(ROW.values()), [None, 2, None, 0.0, "n"]]}, SPEC, LIMITS)
    assert a.rows == b.rows == 2
    for name in SPEC.feature_names:
        assert a.columns[name].tolist() == b.columns[name].tolist() or name == "age"
    assert np.isnan(a.columns["age"][1]) and a.columns["plan"][1] is None
    assert a.columns["visits"].dtype == np.float64 and a.columns["plan"].dtype == object


@pytest.mark.parametrize(("body", "status", "field"), [
    ([], 400, None),
    ({"instances": []}, 422, "instances"),
    ({"instances": [ROW] * 6}, 422, "instances"),
    ({"instances": [{**ROW, "x": 1}]}, 422, "x"),
    ({"instances": [{k: v for k, v in ROW.items() if k != "plan"}]}, 422, "plan"),
    ({"instances": [{**ROW, "age": "1"}]}, 422, "age"),
    ({"instances": [{**ROW, "age": True}]}, 422, "age"),
    ({"instances": [{**ROW, "visits": 1.5}]}, 422, "visits"),
    ({"instances": [{**ROW, "strict": None}]}, 422, "strict"),
    ({"instances": [{**ROW, "region": "e"}]}, 422, "region"),
    ({"instances": [{**ROW, "plan": "a\x00"}]}, 422, "plan"),
    ({"instances": [{**ROW, "plan": 3}]}, 422, "plan"),
    ({"instances": [[1.0, 2]]}, 422, "instances"),
    ({"instances": [ROW, [1]]}, 400, "instances"),
    ({"instances": [ROW], "extra": 1}, 400, "extra"),
])
def test_v1_rejections_name_the_field(body: Any, status: int, field: str | None) -> None:
    with pytest.raises(InputError) as err:
        decode_v1(body, SPEC, LIMITS)
    assert err.value.status == status
    assert err.value.field == field


def tensor(name: str, dt: str, shape: list[int], data: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "datatype": dt, "shape": shape, "data": data, **extra}


def test_v2_per_column_nested_and_matrix() -> None:
    req = decode_v2({"id": "r", "outputs": [{"name": "predict"}], "inputs": [
        tensor("age", "FP64", [2, 1], [[1.0], [None]]), tensor("visits", "INT64", [2], [1, 2]),
        tensor("plan", "BYTES", [2], ["a", None]), tensor("strict", "FP32", [2], [0.5, 1]),
        tensor("region", "BYTES", [2], ["n", "s"])]}, SPEC, LIMITS)
    assert req.batch.rows == 2 and req.request_id == "r" and req.outputs == ("predict",)
    m = decode_v2({"inputs": [tensor("input-0", "FP32", [2, 2], [[1, 2], [3, 4]])]}, NUMERIC, LIMITS)
    assert m.batch.columns["a"].tolist() == [1.0, 3.0] and m.batch.columns["b"].tolist() == [2.0, 4.0]


def test_v2_binary_extension() -> None:
    raw_a = np.asarray([1.0, 2.0], dtype="<f8").tobytes()
    raw_b = np.asarray([3, 4], dtype="<i4").tobytes()
    header = {"inputs": [tensor("a", "FP64", [2], None, parameters={"binary_data_size": len(raw_a)}),
                         tensor("b", "INT32", [2], None, parameters={"binary_data_size": len(raw_b)})]}
    for t in header["inputs"]:
        del t["data"]
    req = decode_v2(header, NUMERIC, LIMITS, raw_a + raw_b)
    assert req.batch.columns["b"].tolist() == [3.0, 4.0]
    with pytest.raises(InputError):
        decode_v2(header, NUMERIC, LIMITS, raw_a)  # truncated
    body, rest = split_binary_body(b'{"x":1}abc', "7")
    assert body == b'{"x":1}' and rest == b"abc"
    with pytest.raises(InputError):
        split_binary_body(b"{}", "99")


def test_v2_binary_bytes_elements() -> None:
    spec = ModelSpec(name="s", task="regression", features=(Feature("c", "string"),))
    raw = b"".join(struct.pack("<I", len(s)) + s for s in (b"ab", b"c"))
    req = decode_v2({"inputs": [{"name": "c", "datatype": "BYTES", "shape": [2],
                                 "parameters": {"binary_data_size": len(raw)}}]}, spec, LIMITS, raw)
    assert req.batch.columns["c"].tolist() == ["ab", "c"]
    with pytest.raises(InputError):
        decode_v2({"inputs": [{"name": "c", "datatype": "BYTES", "shape": [1],
                               "parameters": {"binary_data_size": 5}}]}, spec, LIMITS, b"\x09\x00\x00\x00a")


@pytest.mark.parametrize(("inputs", "field"), [
    ([tensor("a", "FP64", [3], [1.0, 2.0])], "a"),
    ([tensor("a", "FP64", [1], [1.0]), tensor("b", "BYTES", [1], ["x"])], "b"),
    ([tensor("a", "FP64", [1], [float("inf")]), tensor("b", "FP64", [1], [1.0])], "a"),
    ([tensor("a", "FP64", [1], [1.0]), tensor("b", "FP64", [2], [1.0, 2.0])], "b"),
    ([tensor("a", "FP64", [1], [1.0]), tensor("a", "FP64", [1], [1.0])], "a"),
    ([tensor("m", "FP64", [1, 3], [1.0, 2.0, 3.0])], "m"),
    ([tensor("a", "FP64", [1], [[1.0]]), tensor("b", "FP64", [1], [1.0])], "inputs[a]"),
])
def test_v2_rejections(inputs: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(InputError) as err:
        decode_v2({"inputs": inputs}, NUMERIC, LIMITS)
    assert err.value.field == field and 400 <= err.value.status < 500


def test_features_from_contract_and_signature() -> None:
    fs = features_from_contract({"features": [{"name": "x", "dtype": "int32"}, {"name": "c", "dtype": "object"}]},
                                None)
    assert [(f.name, f.kind) for f in fs] == [("x", "integer"), ("c", "string")]
    fs = features_from_contract(None, [{"name": "x", "type": "double"}, {"name": "b", "type": "boolean"}])
    assert [f.kind for f in fs] == ["number", "boolean"]
    assert kind_of("float32") == "number"
    with pytest.raises(ValueError):
        kind_of("datetime64[ns]")


def test_outputs_v1_v2_and_metadata() -> None:
    proba = np.asarray([[0.2, 0.8], [0.6, 0.4]])
    classes = outputs.class_array(("no", "yes"))
    pred = Prediction(labels=outputs.labels_from_probabilities(proba, classes), probabilities=proba)
    assert outputs.v1_body(pred)["predictions"] == ["yes", "no"]
    body = outputs.v2_body(pred, SPEC, "m", "id-1", None)
    assert body["id"] == "id-1" and body["model_version"] == "2"
    assert [o["name"] for o in body["outputs"]] == ["predict", "predict_proba"]
    assert body["outputs"][1]["shape"] == [2, 2] and body["outputs"][0]["datatype"] == "BYTES"
    with pytest.raises(InputError):
        outputs.v2_outputs(pred, SPEC, ("logits",))
    assert outputs.label_datatype((0, 1)) == "INT64"
    assert outputs.metadata_outputs(SPEC, True)[1]["shape"] == [-1, 2]


def test_cpu_limit_from_cgroup(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_limit(tmp_path) == min(2, len(__import__("os").sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_limit(tmp_path) >= 1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cpu_limit(v1) == 1


def test_micro_batching_merges_and_splits() -> None:
    calls: list[int] = []

    def predict(batch: Batch) -> Prediction:
        calls.append(batch.rows)
        return Prediction(values=batch.columns["a"] * 2)

    async def go() -> list[Prediction]:
        batcher = MicroBatcher(predict, ThreadPoolExecutor(1), max_rows=100, max_delay=0.05)
        batches = [Batch({"a": np.asarray([float(i), float(i) + 0.5])}, 2) for i in range(3)]
        return list(await asyncio.gather(*(batcher.submit(b) for b in batches)))

    results = asyncio.run(go())
    assert calls == [6]
    assert [r.values.tolist() for r in results if r.values is not None] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    merged = concat([Batch({"a": np.ones(2)}, 2), Batch({"a": np.zeros(1)}, 1)])
    assert merged.rows == 3
    assert [p.rows for p in split(Prediction(values=np.arange(3.0)), [2, 1])] == [2, 1]


def test_numeric_block_fast_path_equals_per_column_path() -> None:
    spec = ModelSpec(name="n", task="regression", features=(Feature("a", "number"), Feature("b", "integer")))
    fast = decode_v1({"instances": [[1.5, 2], [3.0, 4]]}, spec, LIMITS)
    assert fast.matrix is not None and fast.matrix.shape == (2, 2)
    assert fast.columns["a"].tolist() == [1.5, 3.0] and fast.columns["b"].tolist() == [2.0, 4.0]
    slow = decode_v1({"instances": [[1.5, 2], [None, 4]]}, spec, LIMITS)  # a null: per-column path
    assert slow.matrix is None and np.isnan(slow.columns["a"][1])
    with pytest.raises(InputError) as err:
        decode_v1({"instances": [[1.5, 2.5]]}, spec, LIMITS)
    assert err.value.field == "b"


def test_v2_numeric_block_fast_path_equals_per_column_path() -> None:
    from modelops.serving.schema import Tensor, decode_tensors

    spec = ModelSpec(name="n", task="regression", features=(Feature("a", "number"), Feature("b", "integer")))
    for data in ([1.5, 2, 3.0, 4], np.asarray([1.5, 2, 3.0, 4], dtype=np.float32)):
        fast = decode_tensors([Tensor("input-0", "FP32", [2, 2], data)], spec, LIMITS)
        assert fast.matrix is not None and fast.matrix.shape == (2, 2) and fast.matrix.dtype == np.float64
        assert fast.columns["a"].tolist() == [1.5, 3.0] and fast.columns["b"].tolist() == [2.0, 4.0]
    # anything the block check refuses goes the per-column way: a null or NaN where allowed is missing ...
    for data in ([None, 2, 3.0, 4], np.asarray([np.nan, 2, 3.0, 4])):
        slow = decode_tensors([Tensor("input-0", "FP64", [2, 2], data)], spec, LIMITS)
        assert slow.matrix is None and np.isnan(slow.columns["a"][0])
    # ... and the errors still name the feature
    for data in ([1.0, 2.5], [1.0, True], [1.0, "2"], [float("inf"), 2], np.asarray([1.0, 2.5])):
        with pytest.raises(InputError) as err:
            decode_tensors([Tensor("input-0", "FP64", [1, 2], data)], spec, LIMITS)
        assert err.value.field in ("a", "b"), (data, err.value.field)


def test_micro_batching_stacks_numeric_blocks() -> None:
    a = decode_v1({"instances": [[1.0, 2.0]]}, NUMERIC, LIMITS)
    b = decode_v1({"instances": [[3.0, 4.0], [5.0, 6.0]]}, NUMERIC, LIMITS)
    merged = concat([a, b])
    assert merged.rows == 3 and merged.matrix is not None
    assert merged.matrix.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert merged.columns["a"].tolist() == [1.0, 3.0, 5.0] and merged.columns["b"].tolist() == [2.0, 4.0, 6.0]
    mixed = concat([a, decode_v1({"instances": [[None, 7.0]]}, NUMERIC, LIMITS)])  # a null: per-column batch
    assert mixed.matrix is None and mixed.columns["b"].tolist() == [2.0, 7.0] and np.isnan(mixed.columns["a"][1])


def test_typed_tensor_nan_is_missing_only_where_allowed() -> None:
    from modelops.serving.schema import Tensor, decode_tensors

    nullable = decode_tensors([Tensor("a", "FP64", [1], np.asarray([np.nan])),
                               Tensor("b", "FP64", [1], np.asarray([1.0]))], NUMERIC, LIMITS)
    assert np.isnan(nullable.columns["a"][0])
    strict = ModelSpec(name="s", task="regression", features=(Feature("a", "number", nullable=False),))
    with pytest.raises(InputError) as err:
        decode_tensors([Tensor("a", "FP64", [1], np.asarray([np.nan]))], strict, LIMITS)
    assert err.value.field == "a"
    with pytest.raises(InputError):
        decode_tensors([Tensor("a", "FP64", [1], np.asarray([np.inf]))], strict, LIMITS)


def _v2_general(body: Any, spec: ModelSpec, limits: Limits) -> Any:
    from modelops.serving.schema import V2Request, decode_tensors, parse_v2_json, tensors_from_json

    inputs, rid, requested = parse_v2_json(body)
    return V2Request(decode_tensors(tensors_from_json(inputs), spec, limits), rid, requested)


def _outcome(decode: Any, body: Any, spec: ModelSpec) -> Any:
    try:
        req = decode(body, spec, LIMITS)
    except InputError as exc:
        return ("error", exc.status, exc.message, exc.field)
    b = req.batch
    return ("ok", req.request_id, req.outputs, b.rows, None if b.matrix is None else repr(b.matrix.tolist()),
            {k: repr(np.asarray(v).tolist()) for k, v in b.columns.items()})  # repr: nan equals nan


def test_v2_one_block_decoding_is_the_general_decoding() -> None:
    """decode_v2 takes the usual single [N, F] tensor in one pass; its answer for any body is the general path's,
    and the bodies it does not take go that way (so every error message is the general path's)."""
    from modelops.serving.schema import _v2_one_block

    spec = ModelSpec(name="n", task="regression", features=(Feature("a", "number"), Feature("b", "integer"),
                                                            Feature("c", "number", nullable=False)))

    def t(data: Any, shape: Any = None, **extra: Any) -> dict[str, Any]:
        return {"name": "input-0", "datatype": "FP64", "shape": [len(data) // 3, 3] if shape is None else shape,
                "data": data, **extra}

    ok = [1.5, 2, 3.0, -4.0, 5, 1e300]
    bodies: list[Any] = [
        {"inputs": [t(ok)]}, {"id": "r1", "inputs": [t(ok)]}, {"inputs": [t(ok)], "outputs": [{"name": "predict"}]},
        {"inputs": [t(ok)], "outputs": []}, {"inputs": [t(ok, datatype="fp32")]}, {"inputs": [t(ok, parameters={})]},
        {"inputs": [t(ok)], "parameters": {"x": 1}},
        # refused by the one-pass check: the general path decides (an answer or an error naming the field)
        {"inputs": [t([1.5, 2.5, 3.0])]}, {"inputs": [t([None, 2, 3.0])]}, {"inputs": [t([1.0, 2, None])]},
        {"inputs": [t([1.0, True, 3.0])]}, {"inputs": [t([1.0, 2, "3"])]}, {"inputs": [t([1.0, 2, 1e400])]},
        {"inputs": [t([[1.0, 2, 3.0]])]}, {"inputs": [t([1.0, 2, 3.0], shape=[1, 2])]},
        {"inputs": [t([1.0, 2, 3.0], shape=[2, 3])]}, {"inputs": [t([1.0, 2, 3.0] * 6)]},
        {"inputs": [t([1.0, 2, 3.0], shape=[0, 3])]}, {"inputs": [t([1.0, 2, 3.0], shape=[1.0, 3])]},
        {"inputs": [t([1.0, 2, 3.0], shape=[3])]}, {"inputs": [t([1.0, 2, 3.0], datatype="BYTES")]},
        {"inputs": [t([1.0, 2, 3.0], datatype="BOOL")]}, {"inputs": [t([1.0, 2, 3.0], name="a")]},
        {"inputs": [t([1.0, 2, 3.0], parameters={"binary_data_size": 24})]},
        {"inputs": [t([1.0, 2, 3.0], parameters=[1])]}, {"inputs": [t(ok), t(ok)]},
        {"id": 3, "inputs": [t(ok)]}, {"inputs": [t(ok)], "outputs": [{"nam": "x"}]},
        {"inputs": [t(ok)], "outputs": {"name": "x"}}, {"inputs": []}, {"inputs": {}}, [], "x",
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 3]}]},
        {"inputs": [{"name": "input-0", "shape": [1, 3], "data": [1.0, 2, 3.0]}]},
    ]
    taken = 0
    for body in bodies:
        got, want = _outcome(decode_v2, body, spec), _outcome(_v2_general, body, spec)
        assert got == want, body
        taken += _v2_one_block(body, spec, LIMITS) is not None
    assert taken == 7  # the first seven bodies
    strings = ModelSpec(name="s", task="regression", features=(Feature("a", "number"), Feature("b", "string")))
    assert _v2_one_block({"inputs": [t([1.0, 2.0], shape=[1, 2])]}, strings, LIMITS) is None


def test_metrics_are_exposed_exactly_as_prometheus_client_exposes_its_own() -> None:
    """serving.metrics' lock-free counters and histograms: the same text as prometheus_client's Counter and
    Histogram given the same observations (both exposition formats; _created values aside)."""
    import re

    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    from modelops.serving.metrics import LATENCY_BUCKETS, _Family

    ours, theirs = CollectorRegistry(), CollectorRegistry()
    labels = ("model", "status")
    metrics = [
        (_Family("counter", "t_requests_total", "doc", labels, registry=ours),
         Counter("t_requests_total", "doc", labels, registry=theirs)),
        (_Family("histogram", "t_seconds", "doc", labels, buckets=LATENCY_BUCKETS, registry=ours),
         Histogram("t_seconds", "doc", labels, buckets=LATENCY_BUCKETS, registry=theirs)),
    ]
    values = [0.0, 1e-9, 0.0001, 0.00011, 0.0004, 0.021, 0.5, 4.9, 5.0, 5.1, 100.0]
    for (c_ours, c_theirs), (h_ours, h_theirs) in [metrics]:
        for i, v in enumerate(values):
            status = 200 if i % 3 else "OK"
            c_ours.labels(model="m", status=status).inc()
            c_theirs.labels(model="m", status=status).inc()
            h_ours.labels("m", status).observe(v)
            h_theirs.labels("m", status).observe(v)
        c_ours.labels(model="m", status=422).inc(2.5)
        c_theirs.labels(model="m", status=422).inc(2.5)
    for generate in (generate_latest, generate_openmetrics):
        texts = [re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", generate(r).decode()) for r in (ours, theirs)]
        assert texts[0] == texts[1]
    with pytest.raises(ValueError):
        metrics[0][0].labels(model="m", status=200).inc(-1)
