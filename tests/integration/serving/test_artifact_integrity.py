"""A model whose artifacts changed after registration is refused by the model server (issue 16, H3).

Against a real MLflow server: the version is registered with the digest the trainer records
(`registry.artifact_digest`, the version tag modelops.dev/artifact-sha256); then someone with write access to
the artifact store replaces the pickle under the same version. The model server gets the files as KServe's
storage initializer would (downloaded from the version's location) and the digest as the operator passes it
(MODELOPS_MODEL_SHA256); it must refuse before unpickling anything, with a clear error, and exit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modelops.formats.artifacts import TAG_ARTIFACT_SHA256
from modelops_pipelines import registry
from tests.fixtures.mlflow_server import mlflow_server  # noqa: F401
from tests.fixtures.procs import http_ok, stop, wait_until
from tests.integration.serving import model_dirs as md
from tests.integration.serving.conftest import launch

pytestmark = pytest.mark.integration


def _download(uri: str, tracking: str, name: str, version: str, dst: Path) -> Path:
    import mlflow.artifacts
    from mlflow import MlflowClient

    location = MlflowClient(tracking, registry_uri=tracking).get_model_version_download_uri(name, version)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(dst), tracking_uri=uri))


def test_changed_artifacts_are_refused_and_intact_ones_served(mlflow_server, tmp_path):  # noqa: F811
    from mlflow import MlflowClient

    uri = mlflow_server.uri
    client = MlflowClient(uri, registry_uri=uri)  # not a registry URI another test of the session set
    built = md.build_sklearn(tmp_path / "built", "linear", "binary", name="integrity")
    other = md.build_sklearn(tmp_path / "other", "linear", "binary", name="integrity", seed=5)
    client.create_registered_model("integrity")
    run = client.create_run(client.create_experiment("integrity"))
    client.log_artifacts(run.info.run_id, str(built), "model")
    source = f"{run.info.artifact_uri}/model"
    digest = registry.artifact_digest(source, uri)
    mv = client.create_model_version("integrity", source, run.info.run_id, tags={TAG_ARTIFACT_SHA256: digest})
    assert client.get_model_version("integrity", mv.version).tags[TAG_ARTIFACT_SHA256] == digest

    # intact: served
    intact = _download(uri, uri, "integrity", mv.version, tmp_path / "intact")
    proc, http, _ = launch(intact, tmp_path / "intact.log", "--model-sha256", digest, "--no-grpc")
    try:
        wait_until(lambda: http_ok(f"{http}/v2/models/integrity/ready"), 180, "modelops serve (intact)",
                   proc, tmp_path / "intact.log")  # type: ignore[arg-type]
    finally:
        stop(proc)  # type: ignore[arg-type]

    # after registration, the artifacts under the same version are replaced by another pickle
    pickles = sorted(p.name for p in (other).iterdir() if p.suffix in (".pkl", ".skops"))
    assert pickles, list(other.iterdir())
    for name in pickles:
        client.log_artifact(run.info.run_id, str(other / name), "model")
    changed = _download(uri, uri, "integrity", mv.version, tmp_path / "changed")
    log = tmp_path / "changed.log"
    proc, _, _ = launch(changed, log, "--model-sha256", digest, "--no-grpc")
    try:
        code = proc.wait(timeout=180)  # type: ignore[attr-defined]
    except subprocess.TimeoutExpired:
        stop(proc)  # type: ignore[arg-type]
        pytest.fail("the model server started on changed artifacts:\n" + log.read_text()[-2000:])
    text = log.read_text()
    assert code == 3, text[-2000:]
    assert "changed after registration" in text and digest in text and "Traceback" not in text

    # and without any digest, the pickle is not loaded at all (the default)
    log = tmp_path / "nodigest.log"
    proc, _, _ = launch(intact, log, "--model-sha256", "", "--no-grpc")
    assert proc.wait(timeout=180) == 3, log.read_text()[-2000:]  # type: ignore[attr-defined]
    assert "refusing to unpickle" in log.read_text()
