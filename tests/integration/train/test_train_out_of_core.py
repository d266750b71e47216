"""A table trained out of core (MODELOPS_OUT_OF_CORE=always, small sample sizes so it really samples and
streams several chunks) registers the same artefacts and passes the same gate as an in-memory training."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from modelops.formats.reference_profile import read_profile
from modelops_pipelines import outofcore
from modelops_pipelines.generate import generate_churn
from modelops_pipelines.train import train
from tests.integration.train.helpers import spec

pytestmark = pytest.mark.integration


@pytest.fixture()
def streamed(monkeypatch):
    monkeypatch.setenv(outofcore.OUT_OF_CORE_ENV, "always")
    monkeypatch.setattr(outofcore, "SEARCH_ROWS", 1500)
    monkeypatch.setattr(outofcore, "TEST_ROWS", 700)
    monkeypatch.setattr(outofcore, "CHUNK_ROWS", 900)


def test_out_of_core_training_registers_the_same_artefacts_and_gates_against_the_champion(
        mlflow_server, client, tmp_path, streamed, monkeypatch):
    frame = generate_churn(6000, seed=5, missing_rate=0.03)
    path = tmp_path / "churn.csv"
    frame.to_csv(path, index=False)
    s = spec("ooc", path, "churn", "classification", search={"families": ["xgboost", "linear"], "trials": 4})
    lines: list[str] = []
    result, code = train(s, tracking_uri=mlflow_server.uri, progress=lines.append)
    assert code == 0 and result["status"] == "succeeded", result["message"]
    assert result["datasetHash"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert result["family"] == "xgboost" and result["metrics"]["auc"] > 0.75
    expected_train = int((outofcore.uniform(np.arange(6000), s.split.seed) >= s.split.test_fraction).sum())
    assert any(f"streaming {expected_train} training rows" in line for line in lines), lines
    parent = client.get_run(result["runId"])
    assert parent.data.params["out_of_core"] == "True" and parent.data.params["rows"] == "6000"
    mlflow.set_tracking_uri(client.tracking_uri)
    report_file = mlflow.artifacts.download_artifacts(run_id=result["runId"], artifact_path="validation_report.json",
                                                      dst_path=str(tmp_path / "rep"))
    report = json.loads(Path(report_file).read_text())
    assert report["rows_total"] == 6000 and report["out_of_core"]["rows_train"] == expected_train
    plots = {a.path for a in client.list_artifacts(result["runId"], "plots")}
    assert plots == {"plots/roc_pr_curves.png", "plots/confusion_matrix.png", "plots/feature_importance.png"}
    version = client.get_model_version("ooc", "1")
    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp_path / "dl")))
    assert {"MLmodel", "reference_profile.json", "modelops.json"} <= {p.name for p in model_dir.iterdir()}
    meta = json.loads((model_dir / "modelops.json").read_text())
    assert meta["classes"] == [0, 1] and meta["family"] == "xgboost"
    assert list(read_profile(model_dir)["features"]) == [c for c in frame.columns if c != "churn"]
    model = mlflow.sklearn.load_model(str(model_dir))
    assert set(np.unique(model.predict(frame.drop(columns=["churn"]).head(50)))) <= {0, 1}

    # The gate: the same table again, the champion scored on the same held-out rows -> a tie, not promoted.
    client.set_registered_model_alias("ooc", "champion", "1")
    second, code = train(s, tracking_uri=mlflow_server.uri)
    assert code == 0 and second["status"] == "gate_failed", second["message"]
    assert second["champion"] == {"version": "1", "value": pytest.approx(result["metric"]["value"])}
    assert second["metric"] == result["metric"]


def test_out_of_core_refuses_families_that_cannot_stream_before_touching_mlflow(mlflow_server, client, tmp_path,
                                                                                streamed):
    path = tmp_path / "churn.parquet"
    generate_churn(1500, seed=1).to_parquet(path, index=False)
    s = spec("ooc-bad", path, "churn", "classification", search={"families": ["linear"]})
    result, code = train(s, tracking_uri=mlflow_server.uri)
    assert code == 2 and "add xgboost" in result["message"]
    assert client.search_registered_models(filter_string="name = 'ooc-bad'") == []
