"""Issue 13 (found on the real node): a canary step must not restart the predictors. With KServe v0.20.0's own
manager (tests/fixtures/kserve_live.py), the operator runs Standard-mode canaries through several steps; the
stable and canary predictor Deployments that KServe builds keep their pod template, their generation and their
Pods from step to step while modelops' HTTPRoute moves the weight, and the rollout still promotes, and rolls
back, through the real KServe.

KServe copies the InferenceService's labels and annotations into the predictors' pod templates
(components/predictor.go buildObjectMeta): before the fix, the per-step bookkeeping the builder wrote there
changed every pod template at every step.

There is no node in this tier, so `PredictorPods` below plays the kubelet for the predictor Pods only, and says
so: it marks each Pod Running and Ready with an address (what a kubelet reports once the containers pass their
readiness probes); nothing runs in them. Everything else (KServe's reconciler and webhooks, the Deployment,
ReplicaSet and EndpointSlice controllers, the operator) is real.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import V1Namespace, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from modelops.api import GROUP, VERSION
from modelops.api.types import ModelRef
from modelops.desired.http_route import GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTE_PLURAL, route_name
from modelops.desired.inference_service import predictor_name
from tests.cluster.rollout.helpers import cond, isvc_get, md_get, wait_for
from tests.fixtures.kserve_live import LiveKServe
from tests.fixtures.operator import Operator

pytestmark = pytest.mark.cluster

NAME = "steps"
# each step holds long enough for the sampler below (six API reads a round) to see it on a busy CI host: with
# 3 s the 10% step once passed unseen (CI saw [30, 60])
STEPS = [{"weight": w, "pause": "10s"} for w in (10, 30, 60)]
URI = {v: f"pvc://models/steps/{v}" for v in ("v1", "v2", "v3")}
#: KServe's pod label naming the InferenceService (constants.InferenceServicePodLabelKey)
ISVC_POD_LABEL = "serving.kserve.io/inferenceservice"


def deployment_name(version: str) -> str:
    """KServe's predictor Deployment for the builder's predictor (constants.PredictorServiceName)."""
    return f"{NAME}-{predictor_name(ModelRef(storage_uri=URI[version]))}-predictor"


class PredictorPods:
    """NOT a kubelet: marks the predictor Pods of one namespace Running and Ready with a Pod IP (through
    pods/status, as a kubelet would), so KServe's Deployments become available and their Services get ready
    endpoints. Remembers every Pod it saw, so a restart (a new Pod) is visible."""

    def __init__(self, live: LiveKServe, namespace: str) -> None:
        self.core, self.namespace = live.kube.core, namespace
        self.seen: dict[str, str] = {}  # pod uid -> pod name
        self.errors: list[str] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PredictorPods:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._halt.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                for pod in self.core.list_namespaced_pod(self.namespace, label_selector=ISVC_POD_LABEL).items:
                    self.seen.setdefault(pod.metadata.uid, pod.metadata.name)
                    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
                    if not ready and pod.metadata.deletion_timestamp is None:
                        self._ready(pod)
            except ApiException as exc:
                if exc.status != 404:
                    self.errors.append(f"{exc.status}: {exc.reason} {exc.body}")
            except Exception as exc:  # reported by the test (errors), never swallowed
                self.errors.append(repr(exc))
            self._halt.wait(0.3)

    def _ready(self, pod: Any) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ip = f"10.77.{len(self.seen) // 250}.{len(self.seen) % 250 + 1}"
        status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now,
                  "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                                 for t in ("Initialized", "ContainersReady", "Ready")],
                  "containerStatuses": [{"name": c.name, "image": c.image, "imageID": "", "ready": True,
                                         "started": True, "restartCount": 0,
                                         "state": {"running": {"startedAt": now}}} for c in pod.spec.containers]}
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})

    def pods_of(self, deployment: str) -> set[str]:
        return {uid for uid, name in self.seen.items() if name.startswith(f"{deployment}-")}


@pytest.fixture
def live_ns(kserve_live: LiveKServe) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kserve_live.kube.core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        kserve_live.kube.core.delete_namespace(name)


@pytest.fixture
def live_operator(kserve_live: LiveKServe, tmp_path: Path) -> Iterator[Operator]:
    kube = kserve_live.kube
    kube.install_crds()
    kube.wait_served(GROUP, VERSION, "modeldeployments")
    op = Operator(kube, tmp_path / "operator.log")
    op.extra_env = {"MODELOPS_LOG_LEVEL": "INFO"}
    op.start()
    yield op
    if op.proc and op.proc.poll() is None:
        op.kill()


def _deployment(kube: Any, ns: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client import AppsV1Api

    try:
        obj: dict[str, Any] = AppsV1Api(kube.api).read_namespaced_deployment(name, ns).to_dict()
        return obj
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def snapshot(kube: Any, ns: str, names: list[str]) -> dict[str, Any]:
    """Per Deployment: its generation and pod template (as KServe last wrote them)."""
    out: dict[str, Any] = {}
    for n in names:
        d = _deployment(kube, ns, n)
        out[n] = None if d is None else {"generation": d["metadata"]["generation"],
                                         "template": json.dumps(d["spec"]["template"], sort_keys=True, default=str)}
    return out


def settled(kube: Any, ns: str, name: str) -> dict[str, Any] | None:
    """The Deployment's snapshot once its rollout is complete (all replicas updated and available)."""
    d = _deployment(kube, ns, name)
    if d is None:
        return None
    spec, status = d["spec"], d.get("status") or {}
    done = (status.get("observed_generation") == d["metadata"]["generation"]
            and status.get("updated_replicas") == spec["replicas"] == status.get("available_replicas")
            and status.get("replicas") == spec["replicas"])
    return snapshot(kube, ns, [name]) if done else None


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {json.dumps(a, default=str)[:300]} -> {json.dumps(b, default=str)[:300]}"]


def route_weights(kube: Any, ns: str) -> dict[str, int]:
    try:
        route = kube.custom.get_namespaced_custom_object(GATEWAY_GROUP, GATEWAY_VERSION, ns, HTTPROUTE_PLURAL,
                                                         route_name(NAME))
    except ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    return {b["name"]: int(b.get("weight", 1)) for r in route["spec"]["rules"] for b in r["backendRefs"]}


def service_ports(kube: Any, ns: str, name: str) -> dict[str, Any] | None:
    """A Service's selector and (port, targetPort) pairs; None when it does not exist."""
    try:
        svc = kube.core.read_namespaced_service(name, ns)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {"selector": svc.spec.selector,
            "ports": [(p.port, p.target_port if isinstance(p.target_port, int) else str(p.target_port))
                      for p in svc.spec.ports or []]}


def logged_name(version: str) -> str:
    """modelops' Service to a canary's logger agent (decide/traffic_split.py logged_service)."""
    return f"{NAME}-{predictor_name(ModelRef(storage_uri=URI[version]))}-logged"


def run_canary(op: Operator, ns: str, pods: PredictorPods, stable: str, canary: str,
               until: Any, diag: Any) -> dict[int, list[dict[str, Any]]]:
    """Point the ModelDeployment at `canary` and sample, at every rollout step, the two predictor Deployments,
    the InferenceService's generation and modelops' route, until `until(md)` holds. Returns step weight -> the
    samples taken at that weight once the canary was ready (each an equal-shaped dict)."""
    kube = op.kube
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", NAME,
                                               {"spec": {"model": {"storageUri": URI[canary]}}})
    names = [deployment_name(stable), deployment_name(canary)]
    samples: dict[int, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        md = md_get(kube, ns, NAME)
        st = md.get("status") or {}
        if until(md):
            break
        ro = st.get("rollout") or {}
        isvc = isvc_get(kube, ns, NAME) or {}
        snap = snapshot(kube, ns, names)
        if ro.get("state") == "Progressing" and all(snap.values()) and \
                cond(md, "Progressing").get("reason") != "CanaryNotReady" and \
                ((isvc.get("status") or {}).get("canaryStatuses") or [{}])[0].get("ready"):
            sample = {
                "deployments": snap, "isvc_generation": isvc["metadata"]["generation"],
                "isvc_meta": json.dumps({k: isvc["metadata"].get(k) for k in ("labels", "annotations")},
                                        sort_keys=True),
                "pods": {n: sorted(pods.pods_of(n)) for n in names}, "route": route_weights(kube, ns),
                "kserve_canary_service": service_ports(kube, ns, deployment_name(canary)),
                "stable_service": service_ports(kube, ns, deployment_name(stable)),
                "logged_service": service_ports(kube, ns, logged_name(canary)),
                "at": round(time.monotonic(), 2), "traffic": st.get("traffic"), "state": ro.get("state")}
            # a consistent sample: the rollout still at this step after the reads above (an abort or a promotion
            # between the first read and the last would pair the ended rollout's objects with its old status)
            again = ((md_get(kube, ns, NAME).get("status") or {}).get("rollout") or {})
            if (again.get("state"), again.get("weight")) == ("Progressing", ro["weight"]):
                samples.setdefault(int(ro["weight"]), []).append(sample)
        time.sleep(0.25)
    else:
        pytest.fail(f"the rollout of {canary} did not finish in 240 s\n{diag()}")
    return samples


def test_canary_steps_do_not_restart_the_predictors_and_the_rollout_completes(
        kserve_live: LiveKServe, live_operator: Operator, live_ns: str) -> None:
    kube, ns = kserve_live.kube, live_ns

    def diag() -> str:
        md = md_get(kube, ns, NAME)
        isvc = isvc_get(kube, ns, NAME) or {}
        isvc.get("metadata", {}).pop("managedFields", None)
        pod_list = kube.core.list_namespaced_pod(ns).items
        pod_lines = "\n".join(f"{p.metadata.name} {p.status.phase} {p.status.pod_ip} "
                              f"{[(c.type, c.status) for c in p.status.conditions or []]}" for p in pod_list)
        events = "\n".join(f"{e.involved_object.kind}/{e.involved_object.name} {e.reason}: {e.message}"
                           for e in kube.core.list_namespaced_event(ns).items[-30:])
        return (f"--- ModelDeployment status ---\n{json.dumps(md.get('status'), separators=(',', ':'))[:3000]}\n"
                f"--- InferenceService ---\n{json.dumps(isvc, separators=(',', ':'), default=str)[:5000]}\n"
                f"--- Pods ---\n{pod_lines}\n--- predictor Pod stand-in errors ---\n{pods.errors[-5:]}\n"
                f"--- Events ---\n{events}\n"
                f"--- KServe manager log ---\n{kserve_live.log_tail(3000)}\n"
                f"--- operator log ---\n{live_operator.log.read_text(errors='replace')[-3000:]}")

    md = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": NAME},
          "spec": {"model": {"storageUri": URI["v1"]},
                   "serving": {"deploymentMode": "Standard", "minReplicas": 1, "maxReplicas": 1},
                   "rollout": {"steps": STEPS}}}
    with PredictorPods(kserve_live, ns) as pods:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", md)
        wait_for(lambda: cond(md_get(kube, ns, NAME), "Ready").get("status") == "True", 120,
                 "v1 serving through the real KServe", dump=lambda: diag())

        # ---- a healthy canary: every step at the gateway, nothing restarted, promoted
        promoted = run_canary(live_operator, ns, pods, "v1", "v2",
                              lambda o: (o.get("status") or {}).get("stable", {}).get("storageUri") == URI["v2"]
                              and "rollout" not in (o.get("status") or {}), diag)
        assert sorted(promoted) == [10, 30, 60], f"sampled steps {sorted(promoted)}\n{diag()}"
        every = [s for w in sorted(promoted) for s in promoted[w]]
        first = every[0]
        for s in every[1:]:
            assert s["deployments"] == first["deployments"], (
                f"a predictor Deployment changed between traffic steps:\n{first['deployments']}\n{s['deployments']}")
            assert s["pods"] == first["pods"], f"predictor Pods were replaced between steps: {first['pods']} {s['pods']}"
            assert s["isvc_generation"] == first["isvc_generation"], "the InferenceService changed between steps"
            assert s["isvc_meta"] == first["isvc_meta"]
        # modelops' HTTPRoute carries the split (here 100% stable: without a node, the canary's Pods get no
        # EndpointSlice entry, and modelops routes only to Services with ready endpoints)
        v2 = predictor_name(ModelRef(storage_uri=URI["v2"]))
        assert all(s["route"] for s in every), "modelops' HTTPRoute was not written"
        # KServe v0.20 gives the canary a Service to the model server's port, skipping the logger agent it injects
        # (predictor.go reconcileCanaryDeployments: an empty component extension); modelops' Service for the
        # canary selects the same Pods and targets the agent, so the canary's payloads are logged
        kserve_canary = every[-1]["kserve_canary_service"]
        assert kserve_canary and kserve_canary["ports"][0][1] != 9081, kserve_canary
        for s in every:
            assert s["logged_service"] == {"selector": kserve_canary["selector"], "ports": [(80, 9081)]}, s
        assert kserve_canary["selector"] == {"app": f"isvc.{deployment_name('v2')}"}
        # the stable predictor's own Service targets the agent (the logger is in its component extension)
        assert every[-1]["stable_service"]["ports"][0][1] == 9081, every[-1]["stable_service"]
        isvc = wait_for(lambda: (o := isvc_get(kube, ns, NAME)) and not o["spec"].get("canary") and o, 30,
                        "one predictor after promotion", dump=lambda: diag())
        assert isvc["spec"]["predictor"]["name"] == v2
        wait_for(lambda: _deployment(kube, ns, deployment_name("v1")) is None, 60, "the old stable removed by KServe")
        # promoted: v2 is KServe's stable predictor, reached through KServe's Service (to its agent); modelops'
        # Service for it is removed (no gateway reports on the route in this tier, so nothing waits for one)
        wait_for(lambda: service_ports(kube, ns, logged_name("v2")) is None, 60, "modelops' canary Service removed",
                 dump=lambda: diag())
        # the status that no longer lists it is written right after the deletion (the same reconcile)
        wait_for(lambda: "retiring" not in (md_get(kube, ns, NAME)["status"].get("traffic") or {}), 10,
                 "the status without the removed Service", dump=lambda: diag())
        assert service_ports(kube, ns, deployment_name("v2"))["ports"][0][1] == 9081  # type: ignore[index]
        assert not [k for k in {**isvc["metadata"].get("labels", {}), **isvc["metadata"].get("annotations", {})}
                    if k in ("modelops.dev/stable-version", "modelops.dev/canary-version", "modelops.dev/desired-hash")]
        applied = md_get(kube, ns, NAME)["status"]["inferenceServiceApplied"]
        assert applied["uid"] == isvc["metadata"]["uid"]

        # ---- a canary aborted at its second step: rolled back through KServe, the stable predictor untouched
        # (not asserted: KServe v0.20 rebuilds the promoted predictor's Deployment through its stable code path, see
        # the report printed here when run with -s)
        stable_before = wait_for(lambda: settled(kube, ns, deployment_name("v2")), 60, "the promoted predictor settled")
        before = json.loads(every[-1]["deployments"][deployment_name("v2")]["template"])
        print("promoted Deployment template changed at promotion:",
              _diff(before, json.loads(stable_before[deployment_name("v2")]["template"])))
        stable_pods = sorted(pods.pods_of(deployment_name("v2")))

        at_30: list[float] = []  # when the second step was seen: aborted 3 s into it, once the sampler saw it

        def aborted(o: dict[str, Any]) -> bool:
            st = o.get("status") or {}
            ro = st.get("rollout") or {}
            if ro.get("state") == "Progressing" and ro.get("weight") == 30:
                at_30.append(time.monotonic())
            if at_30 and at_30[-1] - at_30[0] >= 3 and \
                    not (o["metadata"].get("annotations") or {}).get("modelops.dev/abort"):
                kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", NAME, {
                    "metadata": {"annotations": {"modelops.dev/abort": "true"}}})
            return "rollout" not in st and (st.get("lastRejected") or {}).get("storageUri") == URI["v3"]

        rolled_back = run_canary(live_operator, ns, pods, "v2", "v3", aborted, diag)
        assert 10 in rolled_back and 30 in rolled_back, f"sampled steps {sorted(rolled_back)}\n{diag()}"
        every = [s for w in sorted(rolled_back) for s in rolled_back[w]]
        for s in every[1:]:
            assert s["deployments"] == every[0]["deployments"] and s["pods"] == every[0]["pods"]
            assert s["isvc_generation"] == every[0]["isvc_generation"]
        st = md_get(kube, ns, NAME)["status"]
        assert st["stable"]["storageUri"] == URI["v2"]
        isvc = wait_for(lambda: (o := isvc_get(kube, ns, NAME)) and not o["spec"].get("canary") and o, 30,
                        "one predictor after the rollback", dump=lambda: diag())
        assert isvc["spec"]["predictor"]["name"] == v2
        wait_for(lambda: _deployment(kube, ns, deployment_name("v3")) is None, 60, "the canary removed by KServe")
        assert all(s["logged_service"] for s in every), (
            "the rolled-back canary was not reached through its agent: "
            + json.dumps([{k: s[k] for k in ("at", "state", "route", "traffic", "logged_service")} for s in every
                          if not s["logged_service"]][:5]) + "\n" + json.dumps([(s["at"], s["route"], bool(
                              s["logged_service"])) for s in every]) + "\n" + "\n".join(
                line for line in live_operator.log.read_text(errors="replace").splitlines()
                if "Service" in line or "HTTPRoute" in line or "waits" in line or "RolledBack" in line or "Abort" in line))
        wait_for(lambda: service_ports(kube, ns, logged_name("v3")) is None, 60,
                 "modelops' Service of the rolled-back canary removed", dump=lambda: diag())
        # the stable predictor was never touched: not by the canary's start, its steps, nor the rollback
        assert snapshot(kube, ns, [deployment_name("v2")]) == stable_before
        assert sorted(pods.pods_of(deployment_name("v2"))) == stable_pods
        assert not pods.errors, pods.errors


@pytest.fixture
def idle_operator(kserve_live: LiveKServe, tmp_path: Path) -> Iterator[Operator]:
    """The operator, not started: the test starts it when the old operator's objects are in place."""
    kube = kserve_live.kube
    kube.install_crds()
    kube.wait_served(GROUP, VERSION, "modeldeployments")
    op = Operator(kube, tmp_path / "operator.log")
    op.extra_env = {"MODELOPS_LOG_LEVEL": "INFO"}
    yield op
    if op.proc and op.proc.poll() is None:
        op.kill()


def test_upgrade_from_an_operator_that_labelled_the_inference_service_rewrites_nothing(
        kserve_live: LiveKServe, idle_operator: Operator, live_ns: str) -> None:
    """An InferenceService applied by the operator before the fix (its modelops.dev/stable-version label and
    desired-hash annotation, which KServe copied into the predictor's pod template): the new operator reads the
    old hash once, records it in status, and applies nothing: the InferenceService and its Deployment keep
    their generation and pod template."""
    from modelops.adapters.kube import FIELD_MANAGER
    from modelops.api.types import ServingPlan
    from modelops.desired.inference_service import (
        LEGACY_HASH_ANNOTATION,
        Defaults,
        inference_service,
        manifest_hash,
    )
    from modelops.settings import OperatorSettings

    kube, ns = kserve_live.kube, live_ns
    spec = {"model": {"storageUri": URI["v1"]}, "serving": {"deploymentMode": "Standard"}}
    md = kube.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": NAME}, "spec": spec})
    settings = OperatorSettings()
    old = inference_service(name=NAME, namespace=ns, uid=md["metadata"]["uid"], spec=spec,
                            plan=ServingPlan(ModelRef(storage_uri=URI["v1"])), mode="Standard",
                            defaults=Defaults(settings.server_image, settings.drift_exporter_url,
                                              settings.drift_token, settings.drift_exporter_shards),
                            modelops_route=True)
    old["metadata"]["labels"]["modelops.dev/stable-version"] = predictor_name(ModelRef(storage_uri=URI["v1"]))
    old["metadata"]["annotations"][LEGACY_HASH_ANNOTATION] = manifest_hash(old)
    kube.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", input=json.dumps(old))
    stable = deployment_name("v1")
    with PredictorPods(kserve_live, ns) as pods:
        before = wait_for(lambda: settled(kube, ns, stable), 120, "the old operator's predictor up")
        tpl = json.loads(before[stable]["template"])
        assert tpl["metadata"]["labels"]["modelops.dev/stable-version"], "KServe did not propagate the label"
        isvc_before = isvc_get(kube, ns, NAME) or {}
        pods_before = sorted(pods.pods_of(stable))

        idle_operator.start()
        got = wait_for(lambda: (md_get(kube, ns, NAME).get("status") or {}).get("inferenceServiceApplied"), 60,
                       "the old hash recorded in status")
        assert got == {"hash": old["metadata"]["annotations"][LEGACY_HASH_ANNOTATION],
                       "uid": isvc_before["metadata"]["uid"], "generation": isvc_before["metadata"]["generation"]}
        wait_for(lambda: cond(md_get(kube, ns, NAME), "Ready").get("status") == "True", 60, "Ready")
        time.sleep(3)  # a few more reconciles
        isvc_after = isvc_get(kube, ns, NAME) or {}
        assert isvc_after["metadata"]["generation"] == isvc_before["metadata"]["generation"]
        assert isvc_after["metadata"]["labels"] == isvc_before["metadata"]["labels"]
        mine = [m for m in isvc_after["metadata"]["managedFields"] if m["manager"] == FIELD_MANAGER]
        assert mine == [m for m in isvc_before["metadata"]["managedFields"] if m["manager"] == FIELD_MANAGER], \
            "the new operator re-applied the InferenceService"
        assert snapshot(kube, ns, [stable]) == before and sorted(pods.pods_of(stable)) == pods_before
