"""The ModelDeployment reconcile on the controller runtime with fake adapters (no cluster, no network):
the outbox (order, Events exactly once across crashes, backoff, the old status shape), and the alias
writes of a promotion (reliability audit M2, M12, L11)."""

from __future__ import annotations

import json
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


def _predictors(kube: FakeKube) -> list[str]:
    spec = kube.obj("inferenceservices", "ns", "churn")["spec"]
    return [spec["predictor"]["name"], *[c["predictor"]["name"] for c in spec.get("canary") or []]]


def _kserve_made_services(kube: FakeKube, rt: Any) -> None:
    """What KServe does with the InferenceService applied: a Service per predictor, the stable one to its agent
    (the canary's to the model server, as KServe v0.20 does); the removed predictors' Services deleted; the
    status of a ready InferenceService."""
    names = _predictors(kube)
    isvc = kube.objects[("inferenceservices", "ns", "churn")]
    isvc["status"] = {"observedGeneration": isvc["metadata"]["generation"],
                      "conditions": [{"type": "Ready", "status": "True"}],
                      "address": {"url": f"http://churn-{names[0]}-predictor.ns.svc.cluster.local"},
                      **({"canaryStatuses": [{"name": n, "ready": True} for n in names[1:]]} if names[1:] else {})}
    rt.cache.forget(("ns", "churn"))
    for key in [k for k in kube.objects if k[0] == "services" and k[2].endswith("-predictor")]:
        if key[2] not in {f"churn-{n}-predictor" for n in names}:
            del kube.objects[key]
    for i, n in enumerate(names):
        kube.put("services", {"metadata": {"name": f"churn-{n}-predictor", "namespace": "ns"},
                              "spec": {"selector": {"app": f"isvc.churn-{n}-predictor"},
                                       "ports": [{"port": 80, "targetPort": 9081 if i == 0 else 8080}]}})


def _route_backends(kube: FakeKube) -> dict[str, int]:
    route = kube.obj("httproutes", "ns", "churn-traffic")
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}


@pytest.mark.parametrize("ending", ["abort", "promote"])
def test_a_rollout_ending_moves_the_route_before_kserve_removes_a_predictor(ending: str) -> None:
    """Issue 13, found on the node: at a promotion the gateway answered 500 ("service churn-v1-predictor not
    found") because the InferenceService change went first and KServe deleted the old stable's Service while
    the route still sent traffic to it. Now the route goes first and the InferenceService change waits until
    the gateway serves it; a promoted canary stays behind modelops' Service to its agent until KServe's
    Service of it targets the agent; only then is modelops' Service removed."""
    reg = registry(champion="1")
    rt, kube, _, clock = make_runtime(registry=reg, gateway="kserve/gw")
    deployment(kube, serving={"deploymentMode": "Standard"},
               rollout={"steps": [{"weight": 50, "pause": "30s"}]})
    md.reconcile(rt, "ns", "churn", budget())
    _kserve_made_services(kube, rt)
    reg.aliases["champion"] = "2"  # a new champion: a canary of v2
    for _ in range(3):
        clock.advance(1)
        md.reconcile(rt, "ns", "churn", budget())
        _kserve_made_services(kube, rt)
    assert _predictors(kube) == ["v1", "v2"], status(kube)
    assert _route_backends(kube) == {"churn-v1-predictor": 50, "churn-v2-logged": 50}, status(kube).get("traffic")

    if ending == "abort":
        meta = kube.objects[(MD, "ns", "churn")]["metadata"]
        meta["annotations"] = {"modelops.dev/abort": "true"}
        meta["generation"] = 2
    else:
        clock.advance(31)
    rt.cache.forget(("ns", "churn"))
    due = md.reconcile(rt, "ns", "churn", budget())
    stays = "v1" if ending == "abort" else "v2"
    after = {"abort": {"churn-v1-predictor": 100}, "promote": {"churn-v2-logged": 100}}[ending]
    # the route no longer sends traffic to the predictor that leaves; the InferenceService still has both
    assert _route_backends(kube) == after, json.dumps(status(kube))
    assert _predictors(kube) == ["v1", "v2"], "the InferenceService changed before the gateway served the route"
    assert "waits for the gateway" in status(kube)["traffic"]["message"], status(kube)["traffic"]
    assert due is not None and due <= 1.0
    clock.advance(1)
    md.reconcile(rt, "ns", "churn", budget())
    assert _predictors(kube) == ["v1", "v2"], "changed within the gateway's configuration throttle"
    clock.advance(5)
    md.reconcile(rt, "ns", "churn", budget())
    assert _predictors(kube) == [stays], status(kube).get("traffic")
    assert "waits for the gateway" not in (status(kube)["traffic"].get("message") or "")
    _kserve_made_services(kube, rt)  # KServe: the leaving predictor's Service is gone; the stayer's targets its agent
    if ending == "abort":  # the canary's Service of modelops went once the gateway served the route without it
        assert ("services", "ns", "churn-v2-logged") not in kube.objects
        assert "retiring" not in status(kube)["traffic"] and "canaryService" not in status(kube)["traffic"]
        return
    # promoted: v2 stays behind modelops' Service until KServe's Service of v2 targets its agent (now)
    assert ("services", "ns", "churn-v2-logged") in kube.objects
    assert status(kube)["traffic"]["canaryService"] == "churn-v2-logged"
    clock.advance(1)
    md.reconcile(rt, "ns", "churn", budget())
    assert _route_backends(kube) == {"churn-v2-predictor": 100}
    assert status(kube)["traffic"]["retiring"] == ["churn-v2-logged"]
    clock.advance(6)
    md.reconcile(rt, "ns", "churn", budget())
    assert ("services", "ns", "churn-v2-logged") not in kube.objects, "modelops' Service was not removed"
    assert "retiring" not in status(kube)["traffic"] and "canaryService" not in status(kube)["traffic"]
