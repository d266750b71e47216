"""Two operator replicas with leader election; the leader is SIGKILLed in the middle of a canary rollout.

The standby takes the Lease over once the lease duration (15 s) has passed without a renewal (plus at most
two retry periods, as client-go's leaderelection), the rollout finishes with exactly one
promotion and exactly one Event per step, and the replicas never act at once: every status write carries
its replica's field manager (`modelops/<identity>`), and a watch on the ModelDeployment shows all of the
first leader's writes before the successor's first one, never interleaved. The Events' reportingInstance
says the same for the Events.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from modelops.api import GROUP, VERSION
from tests.cluster.rollout.helpers import md_get, wait_for
from tests.fixtures.operator import Operator

pytestmark = pytest.mark.cluster

STEPS = [{"weight": w, "pause": "2s"} for w in (10, 20, 30, 40, 50)]


def _writer_times(md: dict[str, Any]) -> dict[str, str]:
    """field manager -> time of its last status write (managedFields of the status subresource)."""
    return {f["manager"]: f.get("time", "") for f in md["metadata"].get("managedFields") or []
            if f.get("subresource") == "status" and f["manager"].startswith("modelops/")}


class WriteLog(threading.Thread):
    """Every version of the ModelDeployment, in resourceVersion order: which replica's entry changed."""

    def __init__(self, kube: Any, namespace: str, name: str) -> None:
        super().__init__(daemon=True)
        self.kube, self.namespace, self.name = kube, namespace, name
        self.writers: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        from kubernetes import watch

        last: dict[str, str] = {}
        last_rv = 0
        while not self.halt.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(self.kube.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                                   "modeldeployments", field_selector=f"metadata.name={self.name}",
                                   timeout_seconds=5, resource_version=str(last_rv) if last_rv else None):
                    obj = ev["object"]
                    rv = int(obj["metadata"]["resourceVersion"])
                    if rv <= last_rv:
                        continue
                    last_rv = rv
                    times = _writer_times(obj)
                    changed = sorted(m for m, t in times.items() if last.get(m) != t or m not in last)
                    self.writers.extend(changed)
                    last = times
                    if self.halt.is_set():
                        break
            except Exception:
                time.sleep(0.2)


def test_the_standby_takes_over_a_rollout_within_the_lease_duration_and_never_acts_with_the_leader(
        kube_crds: Any, kserve: Any, namespace: str, tmp_path: Path) -> None:
    kube = kube_crds
    env = {"MODELOPS_LEADER_ELECTION": "true", "MODELOPS_LEASE_NAMESPACE": namespace,
           "MODELOPS_LEASE_NAME": "modelops-operator"}
    a, b = Operator(kube, tmp_path / "a.log"), Operator(kube, tmp_path / "b.log")
    a.start({**env, "MODELOPS_POD_NAME": "replica-a"})
    wait_for(lambda: (_lease(kube, namespace) or {}).get("holderIdentity") == "replica-a", 30, "a leads")
    b.start({**env, "MODELOPS_POD_NAME": "replica-b"})
    log = WriteLog(kube, namespace, "failover")
    try:
        md = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": "failover"},
              "spec": {"model": {"storageUri": "s3://models/failover/v0"}, "registry": {"pollInterval": "1s"},
                       "serving": {"deploymentMode": "Knative"}, "rollout": {"steps": STEPS}}}
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", md)
        log.start()
        wait_for(lambda: (md_get(kube, namespace, "failover").get("status") or {}).get("phase") == "Serving", 60,
                 "serving v0")
        kube.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", "failover",
                                                   {"spec": {"model": {"storageUri": "s3://models/failover/v1"}}})
        wait_for(lambda: ((md_get(kube, namespace, "failover")["status"].get("rollout") or {}).get("step") or 0) >= 1,
                 60, "the rollout at its second step")
        a.kill(signal.SIGKILL)
        killed = time.monotonic()
        last_renewal = (_lease(kube, namespace) or {})["renewTime"]  # a's last, it is dead now
        wait_for(lambda: (_lease(kube, namespace) or {}).get("holderIdentity") == "replica-b", 30, "b takes over")
        takeover = time.monotonic() - killed
        acquired = (_lease(kube, namespace) or {})["acquireTime"]
        wait_for(lambda: md_get(kube, namespace, "failover")["status"]["stable"]["storageUri"]
                 == "s3://models/failover/v1", 90, "promotion of v1 by b")
        time.sleep(3)  # anything late would show now
    finally:
        log.halt.set()
        for op in (a, b):
            if op.proc and op.proc.poll() is None:
                op.kill()
    # client-go's rule: the standby may take the Lease once it has seen no renewal for leaseDurationSeconds
    # (15 s), judged by its own clock from when it saw the last renewal, and it looks every retry period
    # (2 s): so at most 15 s + two retry periods after the leader's last renewal
    gap = (acquired - last_renewal).total_seconds()
    print(f"failover: kill -> takeover {takeover:.1f}s; last renewal -> new leader {gap:.1f}s")
    assert 15 <= gap <= 15 + 2 * 2 + 0.5, gap
    assert takeover <= 15 + 2 * 2, f"the standby took {takeover:.1f}s to take over"
    st = md_get(kube, namespace, "failover")["status"]
    promoted = [h for h in st["history"] if h["result"] == "Promoted"]
    assert [h["version"] for h in promoted] == ["s3://models/failover/v1"], st["history"]
    events = [e for e in kube.core.list_namespaced_event(namespace).items if e.involved_object.name == "failover"]
    reasons = [e.reason for e in events]
    assert reasons.count("Promoted") == 1 and reasons.count("RolloutStarted") == 1, reasons
    assert reasons.count("StepAdvanced") == len(STEPS) - 1, reasons
    assert reasons.count("Deployed") == 1, reasons
    # never at once: all of a's writes come before b's first one
    writers = log.writers
    assert "modelops/replica-a" in writers and "modelops/replica-b" in writers, writers
    first_b = writers.index("modelops/replica-b")
    assert "modelops/replica-a" not in writers[first_b:], writers
    by = {e.reporting_instance for e in events}
    assert by <= {"replica-a", "replica-b"}, by
    last_a = max((_ts(e) for e in events if e.reporting_instance == "replica-a"), default=None)
    first_b_event = min((_ts(e) for e in events if e.reporting_instance == "replica-b"), default=None)
    assert last_a is None or first_b_event is None or last_a <= first_b_event


def _ts(event: Any) -> datetime:
    return event.metadata.creation_timestamp  # type: ignore[no-any-return]


def _lease(kube: Any, namespace: str) -> dict[str, Any] | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        lease = client.CoordinationV1Api(kube.api).read_namespaced_lease("modelops-operator", namespace)
    except ApiException:
        return None
    return {"holderIdentity": lease.spec.holder_identity, "renewTime": lease.spec.renew_time,
            "acquireTime": lease.spec.acquire_time}
