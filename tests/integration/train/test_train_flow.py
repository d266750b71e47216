"""`modelops train` against a real MLflow server: registration, trials, artifacts, tags, gate, failures."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from modelops.formats.reference_profile import read_profile
from modelops_pipelines.generate import generate_churn
from modelops_pipelines.train import train
from tests.integration.train.helpers import spec, write_dataset

pytestmark = pytest.mark.integration

RESULT_KEYS = {"status", "modelName", "version", "runId", "metric", "champion", "verdict", "message", "trials",
               "datasetUri", "datasetHash"}


def _cli(args: list[str], tracking_uri: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    modelops = str(Path(sys.executable).with_name("modelops"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    return subprocess.run([modelops, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def _model_dir(client, version, dst: Path) -> Path:
    mlflow.set_tracking_uri(client.tracking_uri)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(dst)))


def _trial_runs(client, run_id: str):
    parent = client.get_run(run_id)
    return client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'",
                              max_results=1000, order_by=["attributes.start_time ASC"])


def test_cli_train_registers_a_version_with_trial_runs_artifacts_tags_and_model_layout(mlflow_server, client,
                                                                                       tmp_path):
    data, target = write_dataset("breast_cancer", tmp_path)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec("bc-cli", data, target, "classification").model_dump(
        by_alias=True, exclude_none=True)))
    term = tmp_path / "termination-log"
    proc = _cli(["train", "--spec", str(spec_file), "--termination-log", str(term)], mlflow_server.uri, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    assert term.read_text() == last and len(last.encode()) <= 4096  # the termination message, same JSON
    assert result.keys() >= RESULT_KEYS
    assert result["status"] == "succeeded" and result["verdict"] == "passed" and result["version"] == "1"
    assert result["champion"] is None and result["trials"] == 6 and result["metric"]["name"] == "auc"
    assert result["datasetHash"] == "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    assert "trial 6/6" in proc.stderr  # progress while searching goes to stderr

    # One parent run, one nested run per trial, with params, metric and duration.
    trials = _trial_runs(client, result["runId"])
    assert len(trials) == 6
    for run in trials:
        assert run.data.params["family"] in ("hist_gradient_boosting", "xgboost", "linear")
        assert "valid_auc" in run.data.metrics and "duration_s" in run.data.metrics
        assert run.info.status in ("FINISHED", "KILLED")  # KILLED = pruned
    parent = client.get_run(result["runId"])
    assert parent.data.metrics["test_auc"] == pytest.approx(result["metric"]["value"])
    assert parent.data.params["n_jobs"] and parent.data.tags["modelops.dev/verdict"] == "passed"
    artifacts = {a.path for a in client.list_artifacts(result["runId"])}
    assert {"spec.json", "validation_report.json", "feature_importance.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(result["runId"], "plots")}
    assert plots == {"plots/roc_pr_curves.png", "plots/confusion_matrix.png", "plots/feature_importance.png"}

    # Registry: version tags and the challenger alias.
    version = client.get_model_version("bc-cli", "1")
    assert version.run_id == result["runId"]
    tags = version.tags
    assert tags["modelops.dev/verdict"] == "passed" and tags["modelops.dev/trials"] == "6"
    assert tags["modelops.dev/dataset-uri"] == str(data)
    assert tags["modelops.dev/dataset-sha256"] == result["datasetHash"].removeprefix("sha256:")
    assert tags["modelops.dev/code-version"] and float(tags["modelops.dev/test.auc"]) > 0.9
    assert client.get_registered_model("bc-cli").aliases == {"challenger": "1"}

    # The registered source is the directory KServe's storage initializer copies: three files we promise.
    model_dir = _model_dir(client, version, tmp_path / "dl")
    assert {"MLmodel", "reference_profile.json", "modelops.json"} <= {p.name for p in model_dir.iterdir()}
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert "sklearn" in mlmodel["flavors"] and mlmodel["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    columns = [c["name"] for c in json.loads(mlmodel["signature"]["inputs"])]
    frame = pd.read_csv(data)
    features = [c for c in frame.columns if c != target]
    assert columns == features
    meta = json.loads((model_dir / "modelops.json").read_text())
    assert meta["task"] == "classification" and meta["target"] == target and meta["classes"] == [0, 1]
    assert [f["name"] for f in meta["features"]] == features and meta["runId"] == result["runId"]
    assert meta["metric"] == result["metric"] and meta["modelName"] == "bc-cli"
    profile = read_profile(model_dir)
    assert list(profile["features"]) == features and profile["prediction"]["type"] == "categorical"
    # issue 17: the calibrator of the held-out split, for the exporter's label-free estimates (CBPE)
    cal = profile["calibration"]
    assert cal["kind"] == "classification" and cal["method"] == "isotonic" and cal["classes"] == [0, 1]
    assert cal["positive_class"] == 1 and len(cal["x"]) == len(cal["y"]) >= 2
    requirements = (model_dir / "requirements.txt").read_text()
    assert "scikit-learn==" in requirements and "mlflow==" in requirements
    model = mlflow.sklearn.load_model(str(model_dir))
    assert set(np.unique(model.predict(frame[features].head(50)))) <= {0, 1}


def test_second_train_that_does_not_beat_the_champion_is_registered_not_promoted(mlflow_server, client, tmp_path):
    frame = generate_churn(1200, seed=11, missing_rate=0.03)  # categoricals and missing values
    path = tmp_path / "churn.parquet"
    frame.to_parquet(path, index=False)
    s = spec("churn-gate", path, "churn", "classification")
    first, code = train(s, tracking_uri=mlflow_server.uri)
    assert code == 0 and first["status"] == "succeeded" and first["version"] == "1", first["message"]
    client.set_registered_model_alias("churn-gate", "champion", "1")  # what a finished rollout does

    second, code = train(s, tracking_uri=mlflow_server.uri)
    assert code == 0, second["message"]
    assert second["status"] == "gate_failed" and second["verdict"] == "failed" and second["version"] == "2"
    # Same seed, same data: the same model, scored on the same held-out split as the champion -> a tie.
    assert second["metric"] == first["metric"]
    assert second["champion"] == {"version": "1", "value": pytest.approx(first["metric"]["value"])}
    assert "does not beat the champion" in second["message"]
    model = client.get_registered_model("churn-gate")
    assert model.aliases == {"challenger": "1", "champion": "1"}  # not promoted
    v2 = client.get_model_version("churn-gate", "2")
    assert v2.tags["modelops.dev/verdict"] == "failed" and v2.tags["modelops.dev/champion-version"] == "1"

    # Determinism: the same seed gives the same trials, trial by trial.
    values = [[r.data.metrics.get("valid_auc") for r in _trial_runs(client, res["runId"])] for res in (first, second)]
    assert values[0] == values[1] and len(values[0]) == 6


def test_approval_policy_holds_a_passing_version(mlflow_server, client, tmp_path):
    data, target = write_dataset("breast_cancer", tmp_path, fmt="parquet")
    s = spec("bc-approval", data, target, "classification", promotion={"requireApproval": True},
             search={"trials": 3, "families": ["linear"]})
    result, code = train(s, tracking_uri=mlflow_server.uri)
    assert code == 0 and result["status"] == "awaiting_approval" and result["verdict"] == "passed"
    assert client.get_model_version("bc-approval", result["version"]).tags["modelops.dev/approval"] == "pending"
    assert client.get_registered_model("bc-approval").aliases == {}


@pytest.mark.parametrize("case, fragment", [
    ("missing-target", "target column 'churn' is not in the dataset"),
    ("constant-target", "target column 'churn' is constant"),
    ("unreadable", "is not readable as parquet"),
])
def test_bad_dataset_exits_non_zero_with_a_clear_message_and_registers_nothing(mlflow_server, client, tmp_path,
                                                                               monkeypatch, case, fragment):
    frame = generate_churn(300, seed=1)
    path = tmp_path / "data.parquet"
    if case == "missing-target":
        frame.drop(columns="churn").to_parquet(path, index=False)
    elif case == "constant-target":
        frame.assign(churn=0).to_parquet(path, index=False)
    else:
        path.write_bytes(b"this is not a parquet file")
    name = f"bad-{case}"
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec(name, path, "churn", "classification").model_dump_json(by_alias=True))
    args = ["train", "--spec", str(spec_file), "--termination-log", str(tmp_path / "t")]
    if case == "unreadable":  # one case through a real process: exit status and stdout as the Job sees them
        proc = _cli(args, mlflow_server.uri, tmp_path)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:  # the others in-process (a new interpreter costs ~10 s on a busy machine)
        from typer.testing import CliRunner

        from modelops.cli import app

        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
        res = CliRunner().invoke(app, args)
        code, stdout, stderr = res.exit_code, res.stdout, res.stderr
    assert code == 2, stderr[-2000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["status"] == "failed" and fragment in result["message"] and result["version"] is None
    assert fragment in stderr
    assert json.loads((tmp_path / "t").read_text()) == result
    assert client.search_registered_models(f"name = '{name}'") == []
    assert client.get_experiment_by_name(f"it-{name}") is None  # failed before any tracking


def test_registration_is_idempotent_per_run_and_per_run_key(mlflow_server, client, tmp_path):
    from modelops_pipelines.registry import register_version

    data, target = write_dataset("breast_cancer", tmp_path)
    s = spec("bc-idem", data, target, "classification", search={"trials": 2, "families": ["linear"]})
    first, code = train(s, tracking_uri=mlflow_server.uri, run_key="retrain-bc-idem-001")
    assert code == 0 and first["version"] == "1"
    version = client.get_model_version("bc-idem", "1")
    again, created = register_version(client, "bc-idem", source=version.source, run_id=first["runId"],
                                      model_id=None, tags={"modelops.dev/extra": "x"})
    assert not created and again.version == "1"

    # A restarted Job (same run key) reports the version instead of training and registering again.
    second, code = train(s, tracking_uri=mlflow_server.uri, run_key="retrain-bc-idem-001")
    assert code == 0 and second["version"] == "1" and second["status"] == "succeeded"
    assert "already registered" in second["message"] and second["runId"] == first["runId"]
    assert [v.version for v in client.search_model_versions("name = 'bc-idem'")] == ["1"]
