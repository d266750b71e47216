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


def test_invalid_spec_message_is_one_line_per_field_without_pydantic_boilerplate(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("modelName: 'bad name'\ndataset: {uri: 'ftp://h/x.csv', target: y, task: regression}\n")
    res = CliRunner().invoke(_app(), ["train", "--spec", str(spec), "--termination-log", str(tmp_path / "t")])
    assert res.exit_code == 2
    message = json.loads(res.stdout.strip().splitlines()[-1])["message"]
    assert message == (f"invalid spec {spec}: modelName: 'bad name' must start with a letter or digit and contain "
                       "only letters, digits, '.', '_' and '-'; dataset.uri: 'ftp://h/x.csv' must be a path "
                       "(absolute, or relative to the spec file) or a file://, s3:// or http(s):// URL")


def test_waiting_says_what_and_repeats_while_the_step_blocks():
    import threading

    from modelops_pipelines.progress import waiting

    lines: list[str] = []
    beat = threading.Event()

    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("still"):
            beat.set()

    with waiting(say, "connecting to X", every=0.01):
        assert beat.wait(10)
    n = len(lines)
    assert lines[0] == "connecting to X ..." and lines[1].startswith("still connecting to X (")
    beat.clear()
    assert not beat.wait(0.1) and len(lines) == n  # the heartbeat stops with the step


def test_an_unresponsive_tracking_server_is_named_while_the_trainer_waits(tmp_path, monkeypatch):
    """First contact with MLflow can block for minutes: the trainer says it is connecting, and to what."""
    import socket

    from modelops_pipelines import progress
    from modelops_pipelines.spec import TrainSpec
    from modelops_pipelines.train import EXIT_FAILED, train

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections (the kernel does), never answers
    uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.3)
    from modelops_pipelines.generate import generate_churn

    generate_churn(rows=300, seed=1).to_csv(tmp_path / "d.csv", index=False)
    spec = TrainSpec.model_validate({"modelName": "m", "dataset": {"uri": str(tmp_path / "d.csv"),
                                                                   "target": "churn", "task": "classification"}})
    lines: list[str] = []
    try:
        _, code = train(spec, tracking_uri=uri, progress=lines.append)
    finally:
        listener.close()
    assert code == EXIT_FAILED
    assert f"connecting to the MLflow tracking server {uri} ..." in lines
    assert any(line.startswith(f"still connecting to the MLflow tracking server {uri} (") for line in lines), lines
    assert not any("no MLflow tracking server set" in line for line in lines)  # a server was given
