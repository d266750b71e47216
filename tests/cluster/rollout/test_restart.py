"""The operator SIGKILLed at random instants of canary rollouts: it resumes at the same step, never promotes a
version twice, and never leaves a traffic split that no rollout in status owns.

Plain storage URIs and no analysis metrics keep this test about the state machine and its persistence (steps
advance on time); the registry and Prometheus paths are covered by test_rollout.py.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from typing import Any

import pytest

from modelops.api import GROUP, VERSION
from tests.cluster.rollout.helpers import isvc_get, md_get, storage_uri_of, wait_for

pytestmark = pytest.mark.cluster

TRIALS = 10
STEPS = [{"weight": w, "pause": "1s"} for w in (10, 20, 30, 40, 50, 60)]


def split_state(kube: Any, ns: str, name: str) -> str:
    """'orphan': the InferenceService splits traffic and status holds neither the rollout nor the decision that
    ended it; 'lag': status already decided the end (its stable version is what the InferenceService serves)
    and the operator has not re-applied yet; 'ok' otherwise."""
    isvc = isvc_get(kube, ns, name)
    st = md_get(kube, ns, name).get("status") or {}
    if not isvc or isvc["spec"]["predictor"].get("canaryTrafficPercent") in (None, 0, 100):
        return "ok"
    if st.get("canary") and st.get("rollout"):
        return "ok"
    if (st.get("stable") or {}).get("storageUri") == storage_uri_of(isvc):
        return "lag"
    return f"orphan: ISVC {storage_uri_of(isvc)} split without a rollout in status {st}"


def test_sigkill_at_random_steps_resumes_exactly(uri_operator: Any, namespace: str) -> None:
    op, kube = uri_operator, uri_operator.kube
    rnd = random.Random(7)
    md = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": "crash"},
          "spec": {"model": {"storageUri": "s3://models/crash/v0"}, "registry": {"pollInterval": "1s"},
                   "serving": {"deploymentMode": "Knative"}, "rollout": {"steps": STEPS, "historyLimit": 50}}}
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", md)
    wait_for(lambda: (md_get(kube, namespace, "crash").get("status") or {}).get("phase") == "Serving", 30, "serving")

    problems: list[str] = []
    halt = threading.Event()

    lag_since: list[float | None] = [None]
    longest_lag = [0.0]

    def watch() -> None:  # the invariant, checked continuously while the operator dies and restarts
        while not halt.is_set():
            try:
                state = split_state(kube, namespace, "crash")
                if state.startswith("orphan"):
                    problems.append(state)
                if state == "lag":
                    lag_since[0] = lag_since[0] or time.monotonic()
                    longest_lag[0] = max(longest_lag[0], time.monotonic() - lag_since[0])
                else:
                    lag_since[0] = None
            except Exception:
                pass
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    kills = 0
    version = 0
    try:
        while kills < TRIALS:
            version += 1
            uri = f"s3://models/crash/v{version}"
            kube.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", "crash",
                                                       {"spec": {"model": {"storageUri": uri}}})
            # two kills per rollout, at random instants of it
            for _ in range(2):
                time.sleep(rnd.uniform(0.5, 2.5))
                before = md_get(kube, namespace, "crash")["status"]
                ro = before.get("rollout")
                op.kill(signal.SIGKILL)
                kills += 1
                after_kill = md_get(kube, namespace, "crash")["status"]
                op.start()
                if ro is None:
                    continue
                # after the restart the same rollout goes on from the persisted step, never from step 0
                time.sleep(0.5)
                now = md_get(kube, namespace, "crash")["status"]
                persisted = after_kill.get("rollout") or {}
                ro_after = now.get("rollout") or {}
                if persisted and ro_after.get("startedAt") == persisted.get("startedAt"):
                    assert ro_after["step"] >= persisted["step"], (persisted, ro_after)
                elif persisted:  # it finished meanwhile: as a promotion of that very canary
                    assert now["stable"]["storageUri"] == after_kill["canary"]["storageUri"], now
            wait_for(lambda u=uri: md_get(kube, namespace, "crash")["status"]["stable"]["storageUri"] == u, 60,
                     f"promotion of {uri}")
    finally:
        halt.set()
        watcher.join(5)
    st = md_get(kube, namespace, "crash")["status"]
    promoted = [h["version"] for h in st["history"] if h["result"] == "Promoted"]
    assert len(promoted) == len(set(promoted)), f"a version was promoted twice: {promoted}"
    assert sorted(promoted) == sorted(f"s3://models/crash/v{i}" for i in range(1, version + 1)), promoted
    assert not problems, problems[:3]
    # a decided end of a split reaches the InferenceService with the next apply (after a restart at worst)
    assert longest_lag[0] < 30, longest_lag
    events = [e for e in kube.core.list_namespaced_event(namespace).items
              if e.involved_object.name == "crash" and e.reason == "Promoted"]
    assert len(events) <= version
    # the last promotion is written to status before its apply (the watcher stopped with it): the same bound as
    # the lag above applies to it
    wait_for(lambda: "canaryTrafficPercent" not in ((isvc_get(kube, namespace, "crash") or {}).get("spec") or {})
             .get("predictor", {}), 30, "the last promotion applied to the InferenceService",
             dump=lambda: {"isvc": isvc_get(kube, namespace, "crash"), "status": md_get(kube, namespace, "crash")})
    isvc = isvc_get(kube, namespace, "crash") or {}
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"] and "rollout" not in st
