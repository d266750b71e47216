"""Reference profiles loaded from a real MLflow server (models:/ and runs:/ URIs)."""

from __future__ import annotations

import numpy as np
import pytest

from modelops.drift.reference import load_profile
from modelops.formats.reference_profile import read_profile
from tests.integration.drift.conftest import get_json, make_frame, send_v1

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registered(mlflow_server, model_dir):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    run = client.create_run(client.create_experiment("drift-reference"))
    client.log_artifacts(run.info.run_id, str(model_dir), artifact_path="model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("churn")
    version = client.create_model_version("churn", source=f"runs:/{run.info.run_id}/model",
                                          run_id=run.info.run_id)
    return mlflow_server.uri, run.info.run_id, version.version


def test_load_profile_from_runs_and_models_uris(registered, model_dir):
    uri, run_id, version = registered
    expected = read_profile(model_dir)
    assert load_profile(f"runs:/{run_id}/model", uri) == expected
    assert load_profile(f"models:/churn/{version}", uri) == expected
    with pytest.raises(Exception, match=r"reference_profile|not|No such|RESOURCE"):
        load_profile("models:/churn/99", uri)


def test_exporter_resolves_the_reference_of_each_served_version_from_mlflow(registered, start_exporter):
    uri, _, version = registered
    proc = start_exporter("--reference", "churn=models:/churn/{version}", "--mlflow-tracking-uri", uri,
                          "--min-rows", "200")
    send_v1(f"{proc.url}/", "churn", make_frame(np.random.default_rng(21), 600), rows_per_event=50,
            version=str(version))
    report = get_json(f"{proc.url}/drift/churn")
    assert report["reference"] == f"models:/churn/{version}"
    assert (report["version"], report["status"], report["rows"]) == (str(version), "ok", 600)
    assert report["drifted_features"] == 0
