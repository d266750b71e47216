"""Regression and multi-class trains; a dataset served over HTTP with a time-ordered split."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from modelops_pipelines.train import train
from tests.integration.train.helpers import spec, write_dataset

pytestmark = pytest.mark.integration


@pytest.fixture()
def http_dir(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _download(client, name: str, version: str, dst: Path) -> Path:
    mlflow.set_tracking_uri(client.tracking_uri)
    source = client.get_model_version(name, version).source
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst)))


def test_regression_over_http_with_time_ordered_split(mlflow_server, client, http_dir):
    directory, base_url = http_dir
    path, target = write_dataset("diabetes", directory)
    frame = pd.read_csv(path)
    frame.insert(0, "visit_date", pd.date_range("2024-01-01", periods=len(frame), freq="D").astype(str))
    frame.to_csv(path, index=False)
    s = spec("diabetes", f"{base_url}/{path.name}", target, "regression",
             dataset={"timeColumn": "visit_date"}, search={"trials": 5})
    result, code = train(s, tracking_uri=mlflow_server.uri)
    assert code == 0 and result["status"] == "succeeded", result["message"]
    assert result["metric"]["name"] == "rmse" and 30 < result["metric"]["value"] < 90
    assert set(result["metrics"]) == {"rmse", "mae", "r2"}
    plots = {a.path for a in client.list_artifacts(result["runId"], "plots")}
    assert plots == {"plots/residuals.png", "plots/feature_importance.png"}
    model_dir = _download(client, "diabetes", result["version"], directory / "dl")
    meta = json.loads((model_dir / "modelops.json").read_text())
    assert meta["task"] == "regression" and meta["classes"] is None
    assert "visit_date" not in [f["name"] for f in meta["features"]]  # the time column is not a feature
    profile = json.loads((model_dir / "reference_profile.json").read_text())
    assert profile["task"] == "regression" and profile["prediction"]["type"] == "numeric"
    cal = profile["calibration"]  # issue 17: DLE trees fitted on the held-out split, as plain numbers
    assert cal["kind"] == "regression" and cal["method"] == "dle" and set(cal["features"]) <= set(profile["features"])
    assert cal["abs"]["trees"] and cal["sq"]["trees"]


def test_multiclass(mlflow_server, client, tmp_path):
    path, target = write_dataset("wine", tmp_path, fmt="parquet")
    s = spec("wine", path, target, "classification", search={"trials": 5, "metric": "logloss"},
             promotion={"metric": "accuracy"})
    result, code = train(s, tracking_uri=mlflow_server.uri)
    assert code == 0 and result["status"] == "succeeded", result["message"]
    assert result["metric"]["name"] == "accuracy" and result["metric"]["value"] > 0.85
    parent = client.get_run(result["runId"])
    assert parent.data.params["classes"] == "3" and "best_valid_logloss" in parent.data.metrics
    model_dir = _download(client, "wine", result["version"], tmp_path / "dl")
    meta = json.loads((model_dir / "modelops.json").read_text())
    assert meta["classes"] == [0, 1, 2] and meta["metric"]["name"] == "accuracy"
    model = mlflow.sklearn.load_model(str(model_dir))
    features = [f["name"] for f in meta["features"]]
    proba = model.predict_proba(pd.read_parquet(path)[features].head(10))
    assert proba.shape == (10, 3)
