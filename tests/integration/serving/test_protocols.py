"""V1, V2 REST and gRPC against the real server equal in-process predictions; the kserve SDK clients work."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.integration.serving import model_dirs as md

pytestmark = pytest.mark.integration

ROWS = 40


def rows_for(served: Any) -> pd.DataFrame:
    if served.key == "booster":
        x, _ = md.numeric_data(ROWS, 10, seed=11)
        return pd.DataFrame(x.astype(np.float64), columns=[f"f{i}" for i in range(10)])
    return md.frame(ROWS, seed=11, missing=served.key != "linear_strict")


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v.item() if hasattr(v, "item") else v)
             for k, v in r.items()} for r in df.to_dict(orient="records")]


def v2_inputs(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for name in df.columns:
        col = df[name]
        if col.dtype == object:
            out.append({"name": name, "datatype": "BYTES", "shape": [len(df)],
                        "data": [None if isinstance(v, float) else v for v in col.tolist()]})
        elif col.dtype.kind == "i":
            out.append({"name": name, "datatype": "INT64", "shape": [len(df), 1], "data": col.tolist()})
        else:
            out.append({"name": name, "datatype": "FP64", "shape": [len(df)],
                        "data": [None if math.isnan(v) else v for v in col.tolist()]})
    return out


def in_process(served: Any, df: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray]:
    """(probabilities or None, labels-or-values) from the original model loaded with MLflow."""
    contract = json.loads((served.model_dir / "modelops.json").read_text())
    if served.key == "booster":
        import mlflow.xgboost
        import xgboost as xgb

        booster = mlflow.xgboost.load_model(str(served.model_dir))
        p = booster.predict(xgb.DMatrix(df.to_numpy(np.float32), feature_names=list(df.columns)))
        proba = np.column_stack([1 - p, p]).astype(np.float64)
        return proba, np.asarray(contract["classes"])[proba.argmax(axis=1)]
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(str(served.model_dir))
    frame = df.copy()
    if contract["task"] == "regression":
        return None, np.asarray(model.predict(frame), dtype=np.float64)
    proba = np.asarray(model.predict_proba(frame), dtype=np.float64)
    return proba, np.asarray(contract["classes"], dtype=object)[proba.argmax(axis=1)]


def check(served: Any, df: pd.DataFrame, proba: Any, labels_or_values: Any) -> None:
    ref_proba, ref = in_process(served, df)
    fast = served.key != "rf_regression_fallback"
    tol = 1e-5 if fast else 0.0
    if ref_proba is None:
        got = np.asarray(labels_or_values, dtype=np.float64)
        assert np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref))) <= tol
    else:
        assert np.max(np.abs(np.asarray(proba, dtype=np.float64).reshape(ref_proba.shape) - ref_proba)) <= tol
        assert [str(x) for x in labels_or_values] == [str(x) for x in ref]


@pytest.mark.parametrize("key", ["xgb_binary", "hgb_multiclass", "rf_regression_fallback", "linear_strict",
                                 "booster"])
def test_v1_v2_grpc_equal_in_process(servers: dict[str, Any], key: str) -> None:
    s = servers[key]
    df = rows_for(s)
    with httpx.Client(timeout=30) as c:
        r1 = c.post(s.url(f"/v1/models/{s.name}:predict"), json={"instances": records(df)})
        assert r1.status_code == 200, r1.text
        v1 = r1.json()
        check(s, df, v1.get("probabilities"), v1["predictions"])
        # rows as lists in feature order answer the same
        r1b = c.post(s.url(f"/v1/models/{s.name}:predict"),
                     json={"instances": [list(r.values()) for r in records(df)]})
        assert r1b.json() == v1

        r2 = c.post(s.url(f"/v2/models/{s.name}/infer"), json={"id": "req-1", "inputs": v2_inputs(df)})
        assert r2.status_code == 200, r2.text
        v2 = r2.json()
        assert v2["id"] == "req-1" and v2["model_name"] == s.name
        outs = {o["name"]: o for o in v2["outputs"]}
        check(s, df, outs.get("predict_proba", {}).get("data"), outs["predict"]["data"])
        assert outs["predict"]["data"] == v1["predictions"]
        if "probabilities" in v1:
            assert np.array_equal(np.asarray(outs["predict_proba"]["data"]).reshape(len(df), -1),
                                  np.asarray(v1["probabilities"]))
        assert r1.headers["x-model-version"] == r2.headers["x-model-version"] != ""
        assert r1.headers["x-model-run-id"].startswith("run-")

    if s.key == "linear_strict" or s.key == "booster" or not df.isna().any().any():
        grpc_df = df
    else:  # typed protobuf contents cannot carry a null: send complete rows over gRPC
        grpc_df = df.dropna().reset_index(drop=True)
    labels, proba = asyncio.run(_grpc_infer(s, grpc_df))
    check(s, grpc_df, proba, labels)
    if "probabilities" in v1 and len(grpc_df) == len(df):
        assert np.array_equal(np.asarray(proba).reshape(len(df), -1), np.asarray(v1["probabilities"]))


async def _grpc_infer(s: Any, df: pd.DataFrame) -> tuple[list[Any], list[float] | None]:
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    inputs = []
    for name in df.columns:
        col = df[name]
        if col.dtype == object:
            inputs.append(InferInput(name, [len(df)], "BYTES", [str(v) for v in col]))
        elif col.dtype.kind == "i":
            inputs.append(InferInput(name, [len(df)], "INT64", [int(v) for v in col]))
        else:
            inputs.append(InferInput(name, [len(df)], "FP64", [float(v) for v in col]))
    client = InferenceGRPCClient(s.grpc, timeout=30)
    try:
        assert await client.is_server_ready()
        assert await client.is_model_ready(s.name)
        res = await client.infer(InferRequest(model_name=s.name, infer_inputs=inputs, request_id="g-1"))
    finally:
        await client.close()
    assert res.id == "g-1"
    outs = {o.name: o for o in res.outputs}
    labels = [x.decode() if isinstance(x, bytes) else x for x in outs["predict"].data]
    proba = outs["predict_proba"].data if "predict_proba" in outs else None
    return labels, proba


def test_kserve_sdk_rest_clients(servers: dict[str, Any]) -> None:
    """The SDK's REST client, V1 and V2, JSON and the binary data extension."""
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    s = servers["hgb_multiclass"]
    df = md.frame(5, seed=3, missing=False)

    async def go() -> None:
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=30))
        try:
            json_inputs = [InferInput("age", [5], "FP64", df.age.tolist()),
                           InferInput("visits", [5], "INT64", df.visits.tolist()),
                           InferInput("plan", [5], "BYTES", df.plan.tolist()),
                           InferInput("region", [5], "BYTES", df.region.tolist())]
            r = await v2.infer(s.http, InferRequest(model_name=s.name, infer_inputs=json_inputs), model_name=s.name)
            labels_json = list(r.outputs[0].data)
            binary = [InferInput("age", [5], "FP64"), InferInput("visits", [5], "INT64"),
                      InferInput("plan", [5], "BYTES"), InferInput("region", [5], "BYTES")]
            binary[0].set_data_from_numpy(df.age.to_numpy(np.float64), binary_data=True)
            binary[1].set_data_from_numpy(df.visits.to_numpy(np.int64), binary_data=True)
            binary[2].set_data_from_numpy(df.plan.to_numpy(object), binary_data=True)
            binary[3].set_data_from_numpy(df.region.to_numpy(object), binary_data=True)
            rb = await v2.infer(s.http, InferRequest(model_name=s.name, infer_inputs=binary), model_name=s.name)
            assert list(rb.outputs[0].data) == labels_json
            r1 = await v1.infer(s.http, {"instances": records(df)}, model_name=s.name)
            assert r1["predictions"] == labels_json
            assert set(labels_json) <= set(md.MULTI_CLASSES)
            assert await v2.is_server_ready(s.http) and await v2.is_model_ready(s.http, s.name)
            assert await v2.is_server_live(s.http)
        finally:
            await v1.close()
            await v2.close()

    asyncio.run(go())


def test_metadata_reports_version_and_fast_path(servers: dict[str, Any]) -> None:
    fast = httpx.get(servers["hgb_multiclass"].url("/v2/models/tiers")).json()
    assert fast["versions"] == ["7"]
    assert fast["parameters"]["fast_path"] is True and fast["parameters"]["backend"] == "onnxruntime"
    assert fast["parameters"]["parity_max_diff"] <= 1e-5
    assert [i["name"] for i in fast["inputs"]] == ["age", "visits", "plan", "region"]
    assert {o["name"] for o in fast["outputs"]} == {"predict", "predict_proba"}
    slow = httpx.get(servers["rf_regression_fallback"].url("/v2/models/spend")).json()
    assert slow["parameters"]["fast_path"] is False and slow["parameters"]["backend"] == "sklearn"
    assert "FunctionTransformer" in slow["parameters"]["fast_path_reason"]
    assert "fast path not used" in servers["rf_regression_fallback"].log.read_text()

    async def grpc_md() -> Any:
        import grpc
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
        from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

        async with grpc.aio.insecure_channel(servers["hgb_multiclass"].grpc) as ch:
            return await GRPCInferenceServiceStub(ch).ModelMetadata(pb.ModelMetadataRequest(name="tiers"))

    md_resp = asyncio.run(grpc_md())
    assert list(md_resp.versions) == ["7"] and md_resp.platform.endswith("onnxruntime")


def test_prometheus_metrics(servers: dict[str, Any]) -> None:
    s = servers["xgb_binary"]
    df = md.frame(3, seed=5, missing=False)
    httpx.post(s.url("/v1/models/churn:predict"), json={"instances": [{"x": 1}]})
    assert httpx.post(s.url("/v2/models/churn/infer"), json={"inputs": v2_inputs(df)}).status_code == 200
    asyncio.run(_grpc_infer(s, df))
    text = httpx.get(s.url("/metrics")).text
    assert 'modelops_serving_requests_total{model="churn",protocol="v1",status="200",version="3"}' in text
    assert 'protocol="v1",status="422"' in text
    assert 'protocol="grpc",status="OK"' in text
    assert 'modelops_serving_request_duration_seconds_bucket{le="0.0005",model="churn",protocol="v2",status="200"' \
        in text
    assert 'modelops_serving_fast_path{backend="onnxruntime",model="churn",version="3"} 1.0' in text
    assert 'modelops_serving_model_info{backend="onnxruntime",family="xgboost",model="churn",run_id="run-xgboost-3"' \
        in text
