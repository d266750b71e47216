"""The RetrainSchedule `performance` trigger (issue 17) against the real drift exporter and a real Prometheus.

The test sends the exporter one model version's predictions (as the KServe payload logger does) and their
labels by inference id, in three phases of the same served model:
1. too few labels: the trigger reports NotEnoughLabels (condition, status, Event) and fires nothing;
2. pure covariate shift (the irrelevant feature `c` moves by 3 sd; labels follow the same concept): inputs
   drift, the realised AUC and the label-free estimate stay flat, and the trigger stays quiet for longer than
   its `for`;
3. concept shift (the same inputs as in training, but the effect of `a` on the label is inverted): the realised
   AUC falls below the threshold and the trigger fires a retrain after `for`.
The training Pods are held Pending by the kubelet stand-in: this test is about when runs start.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from modelops.decide.triggers import parse_time
from tests.cluster.retrain.helpers import condition, create, events, get, runs, schedule, wait_for
from tests.fixtures import quality_loop as ql

pytestmark = pytest.mark.cluster

FOR_S = 4.0
THRESHOLD = 0.7
MIN_LABELS = 200
WINDOW = 400  # rows of the exporter's quality window (and of each phase)


def _perf_runs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in runs(obj) if r["trigger"] == "performance"]


def test_performance_trigger_fires_on_concept_shift_not_on_covariate_shift(
        retrain_operator: Any, namespace: str, dataset: Path, kubelet_standin: Any, prometheus: Any,
        tmp_path: Path) -> None:
    kube = retrain_operator.kube
    kubelet_standin.hold(namespace)
    ref = ql.reference_dir(tmp_path / "reference", calibrated=True)
    exp = ql.start_exporter(tmp_path, ref, "--min-rows", "100", "--window-rows", str(WINDOW),
                            "--quality-min-labels", "50", "--quality-window-rows", str(WINDOW))
    try:
        prom = prometheus([f"127.0.0.1:{exp.port}"], scrape_interval="1s")
        sel = f'model_namespace="{namespace}",model="churn-live",version="1"'
        rng = np.random.default_rng(3)

        def phase(tag: str, x: Any, y: np.ndarray, n_labels: int | None = None) -> None:
            ids = [f"{tag}-{i}" for i in range(len(x))]
            exp.predict(namespace, "churn-live", "1", ids, x, ql.model_score(x))
            k = len(x) if n_labels is None else n_labels
            assert exp.feedback(namespace, ids[:k], y[:k]).get("joined") == k

        # 1. predictions, but only 100 labels: realised AUC exists (exporter minimum 50), minLabels 200 not met
        x0 = ql.frame(rng, WINDOW)
        y0 = ql.labels(rng, x0)
        phase("base", x0, y0, n_labels=100)
        prom.wait_for(f"max(modelops_quality_joined_labels{{{sel}}})", lambda v: v == 100, 30)
        create(kube, namespace, schedule("perf", dataset, triggers={"performance": {
            "prometheusUrl": prom.url, "model": "churn-live", "metric": "auc", "source": "realised",
            "threshold": THRESHOLD, "minLabels": MIN_LABELS, "for": f"{FOR_S:g}s", "cooldown": "1h",
            "checkInterval": "1s"}}))
        few = wait_for("NotEnoughLabels", lambda: (lambda c: c if c.get("reason") == "NotEnoughLabels" else None)(
            condition(get(kube, namespace, "perf"), "PerformanceTrigger")), 30, operator=retrain_operator)
        assert few["status"] == "Unknown" and "100 joined labels, fewer than minLabels 200" in few["message"]
        st = get(kube, namespace, "perf")["status"]
        assert st["performance"]["joinedLabels"] == 100 and st["performance"]["version"] == "1"
        wait_for("the NotEnoughLabels Event", lambda: "PerformanceNotEnoughLabels" in events(kube, namespace, "perf"),
                 15, operator=retrain_operator)

        # the rest of the labels: judged, healthy
        ids = [f"base-{i}" for i in range(WINDOW)]
        assert exp.feedback(namespace, ids[100:], y0[100:]).get("joined") == WINDOW - 100
        healthy = wait_for("QualityHealthy", lambda: (lambda c: c if c.get("reason") == "QualityHealthy" else None)(
            condition(get(kube, namespace, "perf"), "PerformanceTrigger")), 30, operator=retrain_operator)
        auc0 = roc_auc_score(y0, ql.model_score(x0))
        assert healthy["status"] == "False" and f"within threshold {THRESHOLD:g}" in healthy["message"]
        assert get(kube, namespace, "perf")["status"]["performance"]["value"] == pytest.approx(auc0, abs=1e-9)
        est0 = prom.wait_for(f'max(modelops_quality_estimated{{{sel},metric="auc"}})', lambda v: v is not None, 30)
        assert est0 is not None

        # 2. pure covariate shift: the window fills with shifted inputs whose labels follow the same concept
        x1 = ql.frame(rng, WINDOW, c_shift=3.0)
        y1 = ql.labels(rng, x1)
        phase("cov", x1, y1)
        auc1 = roc_auc_score(y1, ql.model_score(x1))
        assert auc1 > THRESHOLD + 0.05
        prom.wait_for(f'max(modelops_quality_realised{{{sel},metric="auc"}})',
                      lambda v: v is not None and abs(v - auc1) < 1e-9, 30)
        # the inputs did drift (the drift trigger would fire)...
        assert (prom.value(f"max(modelops_drift_feature_drift{{{sel},feature=\"c\"}})") or 0) == 1
        # ...but the estimate stays flat and the trigger quiet for longer than `for`
        quiet_until = time.monotonic() + FOR_S + 4
        while time.monotonic() < quiet_until:
            obj = get(kube, namespace, "perf")
            assert not _perf_runs(obj), obj["status"]
            assert condition(obj, "PerformanceTrigger")["reason"] == "QualityHealthy", condition(obj, "PerformanceTrigger")
            time.sleep(0.5)
        est1 = prom.value(f'max(modelops_quality_estimated{{{sel},metric="auc"}})')
        assert est1 is not None and abs(est1 - est0) < 0.03, (est0, est1)

        # 3. concept shift: the training inputs again, but labels of another concept
        x2 = ql.frame(rng, WINDOW)
        y2 = ql.labels(rng, x2, concept=-1.0)
        auc2 = roc_auc_score(y2, ql.model_score(x2))
        assert auc2 < THRESHOLD - 0.1
        phase("concept", x2, y2)
        pending = wait_for("Pending", lambda: (lambda o: o if condition(o, "PerformanceTrigger").get("reason")
                                               == "Pending" else None)(get(kube, namespace, "perf")),
                           30, operator=retrain_operator)
        since = parse_time(pending["status"]["performance"]["holdingSince"])
        fired = wait_for("a performance run", lambda: (lambda rs: rs or None)(
            _perf_runs(get(kube, namespace, "perf"))), 30, operator=retrain_operator)
        run = fired[0]
        created = parse_time(run["createdTime"])
        assert since is not None and created is not None
        assert (created - since).total_seconds() >= FOR_S, (run, since)
        assert run["job"].startswith("perf-perf-") and f"< threshold {THRESHOLD:g}" in run["message"]
        est2 = prom.value(f'max(modelops_quality_estimated{{{sel},metric="auc"}})')
        # the label-free estimate cannot see a concept shift: only realised quality could fire this
        assert est2 is not None and est2 > THRESHOLD, est2
        wait_for("the Triggered Event", lambda: "Triggered" in events(kube, namespace, "perf"), 15,
                 operator=retrain_operator)
    finally:
        exp.stop()
