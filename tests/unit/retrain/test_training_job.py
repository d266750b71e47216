"""The training Job and spec ConfigMap builders, and the webhook payloads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelops.desired.notification import webhook_payload
from modelops.desired.training_job import JobDefaults, spec_config_map, training_job

pytestmark = pytest.mark.unit

DEFAULTS = JobDefaults(trainer_image="modelops/trainer:0.1.0", mlflow_tracking_uri="http://mlflow:5000")
RUN = {"id": "cron-0123456789", "trigger": "schedule", "job": "churn-cron-0123456789", "firingKey": "k"}


def rs(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"training": {"modelName": "churn", "dataset": {"uri": "/d.csv", "target": "y",
                                                                           "task": "classification"}}}
    base.update(spec)
    return {"metadata": {"name": "churn", "namespace": "ns", "uid": "u-1"}, "spec": base}


def test_job_defaults() -> None:
    job = training_job(rs(), RUN, DEFAULTS)
    assert job["metadata"]["name"] == RUN["job"] and job["metadata"]["namespace"] == "ns"
    owner = job["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "RetrainSchedule" and owner["uid"] == "u-1" and owner["controller"] is True
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (1, 3600, 86400)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    c = pod["containers"][0]
    assert c["image"] == DEFAULTS.trainer_image
    assert c["command"] == ["modelops", "train", "--spec", "/etc/modelops/train/spec.json"]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["MODELOPS_RUN_ID"] == RUN["id"]
    assert pod["volumes"][0]["configMap"]["name"] == RUN["job"]
    assert spec["template"]["metadata"]["labels"]["modelops.dev/owner-name"] == "churn"


def test_job_settings_resources_and_secrets_by_reference() -> None:
    job = training_job(rs(
        image="my/trainer:2", serviceAccountName="trainer",
        resources={"limits": {"cpu": "2", "memory": "4Gi"}},
        env=[{"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}}},
             {"name": "MLFLOW_TRACKING_URI", "value": "http://other:5000"}],
        envFrom=[{"secretRef": {"name": "s3-credentials"}}],
        mlflow={"credentialsSecretRef": {"name": "mlflow-auth"}},
        job={"backoffLimit": 0, "activeDeadlineSeconds": 60, "ttlSecondsAfterFinished": 5},
    ), RUN, DEFAULTS)
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "my/trainer:2" and pod["serviceAccountName"] == "trainer"
    assert c["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}}
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (0, 60)
    assert c["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}, {"secretRef": {"name": "mlflow-auth"}}]
    uris = [e for e in c["env"] if e["name"] == "MLFLOW_TRACKING_URI"]
    assert uris == [{"name": "MLFLOW_TRACKING_URI", "value": "http://other:5000"}]
    secret = next(e for e in c["env"] if e["name"] == "AWS_SECRET_ACCESS_KEY")
    assert "value" not in secret and secret["valueFrom"]["secretKeyRef"]["name"] == "s3"


def test_config_map_holds_the_training_spec() -> None:
    obj = rs()
    cm = spec_config_map(obj, RUN)
    assert cm["metadata"]["name"] == RUN["job"]
    assert json.loads(cm["data"]["spec.json"]) == obj["spec"]["training"]
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "u-1"


RUN_DONE = {"id": "manual-1", "trigger": "manual", "job": "j", "version": "5", "metric": "auc", "value": 0.93,
            "championVersion": "4", "championValue": 0.91, "state": "Succeeded", "message": "ok"}


def test_slack_payload() -> None:
    p = webhook_payload("slack", "RunSucceeded", "ns", "churn", "churn", RUN_DONE, "2026-05-01T00:00:00Z")
    assert set(p) == {"text", "attachments"}
    assert "version 5" in p["text"] and "auc 0.93" in p["text"] and "v4 0.91" in p["text"]
    assert p["attachments"][0]["color"] == "good"


def test_json_payload() -> None:
    p = webhook_payload("json", "AwaitingApproval", "ns", "churn", "churn", RUN_DONE, "t")
    assert p["event"] == "AwaitingApproval" and p["run"]["version"] == "5" and p["model"] == "churn"
    assert "modelops approve churn 5" in p["summary"]
