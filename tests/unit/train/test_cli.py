import json

import pytest
import typer
from typer.testing import CliRunner

from modelops_pipelines.cli import register

pytestmark = pytest.mark.unit


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # keep typer in multi-command mode
    return app


def test_generate_data_command(tmp_path):
    out = tmp_path / "c.parquet"
    res = CliRunner().invoke(_app(), ["generate-data", "--out", str(out), "--rows", "300", "--shift", "0.5"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["rows"] == 300 and out.exists()


def test_invalid_spec_exits_2_with_a_failed_result(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("modelName: m\ndataset: {uri: /x.csv, target: y, task: clustering}\n")
    log = tmp_path / "term"
    res = CliRunner().invoke(_app(), ["train", "--spec", str(spec), "--termination-log", str(log)])
    assert res.exit_code == 2
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["status"] == "failed" and "dataset.task" in result["message"]
    assert json.loads(log.read_text()) == result


def test_bad_dataset_fails_before_mlflow_is_contacted(tmp_path, monkeypatch):
    # No tracking server exists at this URI: a dataset error must be reported without touching it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"modelName": "m", "dataset": {"uri": str(csv), "target": "y",
                                                              "task": "classification"}}))
    res = CliRunner().invoke(_app(), ["train", "--spec", str(spec), "--termination-log", str(tmp_path / "t")])
    assert res.exit_code == 2
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["status"] == "failed" and "target column 'y' is not in the dataset" in result["message"]
    assert result["datasetHash"].startswith("sha256:") and result["version"] is None
