"""`modelops train` as a new user runs it: a spec with a relative dataset path, no tracking server set.

Two real trainings in a subprocess (the command users run), in a working directory that is not the spec's:
the first creates the local MLflow store; then the version becomes the champion and the second training
scores it (the champion download). The tests read the two Job logs (stderr).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelops_pipelines.generate import generate_churn

pytestmark = pytest.mark.integration

SPEC = """\
modelName: churn
dataset: {uri: data/churn.csv, target: churn, task: classification}
search: {trials: 3, families: [linear], timeoutSeconds: 120}
"""


@dataclass
class Run:
    code: int
    stderr: str
    result: dict


def _modelops() -> str:
    return shutil.which("modelops") or str(Path(sys.executable).parent / "modelops")


def _train(spec: Path, cwd: Path) -> Run:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_REGISTRY_URI")}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    proc = subprocess.run([_modelops(), "train", "--spec", str(spec), "--termination-log", str(cwd / "term")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    lines = proc.stdout.strip().splitlines()
    return Run(proc.returncode, proc.stderr, json.loads(lines[-1]) if lines else {})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, Run]:
    root = tmp_path_factory.mktemp("newuser")
    project, cwd = root / "project", root / "elsewhere"
    (project / "data").mkdir(parents=True)
    cwd.mkdir()
    generate_churn(rows=600, seed=3).to_csv(project / "data" / "churn.csv", index=False)
    (project / "spec.yaml").write_text(SPEC)
    first = _train(project / "spec.yaml", cwd)
    assert first.code == 0, first.stderr
    from mlflow import MlflowClient

    uri = f"sqlite:///{cwd / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("churn", "champion", "1")
    second = _train(project / "spec.yaml", cwd)
    assert second.code == 0, second.stderr
    return cwd, first, second


def test_relative_dataset_path_is_resolved_against_the_spec_file(runs):
    cwd, first, _ = runs
    expected = str((cwd.parent / "project" / "data" / "churn.csv").resolve())
    assert first.result["datasetUri"] == expected
    assert f"loading {expected}" in first.stderr


def test_without_a_tracking_uri_one_line_says_where_runs_go_and_how_to_use_a_server(runs):
    cwd, first, _ = runs
    notices = [line for line in first.stderr.splitlines() if "no MLflow tracking server set" in line]
    assert len(notices) == 1, first.stderr
    assert f"sqlite:///{cwd / 'mlflow.db'}" in notices[0] and str(cwd / "mlruns") in notices[0]
    assert "MLFLOW_TRACKING_URI=http://" in notices[0]
    assert (cwd / "mlflow.db").exists() and (cwd / "mlruns").is_dir()  # where the line said


def test_first_run_says_what_it_waits_for(runs):
    cwd, first, second = runs
    steps = [re.sub(r"^\[modelops train \+\s*[\d.]+s\] ", "", line) for line in first.stderr.splitlines()]
    expected = ["importing pandas, NumPy and scikit-learn ...", "importing MLflow ...",
                f"creating the local MLflow store sqlite:///{cwd / 'mlflow.db'} (first use: creating its "
                f"tables takes 10-30 s) ..."]
    positions = [steps.index(e) for e in expected]  # ValueError names the missing line
    assert positions == sorted(positions)
    assert f"opening the MLflow store sqlite:///{cwd / 'mlflow.db'} ..." in second.stderr  # exists now
    # the first line comes before any heavy import: it is the first thing on stderr
    assert first.stderr.splitlines()[0].endswith("importing pandas, NumPy and scikit-learn ...")


def test_job_log_has_the_trainers_progress_and_no_mlflow_noise(runs):
    _, first, second = runs
    assert second.result["champion"]["version"] == "1" and second.result["champion"]["value"] is not None
    for run in (first, second):
        assert "Downloading artifacts" not in run.stderr and "\r" not in run.stderr
        assert "exercising caution" not in run.stderr and "pip version" not in run.stderr
        assert "searching:" in run.stderr and "held-out test:" in run.stderr
    assert "scoring the champion v1" in second.stderr
