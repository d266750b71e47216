"""Approval and rejection with the real trainer and the real MLflow server (including an MLflow outage while a
decision is carried out), then failed Jobs (a dataset that fails validation, an OOM-killed container) and
the history limits, on one RetrainSchedule so the two real trainings are shared."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelops.api import ANNOTATION_RETRAIN_REQUESTED
from tests.cluster.retrain.helpers import (
    FINISHED,
    annotate,
    condition,
    create,
    events,
    get,
    jobs,
    patch,
    runs,
    schedule,
    wait_for,
)

pytestmark = pytest.mark.cluster

MODELOPS = str(Path(sys.executable).with_name("modelops"))
NAME = "appr"


def cli(kube: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MODELOPS, *args, "--kubeconfig", kube.kubeconfig], capture_output=True, text=True,
                          timeout=60)


def _run(kube: Any, ns: str, key: str) -> dict[str, Any] | None:
    return next((r for r in runs(get(kube, ns, NAME)) if r.get("firingKey") == key), None)


def _finished(kube: Any, ns: str, key: str) -> dict[str, Any] | None:
    r = _run(kube, ns, key)
    return r if r and r["state"] in FINISHED else None


def _job_names(kube: Any, ns: str) -> set[str]:
    return {j.metadata.name for j in jobs(kube, ns) if not j.metadata.deletion_timestamp}


def test_approval_rejection_registry_outage_failures_and_history(
        retrain_operator: Any, namespace: str, dataset: Path, mlflow_server: Any, kubelet_standin: Any) -> None:
    from mlflow import MlflowClient

    kube = retrain_operator.kube
    op = retrain_operator
    create(kube, namespace, schedule(NAME, dataset, model="appr-model", concurrencyPolicy="Allow",
                                     successfulRunsHistoryLimit=1, failedRunsHistoryLimit=1,
                                     training={"promotion": {"requireApproval": True},
                                               "search": {"trials": 1, "families": ["linear"],
                                                          "timeoutSeconds": 60}}))
    # two real trainings side by side (Allow), to share the wait
    annotate(kube, namespace, NAME, ANNOTATION_RETRAIN_REQUESTED, "a")
    wait_for("run a", lambda: _run(kube, namespace, "a"), 15, operator=op)
    annotate(kube, namespace, NAME, ANNOTATION_RETRAIN_REQUESTED, "b")
    wait_for("run b", lambda: _run(kube, namespace, "b"), 15, operator=op)
    run_a = wait_for("run a to finish", lambda: _finished(kube, namespace, "a"), 400, 1.0, op)
    run_b = wait_for("run b to finish", lambda: _finished(kube, namespace, "b"), 400, 1.0, op)
    logs = "\n".join(r.log.read_text()[-1500:] for r in kubelet_standin.records_in(namespace) if r.log)
    assert run_a["state"] == run_b["state"] == "AwaitingApproval", (run_a, run_b, logs)
    assert {run_a["version"], run_b["version"]} == {"1", "2"}
    obj = get(kube, namespace, NAME)
    assert condition(obj, "AwaitingApproval")["status"] == "True" and obj["status"]["phase"] == "AwaitingApproval"
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    for r in (run_a, run_b):
        assert client.get_model_version("appr-model", r["version"]).tags.get("modelops.dev/approval") == "pending"
    assert not client.get_registered_model("appr-model").aliases, "nothing is promoted before approval"

    # a version that is not waiting is refused by the CLI
    bad = cli(kube, "approve", NAME, "7", "-n", namespace)
    assert bad.returncode == 1 and "no run awaiting approval of version 7" in bad.stderr

    # reject the older run's version: tagged rejected in MLflow
    out = cli(kube, "reject", NAME, run_a["version"], "-n", namespace)
    assert out.returncode == 0, out.stderr
    wait_for("Rejected", lambda: (_run(kube, namespace, "a") or {}).get("state") == "Rejected", 20, operator=op)
    wait_for("rejected tag", lambda: client.get_model_version("appr-model", run_a["version"]).tags.get(
        "modelops.dev/approval") == "rejected", 30, 0.5, op)
    wait_for("RegistrySynced", lambda: condition(get(kube, namespace, NAME), "RegistrySynced").get("status")
             == "True", 20)

    # MLflow goes away; approve the newer one: the decision is kept in status, the registry action retried
    mlflow_server.stop()
    try:
        out = cli(kube, "approve", NAME, run_b["version"], "-n", namespace)
        assert out.returncode == 0, out.stderr
        failing = wait_for("RegistrySynced False", lambda: (lambda c: c if c.get("status") == "False" else None)(
            condition(get(kube, namespace, NAME), "RegistrySynced")), 30, operator=op)
        assert failing["reason"] == "RegistryUnavailable" and "unreachable" in failing["message"]
        obj = get(kube, namespace, NAME)
        kept = _run(kube, namespace, "b")
        assert kept is not None and kept["state"] == "Approved" and kept["version"] == run_b["version"]
        assert kept["runId"] == run_b["runId"] and kept["decisionTime"]
        item = next(i for i in obj["status"]["outbox"] if i["kind"] == "approve")
        assert item["attempts"] >= 1 and item["version"] == run_b["version"] and item["notBefore"]
        # Events are outbox items: posted in the pass that records the state or the next one
        wait_for("Approved Event", lambda: "Approved" in events(kube, namespace, NAME), 10, operator=op)
    finally:
        mlflow_server.start()  # same port and database
    wait_for("RegistrySynced True after MLflow is back", lambda: condition(
        get(kube, namespace, NAME), "RegistrySynced").get("status") == "True", 150, 1.0, op)
    assert client.get_model_version_by_alias("appr-model", "challenger").version == run_b["version"]
    assert client.get_model_version("appr-model", run_b["version"]).tags["modelops.dev/approval"] == "approved"
    assert client.get_model_version("appr-model", run_a["version"]).tags["modelops.dev/approval"] == "rejected"
    wait_for("RegistryUpdated Event", lambda: "RegistryUpdated" in events(kube, namespace, NAME), 10, operator=op)

    # successfulRunsHistoryLimit 1: Rejected and Approved both count; the older run and its Job are gone
    wait_for("history trimmed", lambda: [r["firingKey"] for r in runs(get(kube, namespace, NAME))] == ["b"], 20,
             operator=op)
    wait_for("the older Job deleted", lambda: _job_names(kube, namespace) == {run_b["job"]}, 30)

    # a dataset that fails validation: the Job fails, recorded with the Pod's reason and the trainer's message
    patch(kube, namespace, NAME, {"spec": {"training": {"validation": {"minRows": 100000}}}})
    annotate(kube, namespace, NAME, ANNOTATION_RETRAIN_REQUESTED, "c")
    run_c = wait_for("run c to fail", lambda: _finished(kube, namespace, "c"), 240, 1.0, op)
    assert run_c["state"] == "Failed" and run_c["reason"] == "Error" and run_c["exitCode"] != 0, run_c
    assert "minRows 100000" in run_c["message"] and "BackoffLimitExceeded" in run_c["message"], run_c
    obj = get(kube, namespace, NAME)
    assert obj["status"]["phase"] == "Failed" and obj["status"]["lastRun"]["id"] == run_c["id"]

    # the next trigger is still honoured; this time the container is OOM-killed (the stand-in's knob)
    patch(kube, namespace, NAME, {"spec": {"training": {"validation": {"minRows": 50}},
                                           "env": [{"name": "MODELOPS_STANDIN_OOM_AFTER_SECONDS", "value": "1"}]}})
    annotate(kube, namespace, NAME, ANNOTATION_RETRAIN_REQUESTED, "d")
    run_d = wait_for("run d to fail", lambda: _finished(kube, namespace, "d"), 120, 0.5, op)
    assert run_d["state"] == "Failed" and run_d["reason"] == "OOMKilled" and run_d["exitCode"] == 137, run_d
    assert "OOMKilled" in run_d["message"]

    # failedRunsHistoryLimit 1: run c and its Job are gone; b (successful) and d (failed) remain
    wait_for("failed history trimmed", lambda: [r["firingKey"] for r in runs(get(kube, namespace, NAME))]
             == ["d", "b"], 20, operator=op)
    wait_for("run c's Job deleted", lambda: _job_names(kube, namespace) == {run_b["job"], run_d["job"]}, 30)
    final = get(kube, namespace, NAME)
    assert final["status"]["lastRun"]["id"] == run_d["id"] and final["status"]["activeCount"] == 0
    reasons = events(kube, namespace, NAME)
    assert reasons.count("RunFailed") >= 2 and "AwaitingApproval" in reasons and "Rejected" in reasons
