"""The whole loop for real on a node: train v1 in a Job -> serve -> shifted traffic -> drift -> a drift-
triggered Job trains v2 -> canary with Prometheus analysis -> promoted (MLflow champion alias moves).

The same code runs `modelops demo` (modelops_dev.e2e.loop). Stand-ins, named in their modules: KServe's
controller (modelops_dev.e2e.kserve_standin), the traffic split and the payload logger (modelops_dev.e2e.traffic).
"""

from __future__ import annotations

import json
import re

import pytest

from modelops_dev.e2e.loop import Loop

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]


def test_full_loop(e2e_loop: Loop) -> None:
    loop = e2e_loop
    loop.preflight()
    loop.install()

    v1 = loop.train_v1()
    logs = loop.job_logs(v1["job"])
    # the trainer Pod really ran the search: its log has one line per trial ("trial 3/4 xgboost ...")
    trial_lines = re.findall(r"\] trial \d+/\d+ ", logs)
    assert v1["trials"] >= 2 and len(trial_lines) == v1["trials"], logs[-3000:]
    assert v1["version"] == "1"
    versions = loop.versions()
    assert [v["version"] for v in versions] == ["1"], versions

    loop.serve_v1()
    isvc = loop.isvc()
    assert isvc["spec"]["predictor"]["name"] == "v1"
    pods = loop.kube.get("pods", namespace=loop.ns, selector="serving.kserve.io/inferenceservice=churn")["items"]
    assert any(p["status"].get("phase") == "Running" for p in pods)

    try:
        v2 = loop.drift_and_retrain()
        assert v2["trigger"] == "drift" and v2["version"] == "2", v2
        # drift was really measured from the logged traffic and read from Prometheus
        assert max(s["drift_share"] or 0 for s in loop.tl.samples) >= 0.3, loop.tl.samples
        assert [v["version"] for v in loop.versions()] == ["1", "2"]

        loop.canary_and_promote("2")
    finally:
        if loop.traffic:
            loop.traffic.stop()
    md = loop.md()["status"]
    assert md["stable"]["version"] == "2" and not (md.get("canary") or {}).get("version")
    assert loop.alias("champion") == "2"
    promoted = [h for h in md.get("history") or [] if h.get("version") == "2"]
    assert promoted and promoted[0]["result"] == "Promoted", md.get("history")
    # the rollout went through the canary weights while traffic was split by them
    weights = {s["weight"] for s in loop.tl.samples}
    assert {25, 60} <= weights, sorted(weights)
    assert loop.traffic is not None and loop.traffic.stats.sent["canary"] > 0, loop.traffic.stats
    assert loop.traffic.stats.errors == {"stable": 0, "canary": 0}, loop.traffic.stats
    assert loop.isvc()["spec"]["predictor"]["name"] == "v2" and not loop.isvc()["spec"].get("canary")
    print(json.dumps(loop.tl.to_json()["stage_seconds"]))
