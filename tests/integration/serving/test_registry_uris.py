"""`modelops serve` run by hand on what `modelops train` registered: registry URIs, the cache, the version.

A real `mlflow server`; two real trainings register versions 1 and 2 (alias 'challenger' -> 2). The servers
are the real command in subprocesses, started from models:/ and runs:/ URIs and from a plain directory.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.mlflow_server import mlflow_server  # noqa: F401  (session fixture)
from tests.fixtures.procs import free_port, http_ok, start, stop, wait_until
from tests.integration.serving.conftest import modelops_cmd

pytestmark = pytest.mark.integration
MODEL = "uri-churn"


@pytest.fixture(scope="module")
def registered(mlflow_server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: F811
    from modelops_pipelines.generate import generate_churn
    from modelops_pipelines.spec import TrainSpec
    from modelops_pipelines.train import train

    root = tmp_path_factory.mktemp("registry-uris")
    generate_churn(rows=500, seed=5).to_csv(root / "d.csv", index=False)
    spec = TrainSpec.model_validate({
        "modelName": MODEL, "dataset": {"uri": str(root / "d.csv"), "target": "churn", "task": "classification"},
        "search": {"trials": 2, "families": ["linear"], "seed": 1}, "mlflow": {"experiment": f"it-{MODEL}"}})
    runs = []
    for _ in range(2):
        result, code = train(spec, tracking_uri=mlflow_server.uri, progress=lambda _line: None)
        assert code == 0, result
        runs.append(result)
    assert [r["version"] for r in runs] == ["1", "2"]
    return {"uri": mlflow_server.uri, "runs": runs, "root": root}


class Server:
    def __init__(self, model: str, log: Path, env: dict[str, str], *extra: str) -> None:
        self.http = f"http://127.0.0.1:{free_port()}"
        self.log = log
        self.proc = start([*modelops_cmd(), "--model-dir", model, "--http-port", self.http.rsplit(":", 1)[1],
                           "--no-grpc", "--no-fast-path", *extra], log, env=env)

    def wait(self, name: str = MODEL) -> Server:
        wait_until(lambda: http_ok(f"{self.http}/v2/models/{name}/ready"), timeout=300, what="modelops serve",
                   proc=self.proc, log=self.log)  # type: ignore[arg-type]
        return self

    def versions(self, name: str = MODEL) -> tuple[list[str], str, str]:
        """(V2 metadata versions, x-model-version of an inference, version label of the metrics)."""
        meta = httpx.get(f"{self.http}/v2/models/{name}", timeout=30).json()
        from modelops_pipelines.generate import generate_churn

        row = {k: (None if v != v else v) for k, v in generate_churn(rows=1, seed=9).drop(columns="churn")
               .iloc[0].to_dict().items()}
        resp = httpx.post(f"{self.http}/v1/models/{name}:predict", json={"instances": [row]}, timeout=30)
        assert resp.status_code == 200, resp.text
        metrics = httpx.get(f"{self.http}/metrics", timeout=30).text
        labels = [line for line in metrics.splitlines() if line.startswith("modelops_serving_model_info{")]
        assert labels, metrics[:2000]
        version = labels[0].split('version="', 1)[1].split('"', 1)[0]
        return meta["versions"], resp.headers.get("x-model-version", ""), version

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        stop(self.proc)  # type: ignore[arg-type]


@pytest.fixture()
def env(registered, tmp_path) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": registered["uri"], "MODELOPS_MODEL_CACHE": str(tmp_path / "cache")}


@pytest.fixture()
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.stop()


def test_models_uri_with_an_alias_serves_the_registry_version_and_a_second_start_uses_the_cache(
        registered, env, tmp_path, servers):
    first = Server(f"models:/{MODEL}@challenger", tmp_path / "first.log", env)
    servers.append(first)
    first.wait()
    assert first.versions() == (["2"], "2", "2")
    log = first.text()
    assert f"downloading models:/{MODEL}/2 from {registered['uri']}" in log
    assert f"downloaded models:/{MODEL}/2: " in log and f"model {MODEL} version 2 (models:/{MODEL}@challenger" in log
    cached = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(cached) == 1 and (cached[0] / "MLmodel").exists()
    first.stop()

    # The same version by number (the exact command): read from the cache, nothing downloaded.
    mtime = (cached[0] / "MLmodel").stat().st_mtime_ns
    second = Server(f"models:/{MODEL}/2", tmp_path / "second.log", env)
    servers.append(second)
    second.wait()
    assert second.versions() == (["2"], "2", "2")
    assert "using cached" in second.text() and "downloading" not in second.text()
    # no new cache entry (dot files are the cache's bookkeeping: partial downloads, the registry's digest)
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == [cached[0].name]
    assert (cached[0] / "MLmodel").stat().st_mtime_ns == mtime


def test_runs_uri_and_a_plain_directory_get_the_version_registered_from_their_run(registered, env, tmp_path,
                                                                                   servers):
    run1 = registered["runs"][0]["runId"]
    by_run = Server(f"runs:/{run1}/model", tmp_path / "run.log", env)
    servers.append(by_run)
    # a hand-downloaded directory (what `mlflow artifacts download` leaves): its MLmodel names the run
    import mlflow.artifacts

    plain = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL}/2",
                                                     dst_path=str(tmp_path / "plain"),
                                                     tracking_uri=registered["uri"]))
    by_dir = Server(str(plain), tmp_path / "dir.log", {"MLFLOW_TRACKING_URI": registered["uri"]})
    servers.append(by_dir)
    # without a registry there is no digest to verify the pickle against either: a user serving a local
    # directory by hand says they trust it (pickles are refused by default, tests/integration/serving/
    # test_artifact_integrity.py); by_run and by_dir are verified against the registry's digest tag
    no_registry = Server(str(plain), tmp_path / "none.log",
                         {"MLFLOW_TRACKING_URI": "", "MODELOPS_ALLOW_UNVERIFIED_PICKLE": "true"})
    servers.append(no_registry)
    for s in servers:
        s.wait()
    assert by_run.versions() == (["1"], "1", "1")
    assert f"registered as {MODEL} version 1" in by_run.text()
    assert by_dir.versions() == (["2"], "2", "2")
    # without a registry the version is not guessed: it stays empty and the log says how to set it
    assert no_registry.versions() == ([], "", "")
    assert "model version unknown" in no_registry.text() and "--model-version" in no_registry.text()


def test_bad_uris_fail_fast_with_one_line(registered, tmp_path):
    base = {**os.environ, "MLFLOW_TRACKING_URI": registered["uri"], "MODELOPS_MODEL_CACHE": str(tmp_path / "c")}
    for model, expected in (
            (f"models:/{MODEL}@nosuchalias", "the registry at"),
            ("models:/no-such-model/1", "the registry at"),
            ("models:/", "expected models:/NAME/VERSION")):
        proc = subprocess.run([*modelops_cmd(), "--model-dir", model], env=base, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and expected in errors[0], proc.stderr
    no_server = {k: v for k, v in base.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([*modelops_cmd(), "--model-uri", f"models:/{MODEL}/1"], env=no_server,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Set --tracking-uri or MLFLOW_TRACKING_URI" in proc.stderr
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
