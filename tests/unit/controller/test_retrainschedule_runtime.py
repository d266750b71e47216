"""The RetrainSchedule reconcile on the controller runtime with fake adapters: a refused Job create fails its
run (audit M11), and both kinds share the timestamp format, child labels and Event source."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelops.adapters.kube import Kube, KubeError
from modelops.api import ANNOTATION_RETRAIN_REQUESTED
from modelops.handlers import modeldeployment as md
from modelops.handlers import retrainschedule as rs
from tests.unit.controller.fakes import FakeKube, FakeRegistry, budget, make_runtime

pytestmark = pytest.mark.unit
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def schedule(kube: FakeKube) -> None:
    kube.put("retrainschedules", {
        "apiVersion": "modelops.dev/v1alpha1", "kind": "RetrainSchedule",
        "metadata": {"name": "churn", "namespace": "ns", "generation": 1, "creationTimestamp": "2030-01-01T00:00:00Z",
                     "annotations": {ANNOTATION_RETRAIN_REQUESTED: "now"}},
        "spec": {"training": {"modelName": "churn",
                              "dataset": {"uri": "/d.csv", "target": "y", "task": "classification"}},
                 "concurrencyPolicy": "Forbid"}, "status": {}})


def runs(kube: FakeKube) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = kube.obj("retrainschedules", "ns", "churn")["status"].get("runs") or []
    return out


def test_a_refused_job_create_fails_the_run_with_the_api_message() -> None:
    """Old code: the create error escaped the reconcile, the run stayed Pending (shown as Training=True,
    JobRunning) and, with Forbid, blocked every later run."""
    rt, kube, _, _ = make_runtime()
    schedule(kube)
    kube.fail_create["Job"] = KubeError(422, 'Job.batch "x" is invalid: resources.limits.cpu: quantities must '
                                             "match the regular expression")
    rs.reconcile(rt, "ns", "churn", budget())
    assert runs(kube)[0]["state"] == "Pending"
    rs.reconcile(rt, "ns", "churn", budget())
    run = runs(kube)[0]
    assert run["state"] == "Failed" and run["reason"] == "CreateFailed"
    assert "quantities must match" in run["message"]
    assert kube.events_by_reason().get("RunFailed") == 1
    conds = {c["type"]: c for c in kube.obj("retrainschedules", "ns", "churn")["status"]["conditions"]}
    assert conds.get("Training", {}).get("reason") != "JobRunning"


def test_a_transient_create_error_keeps_the_run_pending_for_a_retry() -> None:
    rt, kube, _, _ = make_runtime()
    schedule(kube)
    kube.fail_create["Job"] = KubeError(503, "etcd leader changed")
    with pytest.raises(KubeError):
        rs.reconcile(rt, "ns", "churn", budget())
    del kube.fail_create["Job"]
    rs.reconcile(rt, "ns", "churn", budget())
    assert runs(kube)[0]["state"] == "Pending" and ("jobs", "ns", runs(kube)[0]["job"]) in kube.objects


def _timestamps(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if isinstance(v, str) and (k.endswith(("At", "Time")) or k == "notBefore")
                and k != "creationTimestamp"] + [t for v in obj.values() for t in _timestamps(v)]
    if isinstance(obj, list):
        return [t for v in obj for t in _timestamps(v)]
    return []


def test_both_kinds_write_one_timestamp_format_one_child_label_and_one_event_source() -> None:
    reg = FakeRegistry()
    reg.versions = {"1": {}}
    reg.aliases = {"champion": "1"}
    rt, kube, _, _ = make_runtime(registry=reg)
    schedule(kube)
    kube.put("modeldeployments", {"apiVersion": "modelops.dev/v1alpha1", "kind": "ModelDeployment",
                                  "metadata": {"name": "churn", "namespace": "ns"}, "spec": {"model": {"name": "churn"}}})
    rs.reconcile(rt, "ns", "churn", budget())
    md.reconcile(rt, "ns", "churn", budget())
    stamps = (_timestamps(kube.obj("retrainschedules", "ns", "churn")["status"])
              + _timestamps(kube.obj("modeldeployments", "ns", "churn")["status"]))
    assert len(stamps) > 5 and all(TIME.match(t) for t in stamps), stamps
    job = next(o for (p, _, _), o in kube.objects.items() if p == "jobs")
    isvc = kube.obj("inferenceservices", "ns", "churn")
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelops"
    assert isvc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelops"
    assert {e["involved"] for e in kube.events.values()} == {"churn"} and len(kube.events) >= 2

    # the real adapter's Event body: one source for both kinds, named after the outbox item
    posted: list[dict[str, Any]] = []

    class Capture(Kube):
        def request(self, method: str, resource_path: str, **kw: Any) -> dict[str, Any]:
            posted.append(kw["body"])
            return {}

    kube_adapter = Capture(transport=object())  # type: ignore[arg-type]  # request is overridden
    for kind in ("ModelDeployment", "RetrainSchedule"):
        involved = {"apiVersion": "modelops.dev/v1alpha1", "kind": kind,
                    "metadata": {"name": "churn", "namespace": "ns", "uid": kind}}
        kube_adapter.event(involved, "Normal", "R", "m", key="1/t/event/0")
    assert {(b["source"]["component"], b["reportingComponent"]) for b in posted} == {("modelops", "modelops")}
    assert all("name" in b["metadata"] and "generateName" not in b["metadata"] for b in posted)
