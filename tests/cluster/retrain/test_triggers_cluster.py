"""Cron at the right time (test clock), suspend, and Forbid / Replace / Allow, against the real control plane.

These tests keep the training Pods Pending with the kubelet stand-in's `hold` (a slow image pull), so
they exercise the controller and kube-controller-manager without spending minutes in the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelops.api import ANNOTATION_RETRAIN_REQUESTED
from tests.cluster.retrain.helpers import (
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


def _job_names(kube: Any, ns: str) -> list[str]:
    return sorted(j.metadata.name for j in jobs(kube, ns) if not j.metadata.deletion_timestamp)


def test_cron_fires_at_the_right_time_and_suspend_holds_it(retrain_operator: Any, namespace: str, dataset: Path,
                                                           clock: Any, kubelet_standin: Any) -> None:
    kube = retrain_operator.kube
    kubelet_standin.hold(namespace)
    clock.freeze("2030-01-01T01:59:50Z")
    create(kube, namespace, schedule("nightly", dataset, triggers={"schedule": {
        "cron": "0 3 * * *", "timeZone": "Europe/Berlin", "startingDeadlineSeconds": 60}}))
    got = wait_for("nextScheduleTime", lambda: (lambda o: o if (o.get("status") or {}).get("nextScheduleTime")
                                                else None)(get(kube, namespace, "nightly")), 10,
                   operator=retrain_operator)
    # 03:00 in Berlin in winter is 02:00 UTC
    assert got["status"]["nextScheduleTime"].startswith("2030-01-01T02:00:00")
    assert condition(got, "Scheduled")["status"] == "True"
    clock.freeze("2030-01-01T01:59:59Z")
    import time

    time.sleep(3)
    assert runs(get(kube, namespace, "nightly")) == [] and _job_names(kube, namespace) == []
    clock.freeze("2030-01-01T02:00:01Z")
    run = wait_for("the cron run", lambda: runs(get(kube, namespace, "nightly")), 10, operator=retrain_operator)[0]
    assert run["trigger"] == "schedule" and run["firingKey"].startswith("2030-01-01T02:00:00")
    # the run is recorded before its Job exists (write-ahead), so wait for the Job
    wait_for("the Job", lambda: _job_names(kube, namespace) == [run["job"]], 10)
    # kube-controller-manager made the Pod
    wait_for("the Pod", lambda: kube.core.list_namespaced_pod(namespace, label_selector=f"job-name={run['job']}").items,
             20)
    # it fires once per firing time
    clock.freeze("2030-01-01T02:00:30Z")
    time.sleep(3)
    assert len(runs(get(kube, namespace, "nightly"))) == 1

    # suspended over the next firing, resumed within startingDeadlineSeconds: it still starts
    patch(kube, namespace, "nightly", {"spec": {"suspend": True, "concurrencyPolicy": "Allow"}})
    wait_for("Suspended", lambda: condition(get(kube, namespace, "nightly"), "Scheduled").get("reason") == "Suspended",
             10)
    clock.freeze("2030-01-02T02:00:10Z")
    time.sleep(3)
    assert len(runs(get(kube, namespace, "nightly"))) == 1
    assert get(kube, namespace, "nightly")["status"]["phase"] == "Suspended"
    patch(kube, namespace, "nightly", {"spec": {"suspend": False}})
    wait_for("the resumed firing", lambda: len(runs(get(kube, namespace, "nightly"))) == 2, 10)
    assert runs(get(kube, namespace, "nightly"))[0]["firingKey"].startswith("2030-01-02T02:00:00")

    # suspended past the deadline: the firing is skipped and recorded, nothing starts
    patch(kube, namespace, "nightly", {"spec": {"suspend": True}})
    wait_for("Suspended", lambda: condition(get(kube, namespace, "nightly"), "Scheduled").get("reason") == "Suspended",
             10)
    clock.freeze("2030-01-03T02:05:00Z")
    patch(kube, namespace, "nightly", {"spec": {"suspend": False}})
    wait_for("MissedSchedule", lambda: "MissedSchedule" in events(kube, namespace, "nightly"), 10)
    final = get(kube, namespace, "nightly")
    assert len(runs(final)) == 2 and final["status"]["lastScheduleTime"].startswith("2030-01-03T02:00:00")


@pytest.mark.parametrize("policy", ["Forbid", "Replace", "Allow"])
def test_concurrency_policy(retrain_operator: Any, namespace: str, dataset: Path, kubelet_standin: Any,
                            policy: str) -> None:
    kube = retrain_operator.kube
    kubelet_standin.hold(namespace)  # the first Job stays active
    create(kube, namespace, schedule("conc", dataset, concurrencyPolicy=policy))
    annotate(kube, namespace, "conc", ANNOTATION_RETRAIN_REQUESTED, "first")
    first = wait_for("first run", lambda: runs(get(kube, namespace, "conc")), 10, operator=retrain_operator)[0]
    wait_for("first Running", lambda: runs(get(kube, namespace, "conc"))[0]["state"] == "Running", 10)
    annotate(kube, namespace, "conc", ANNOTATION_RETRAIN_REQUESTED, "second")
    if policy == "Forbid":
        wait_for("ManualRunSkipped", lambda: "ManualRunSkipped" in events(kube, namespace, "conc"), 10,
                 operator=retrain_operator)
        assert [r["id"] for r in runs(get(kube, namespace, "conc"))] == [first["id"]]
        assert _job_names(kube, namespace) == [first["job"]]
    elif policy == "Replace":
        wait_for("replacement", lambda: len(runs(get(kube, namespace, "conc"))) == 2, 10, operator=retrain_operator)
        new, old = runs(get(kube, namespace, "conc"))
        assert old["id"] == first["id"] and old["state"] == "Replaced" and new["state"] in ("Pending", "Running")
        wait_for("old Job gone", lambda: _job_names(kube, namespace) == [new["job"]], 20)
        # the Event is an outbox item queued with the status that records Replaced: it is posted in the same
        # or the next pass, not necessarily before the Job's delete is observed
        wait_for("RunReplaced", lambda: "RunReplaced" in events(kube, namespace, "conc"), 10,
                 operator=retrain_operator)
    else:
        wait_for("second run", lambda: len(runs(get(kube, namespace, "conc"))) == 2, 10, operator=retrain_operator)
        wait_for("both Jobs", lambda: len(_job_names(kube, namespace)) == 2, 10)
        assert all(r["state"] in ("Pending", "Running") for r in runs(get(kube, namespace, "conc")))
        assert get(kube, namespace, "conc")["status"]["activeCount"] == 2
