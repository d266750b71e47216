"""Manual trigger end to end: CLI -> annotation -> Job (kube-controller-manager makes the Pod) -> the real
trainer against a real MLflow server -> outcome in status, conditions, Events and webhooks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.retrain.helpers import (
    FINISHED,
    condition,
    create,
    events,
    get,
    jobs,
    runs,
    schedule,
    wait_for,
)

pytestmark = pytest.mark.cluster

MODELOPS = str(Path(sys.executable).with_name("modelops"))


def _job_or_none(kube: Any, name: str, namespace: str) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return kube.batch.read_namespaced_job(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def cli(kube: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MODELOPS, *args, "--kubeconfig", kube.kubeconfig], capture_output=True, text=True,
                          timeout=60)


def test_manual_run_trains_for_real_and_reports(retrain_operator: Any, namespace: str, dataset: Path,
                                                 mlflow_server: Any, webhook_sink: Any,
                                                 kubelet_standin: Any) -> None:
    kube = retrain_operator.kube
    obj = schedule("manual-e2e", dataset, notifications={"webhooks": [
        {"url": f"{webhook_sink.url}/json"},
        {"url": f"{webhook_sink.url}/slack", "format": "slack", "events": ["RunSucceeded", "RunFailed"]}]})
    create(kube, namespace, obj)
    ready = wait_for("Ready", lambda: condition(get(kube, namespace, "manual-e2e"), "Ready").get("status") == "True",
                     10, operator=retrain_operator)
    assert ready
    got = get(kube, namespace, "manual-e2e")
    assert condition(got, "Scheduled")["reason"] == "NotConfigured" and runs(got) == []

    out = cli(kube, "retrain", "manual-e2e", "-n", namespace)
    assert out.returncode == 0, out.stderr
    run = wait_for("a run", lambda: runs(get(kube, namespace, "manual-e2e")), 10, operator=retrain_operator)[0]
    assert run["trigger"] == "manual" and run["job"].startswith("manual-e2e-manual-")

    # the run is recorded in status before its ConfigMap and Job are created (the same pass, right after the
    # status write: the intent survives a crash), so the Job may appear a moment after the run
    job = wait_for("the run's Job", lambda: _job_or_none(kube, run["job"], namespace), 10, operator=retrain_operator)
    owner = job.metadata.owner_references[0]
    assert owner.kind == "RetrainSchedule" and owner.uid == got["metadata"]["uid"] and owner.controller
    assert job.spec.backoff_limit == 0 and job.spec.active_deadline_seconds == 300
    container = job.spec.template.spec.containers[0]
    assert container.command[:2] == ["modelops", "train"] and container.image == "modelops/trainer:test"
    cm = kube.core.read_namespaced_config_map(run["job"], namespace)
    assert '"modelName": "manual-e2e"' in cm.data["spec.json"]

    done = wait_for("the run to finish", lambda: [r for r in runs(get(kube, namespace, "manual-e2e"))
                                                  if r["state"] in FINISHED], 180, 0.5, retrain_operator)[0]
    log = kubelet_standin.records_in(namespace)[0].log.read_text()[-3000:]
    assert done["state"] == "Succeeded", (done, log)
    assert done["version"] == "1" and done["runId"] and done["metric"] == "auc" and 0 <= done["value"] <= 1
    assert done["startTime"] and done["completionTime"] and done["exitCode"] == 0
    final = get(kube, namespace, "manual-e2e")
    assert final["status"]["lastRun"]["id"] == done["id"] and final["status"]["activeCount"] == 0
    assert condition(final, "Training")["status"] == "False" and final["status"]["phase"] == "Idle"

    # the registry really holds the version, and the alias points at it
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    assert client.get_model_version_by_alias("manual-e2e", "challenger").version == "1"

    # one Job for the one request; Events and webhooks for each transition
    assert len(jobs(kube, namespace)) == 1
    reasons = wait_for("events", lambda: (lambda r: r if "RunSucceeded" in r else None)(
        events(kube, namespace, "manual-e2e")), 20)
    assert reasons.index("Triggered") < reasons.index("RunStarted") < reasons.index("RunSucceeded")
    wait_for("webhooks", lambda: len(webhook_sink.bodies("/json")) >= 2 and webhook_sink.bodies("/slack"), 20)
    assert [b["event"] for b in webhook_sink.bodies("/json")] == ["RunStarted", "RunSucceeded"]
    assert webhook_sink.bodies("/json")[1]["run"]["version"] == "1"
    slack = webhook_sink.bodies("/slack")
    assert len(slack) == 1 and "version 1" in slack[0]["text"] and slack[0]["attachments"][0]["color"] == "good"
    # no credential or environment value leaks into status
    assert "MLFLOW_TRACKING_URI" not in str(final["status"])
