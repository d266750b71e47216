import pytest

pytestmark = pytest.mark.integration


def test_mlflow_server_answers(mlflow_server):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    exp = client.create_experiment("fixture-check")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "x", 1.0)
    assert client.get_run(run.info.run_id).data.metrics["x"] == 1.0
    client.create_registered_model("fixture-model")
    assert client.get_registered_model("fixture-model").name == "fixture-model"
