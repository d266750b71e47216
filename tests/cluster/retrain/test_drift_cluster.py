"""The drift trigger against a real Prometheus scraping a real exporter process.

A gauge exporter serves modelops_drift_share; a real Prometheus scrapes it every second; the operator
evaluates `max(modelops_drift_share{model="drifty"})` every second. The training Pods are held Pending by
the kubelet stand-in (`hold`): this test is about when runs are started, not about training (the real
trainer runs in test_manual_and_outcome.py and test_history_approval.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from modelops.decide.triggers import parse_time
from tests.cluster.retrain.helpers import condition, create, get, runs, schedule, wait_for

pytestmark = pytest.mark.cluster

FOR_S = 6.0
COOLDOWN_S = 20.0


def _drift_runs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in runs(obj) if r["trigger"] == "drift"]


def test_drift_fires_after_for_respects_cooldown_and_goes_unknown_without_prometheus(
        retrain_operator: Any, namespace: str, dataset: Path, kubelet_standin: Any, gauge_exporter: Any,
        prometheus: Any) -> None:
    kube = retrain_operator.kube
    kubelet_standin.hold(namespace)
    exporter = gauge_exporter()
    exporter.set("modelops_drift_share", 0.1, model="drifty", version="1")
    prom = prometheus([exporter.target], scrape_interval="1s")
    query = 'max(modelops_drift_share{model="drifty"})'
    prom.wait_for(query, lambda v: v == 0.1, 60)

    create(kube, namespace, schedule("drifty", dataset, concurrencyPolicy="Allow", triggers={"drift": {
        "prometheusUrl": prom.url, "query": query, "threshold": 0.3, "for": f"{FOR_S:g}s",
        "cooldown": f"{COOLDOWN_S:g}s", "checkInterval": "1s"}}))
    below = wait_for("DriftTrigger False", lambda: (lambda c: c if c.get("reason") == "BelowThreshold" else None)(
        condition(get(kube, namespace, "drifty"), "DriftTrigger")), 30, operator=retrain_operator)
    assert below["status"] == "False" and "0.1" in below["message"]

    # drift rises: the condition holds, but nothing starts before `for` has passed
    exporter.set("modelops_drift_share", 0.5, model="drifty", version="1")
    pending = wait_for("DriftTrigger Pending", lambda: (lambda o: o if condition(o, "DriftTrigger").get("reason")
                                                        == "Pending" else None)(get(kube, namespace, "drifty")),
                       30, operator=retrain_operator)
    holding_since = parse_time(pending["status"]["drift"]["holdingSince"])
    assert holding_since is not None and condition(pending, "DriftTrigger")["status"] == "True"
    seen_pending_without_run = 0
    deadline = time.monotonic() + 60
    while True:
        obj = get(kube, namespace, "drifty")
        if _drift_runs(obj):
            break
        if condition(obj, "DriftTrigger").get("reason") == "Pending":
            seen_pending_without_run += 1
        if time.monotonic() > deadline:
            raise AssertionError(f"no drift run after 60s: {obj.get('status')}")
        time.sleep(0.25)
    assert seen_pending_without_run >= 4, "the condition was held for `for` before firing, and visibly so"
    first = _drift_runs(obj)[0]
    created = parse_time(first["createdTime"])
    assert created is not None
    # fired only after the condition had held for `for` (the operator's clock is the real one here)
    assert (created - holding_since).total_seconds() >= FOR_S, (first, holding_since)
    assert (created - holding_since).total_seconds() < FOR_S + 10, "and promptly after"
    assert first["job"].startswith("drifty-drift-")

    # the drift persists: no second drift run inside the cooldown, CoolingDown says why
    cooling = wait_for("CoolingDown", lambda: condition(get(kube, namespace, "drifty"), "DriftTrigger").get("reason")
                       == "CoolingDown", 15, operator=retrain_operator)
    assert cooling
    while (time.time() - created.timestamp()) < COOLDOWN_S - 2:
        assert len(_drift_runs(get(kube, namespace, "drifty"))) == 1
        time.sleep(0.5)
    # after the cooldown it fires again (the drift still holds)
    second = wait_for("the second drift run", lambda: (lambda rs: rs if len(rs) == 2 else None)(
        _drift_runs(get(kube, namespace, "drifty"))), 20, operator=retrain_operator)[0]
    gap = (parse_time(second["createdTime"]) - created).total_seconds()  # type: ignore[operator]
    assert gap >= COOLDOWN_S, (second, first)
    assert second["id"] != first["id"] and second["job"] != first["job"]

    # Prometheus goes away: Unknown with the reason, and nothing fires even past the next cooldown
    prom.stop()
    unknown = wait_for("DriftTrigger Unknown", lambda: (lambda c: c if c.get("status") == "Unknown" else None)(
        condition(get(kube, namespace, "drifty"), "DriftTrigger")), 30, operator=retrain_operator)
    assert unknown["reason"] == "PrometheusUnreachable" and "unreachable" in unknown["message"]
    assert "nothing fires" in unknown["message"]
    time.sleep(COOLDOWN_S + 3)
    final = get(kube, namespace, "drifty")
    assert len(_drift_runs(final)) == 2
    assert condition(final, "DriftTrigger")["reason"] == "PrometheusUnreachable"
    assert "holdingSince" not in final["status"]["drift"], "an unobserved condition is not assumed to hold"
