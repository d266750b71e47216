"""The ModelDeployment reconcile on the controller runtime with fake adapters (no cluster, no network):
the outbox (order, Events exactly once across crashes, backoff, the old status shape), and the alias
writes of a promotion (reliability audit M2, M12, L11)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from modelops.adapters.notify import Notifier
from modelops.adapters.registry import RegistryError
from modelops.handlers import modeldeployment as md
from tests.unit.controller.fakes import Crash, FakeKube, FakeRegistry, budget, make_runtime

pytestmark = pytest.mark.unit
MD = "modeldeployments"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def deployment(kube: FakeKube, status: dict[str, Any] | None = None, **spec: Any) -> None:
    kube.put(MD, {"apiVersion": "modelops.dev/v1alpha1", "kind": "ModelDeployment",
                  "metadata": {"name": "churn", "namespace": "ns", "generation": 1},
                  "spec": {"model": {"name": "churn"}, **spec}, "status": status or {}})


def status(kube: FakeKube) -> dict[str, Any]:
    st: dict[str, Any] = kube.obj(MD, "ns", "churn")["status"]
    return st


def registry(champion: str = "1", challenger: str | None = None) -> FakeRegistry:
    reg = FakeRegistry()
    reg.versions = {"1": {}, "2": {}, "3": {}}
    reg.aliases = {"champion": champion, **({"challenger": challenger} if challenger else {})}
    return reg


def timestamps(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if isinstance(v, str) and (k.endswith(("At", "Time")) or k == "notBefore")] \
            + [t for v in obj.values() for t in timestamps(v)]
    if isinstance(obj, list):
        return [t for v in obj for t in timestamps(v)]
    return []


def test_first_version_serves_and_its_event_is_posted_once_from_the_outbox() -> None:
    rt, kube, _, _ = make_runtime(registry=registry())
    deployment(kube)
    md.reconcile(rt, "ns", "churn", budget())
    md.reconcile(rt, "ns", "churn", budget())
    st = status(kube)
    assert st["stable"]["version"] == "1" and "outbox" not in st and "pendingActions" not in st
    assert kube.events_by_reason() == {"Deployed": 1}
    isvc = kube.obj("inferenceservices", "ns", "churn")
    assert isvc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelops"
    assert timestamps(st) and all(TIME.match(t) for t in timestamps(st)), timestamps(st)


@pytest.mark.parametrize("crash", ["event", "event-after"])
def test_an_event_is_posted_exactly_once_across_a_crash(crash: str) -> None:
    """Killed between the status write and the Event (old code: the Event was lost), or after the Event
    but before the outbox was cleared (it must not be posted twice)."""
    rt, kube, reg, _ = make_runtime(registry=registry())
    deployment(kube)
    kube.crash_on = {crash}
    with pytest.raises(Crash):
        md.reconcile(rt, "ns", "churn", budget())
    assert [i["kind"] for i in status(kube)["outbox"]] == ["Event"]  # durable before the post
    kube.crash_on = set()
    restarted, _, _, _ = make_runtime(kube=kube, registry=reg)  # a new process: nothing in memory
    md.reconcile(restarted, "ns", "churn", budget())
    md.reconcile(restarted, "ns", "churn", budget())
    assert kube.events_by_reason() == {"Deployed": 1}
    assert "outbox" not in status(kube)


def test_an_old_pending_actions_status_is_read_once_and_moved_to_the_outbox() -> None:
    rt, kube, reg, _ = make_runtime(registry=registry())
    deployment(kube, status={"observedGeneration": 1, "pendingActions": [
        {"kind": "TagVersion", "model": "churn", "version": "1", "tags": {"modelops.dev/promoted-at": "x"},
         "attempts": 1}]})
    md.reconcile(rt, "ns", "churn", budget())
    st = status(kube)
    assert "pendingActions" not in st
    assert reg.versions["1"] == {"modelops.dev/promoted-at": "x"}
    assert "outbox" not in st


PROMOTION = [
    {"id": "1/t/0/SetAlias", "kind": "SetAlias", "model": "churn", "alias": "champion", "version": "2",
     "ifVersion": "1"},
    {"id": "1/t/1/TagVersion", "kind": "TagVersion", "model": "churn", "version": "2",
     "tags": {"modelops.dev/promoted-at": "t"}},
    {"id": "1/t/2/DeleteAlias", "kind": "DeleteAlias", "model": "churn", "alias": "challenger", "ifVersion": "2"},
]
SERVING_2 = {"observedGeneration": 1, "stable": {"version": "2", "storageUri": "s3://models/churn/2"},
             "specHash": "x", "phase": "Serving"}


def test_registry_writes_run_in_order_and_stop_at_the_first_failure() -> None:
    reg = registry(champion="1", challenger="2")
    reg.fail["set_alias"] = RegistryError("RegistryUnreachable", "MLflow down")
    rt, kube, _, _ = make_runtime(registry=reg)
    deployment(kube, status={**SERVING_2, "outbox": PROMOTION})
    md.reconcile(rt, "ns", "churn", budget())
    assert ("delete_alias",) not in reg.calls and ("set_version_tag",) not in reg.calls
    assert reg.aliases == {"champion": "1", "challenger": "2"}
    items = status(kube)["outbox"]
    assert [i["kind"] for i in items] == ["SetAlias", "TagVersion", "DeleteAlias"]
    assert items[0]["attempts"] == 1 and "RegistryUnreachable" in items[0]["lastError"] and items[0]["notBefore"]
    assert "attempts" not in items[2]


def test_a_pending_set_alias_counts_before_deciding_so_the_old_champion_is_not_rolled_out() -> None:
    """Audit M2: DeleteAlias challenger went through, SetAlias champion=2 did not (MLflow flapping). The
    registry says champion=1 and no challenger; old code started a canary of v1 against stable v2."""
    reg = registry(champion="1")
    reg.fail["set_alias"] = RegistryError("RegistryUnreachable", "MLflow down")
    rt, kube, _, _ = make_runtime(registry=reg)
    deployment(kube, status={**SERVING_2, "outbox": [{**PROMOTION[0], "attempts": 3}]})
    md.reconcile(rt, "ns", "churn", budget())
    st = status(kube)
    assert "canary" not in st and "rollout" not in st
    assert "RolloutStarted" not in kube.events_by_reason()
    assert st["stable"]["version"] == "2"


def test_promotion_does_not_clobber_an_alias_moved_meanwhile() -> None:
    reg = registry(champion="3")  # someone moved champion to v3 while v2 was the canary
    rt, kube, _, _ = make_runtime(registry=reg)
    deployment(kube, status={**SERVING_2, "outbox": PROMOTION[:1]})
    md.reconcile(rt, "ns", "churn", budget())
    assert reg.aliases["champion"] == "3"


def test_registry_writes_back_off_and_raise_a_condition_after_repeated_failures() -> None:
    reg = registry(champion="1", challenger="2")
    reg.fail["set_alias"] = RegistryError("RegistryUnauthorized", "401")
    rt, kube, _, clock = make_runtime(registry=reg)
    deployment(kube, status={**SERVING_2, "outbox": PROMOTION[:1]})
    attempts = []
    for _ in range(6):
        md.reconcile(rt, "ns", "churn", budget())
        attempts.append(status(kube)["outbox"][0]["attempts"])
        clock.advance(1)  # 1 s later: still backing off (2 s, then 4 s, ...)
    assert attempts[:2] == [1, 1]  # not retried on every reconcile
    for _ in range(3):
        clock.advance(60)
        md.reconcile(rt, "ns", "churn", budget())
    st = status(kube)
    cond = {c["type"]: c for c in st["conditions"]}["RegistrySynced"]
    assert cond["status"] == "False" and "SetAlias" in cond["message"]
    reg.fail.clear()
    clock.advance(400)
    md.reconcile(rt, "ns", "churn", budget())
    st = status(kube)
    assert "outbox" not in st and {c["type"]: c for c in st["conditions"]}["RegistrySynced"]["status"] == "True"


def test_notifications_back_off_in_status_and_never_log_the_url() -> None:
    posts: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        posts.append(str(req.url))
        return httpx.Response(503)

    rt, kube, _, clock = make_runtime(registry=registry(champion="1", challenger="2"),
                                      notifier=Notifier(transport=httpx.MockTransport(handler)))
    hook = "https://hooks.example/services/T0/B0/SECRETTOKEN"
    serving_1 = {"observedGeneration": 1, "stable": {"version": "1", "storageUri": "s3://models/churn/1"},
                 "phase": "Serving"}
    # the fake's canary never reports ready: a long progressDeadline keeps the rollout (issue 16, M3) from
    # rolling it back, and sending a second notification, within the 40 minutes this test steps through
    deployment(kube, status=serving_1, notifications={"webhooks": [{"url": hook}]},
               rollout={"progressDeadline": "2h"})
    md.reconcile(rt, "ns", "churn", budget())
    md.reconcile(rt, "ns", "churn", budget())
    items = [i for i in status(kube)["outbox"] if i["kind"] == "Notify"]
    assert len(posts) == 1 and items[0]["attempts"] == 1 and items[0]["notBefore"]
    assert "SECRETTOKEN" not in items[0]["lastError"]
    for _ in range(6):
        clock.advance(400)
        md.reconcile(rt, "ns", "churn", budget())
    assert len(posts) == 5  # dropped after five attempts, with a Warning
    assert kube.events_by_reason().get("NotificationFailed") == 1
    assert "outbox" not in status(kube)


def test_a_settled_standard_deployment_without_a_gateway_is_not_rewritten_by_every_reconcile() -> None:
    """No Gateway reference configured: `status.traffic` carries the plan's message. The status write before
    the apply cleared it and the write after the apply put it back, so every reconcile of every such object
    cost two status writes (1370 instead of 813 for 200 objects in bench/rollout_latency.py's set-up)."""
    rt, kube, _, clock = make_runtime()
    deployment(kube, model={"storageUri": "s3://models/churn/1"},
               serving={"runtime": "kserve", "modelFormat": "sklearn", "deploymentMode": "Standard"},
               rollout={"strategy": "Immediate"})
    md.reconcile(rt, "ns", "churn", budget())
    isvc = kube.objects[("inferenceservices", "ns", "churn")]
    isvc["metadata"]["ownerReferences"] = [{"uid": "uid-churn", "kind": "ModelDeployment", "name": "churn"}]
    isvc["status"] = {"observedGeneration": isvc["metadata"].get("generation"),
                      "conditions": [{"type": "Ready", "status": "True"}], "url": "http://churn.ns.example.com"}
    rt.cache.forget(("ns", "churn"))
    md.reconcile(rt, "ns", "churn", budget())
    st = status(kube)
    assert st["phase"] == "Serving" and "namespace/name" in st["traffic"]["message"], st.get("traffic")
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in st["conditions"])
    writes = len(kube.status_writers)
    for _ in range(3):
        clock.advance(30)
        md.reconcile(rt, "ns", "churn", budget())
    assert len(kube.status_writers) == writes, "a reconcile with nothing new wrote status"
    assert status(kube)["traffic"] == st["traffic"]
