"""Quality-gated canaries (issue 17), against the real drift exporter, a real Prometheus scraping it, real MLflow
and the operator on a real API server.

The test is the client and the KServe payload logger at once: it sends each version's predictions as the
agent logs them (request and response CloudEvents with the version annotation) and then the ground truth by
inference id (`POST /feedback`). Both versions see the very same rows and labels (under other ids), so the
only difference between their realised AUCs is the model: a challenger with a planted label flip (scores of
a model trained on partly flipped labels: about 0.05 AUC lower, same latency, same error rate, as the
analysis has no other metric) is rolled back by the quality metric within 2 analysis intervals of the moment
its joined-label count reached minLabels in Prometheus; below minLabels the check is Inconclusive and the
canary holds. A healthy challenger is promoted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from modelops.api import GROUP, VERSION
from tests.cluster.rollout.helpers import PrometheusProc, cond, md_get, register_versions, wait_for
from tests.fixtures import quality_loop as ql

pytestmark = pytest.mark.cluster

INTERVAL_S = 3.0
MIN_LABELS = 200
ROWS = 400  # rows (and labels) each version gets; the canary's labels arrive in two parts around MIN_LABELS
FIRST_PART = 150


@pytest.fixture
def exporter(tmp_path: Path, prometheus: PrometheusProc) -> Iterator[ql.QualityExporter]:
    ref = ql.reference_dir(tmp_path / "reference", calibrated=False)
    exp = ql.start_exporter(tmp_path, ref, "--min-rows", "50", "--quality-min-labels", "50")
    prometheus.set_targets([(exp.port, {"job_kind": "drift-exporter"})])
    yield exp
    prometheus.set_targets([])
    exp.stop()


def md(name: str, model: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": "1s"},
                     "serving": {"deploymentMode": "Knative"},
                     "rollout": {"steps": [{"weight": 20, "pause": "1s"}, {"weight": 50, "pause": "1s"}],
                                 "analysis": {"interval": f"{INTERVAL_S:g}s", "failureLimit": 0,
                                              "consecutiveErrorLimit": 5, "inconclusiveLimit": 1000,
                                              "metrics": [{"name": "realised-auc", "quality": {
                                                  "metric": "auc", "source": "realised", "minLabels": MIN_LABELS,
                                                  "maxDrop": 0.02}}]}}}}


def flipped_scores(rng: np.random.Generator, scores: np.ndarray, share: float) -> np.ndarray:
    """Scores of a model that learned from labels of which `share` were flipped: on that share of the inputs it
    answers as if the concept were inverted."""
    out = scores.copy()
    flip = rng.random(len(scores)) < share
    out[flip] = 1.0 - out[flip]
    return out


def setup(op: Any, ns: str, name: str, mlflow_uri: str, models: dict[str, Path]) -> MlflowClient:
    client = MlflowClient(mlflow_uri)
    register_versions(mlflow_uri, name, [models["v1"], models["v2"]])
    client.set_registered_model_alias(name, "champion", "1")
    op.kube.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", md(name, name))
    wait_for(lambda: (o := md_get(op.kube, ns, name)) and cond(o, "Ready").get("status") == "True", 30,
             "version 1 serving")
    return client


def data(seed: int) -> tuple[Any, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = ql.frame(rng, ROWS)
    return x, ql.labels(rng, x), ql.model_score(x)


def joined(prom: PrometheusProc, ns: str, name: str, version: str) -> float:
    import json
    import urllib.parse
    import urllib.request

    q = f'max(modelops_quality_joined_labels{{model_namespace="{ns}",model="{name}",version="{version}"}})'
    with urllib.request.urlopen(f"{prom.url}/api/v1/query?query={urllib.parse.quote(q)}", timeout=5) as r:
        result = json.loads(r.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def run_canary(op: Any, ns: str, name: str, exp: ql.QualityExporter, prom: PrometheusProc, mlflow_uri: str,
               models: dict[str, Path], canary_scores: Any) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
    """Serve v1, feed v1 its predictions and labels, start the canary v2, feed its predictions and the first
    labels (below minLabels), check it holds Inconclusive, then the rest. Returns (the status once the rollout
    ended, the time the canary's joined labels reached minLabels in Prometheus, the statuses seen)."""
    kube = op.kube
    client = setup(op, ns, name, mlflow_uri, models)
    x, y, scores = data(5)
    exp.predict(ns, name, "1", [f"s-{i}" for i in range(ROWS)], x, scores)
    assert exp.feedback(ns, [f"s-{i}" for i in range(ROWS)], y).get("joined") == ROWS
    client.set_registered_model_alias(name, "challenger", "2")
    wait_for(lambda: (md_get(kube, ns, name).get("status") or {}).get("canary", {}).get("version") == "2", 30,
             "the canary rollout of version 2")
    ids = [f"c-{i}" for i in range(ROWS)]
    exp.predict(ns, name, "2", ids, x, canary_scores(scores))
    assert exp.feedback(ns, ids[:FIRST_PART], y[:FIRST_PART]).get("joined") == FIRST_PART
    # below minLabels: the check is Inconclusive and the canary holds its first step (never a pass)
    wait_for(lambda: joined(prom, ns, name, "2") == FIRST_PART, 20, "the first labels in Prometheus")
    held = wait_for(lambda: (lambda st: st if any(
        "joined labels < minLabels" in c.get("message", "") for c in (st.get("rollout") or {}).get("lastChecks") or [])
        else None)(md_get(kube, ns, name)["status"]), 4 * INTERVAL_S + 10, "an Inconclusive quality check")
    check = held["rollout"]["lastChecks"][0]
    assert check["result"] == "Inconclusive" and f"{FIRST_PART} joined labels < minLabels {MIN_LABELS}" in \
        check["message"], check
    assert held["rollout"]["weight"] == 20 and held["rollout"].get("passed", 0) == 0
    # the rest of the labels: minLabels reached
    assert exp.feedback(ns, ids[FIRST_PART:], y[FIRST_PART:]).get("joined") == ROWS - FIRST_PART
    seen: list[dict[str, Any]] = []
    reached = wait_for(lambda: joined(prom, ns, name, "2") >= MIN_LABELS and time.monotonic(), 20,
                       "minLabels joined labels in Prometheus", interval=0.05)

    def ended() -> dict[str, Any] | None:
        st = md_get(kube, ns, name)["status"]
        seen.append({"t": time.monotonic(), "rollout": st.get("rollout"), "history": st.get("history")})
        ro = st.get("rollout") or {}
        return st if ro.get("state") == "RollingBack" or (st.get("history") and not ro) else None

    final = wait_for(ended, 60, "the end of the rollout", interval=0.1, dump=lambda: seen[-3:])
    return final, reached, seen


def test_a_challenger_with_a_planted_label_flip_is_rolled_back_by_realised_auc(
        rollout_operator: Any, namespace: str, mlflow_server: Any, prometheus: PrometheusProc,
        exporter: ql.QualityExporter, models: dict[str, Path]) -> None:
    rng = np.random.default_rng(99)
    _, y, scores = data(5)
    bad = flipped_scores(rng, scores, 0.12)
    drop = roc_auc_score(y, scores) - roc_auc_score(y, bad)
    assert 0.035 <= drop <= 0.08, drop  # the planted flip: about 0.05 AUC
    _, reached, seen = run_canary(rollout_operator, namespace, "flip", exporter, prometheus, mlflow_server.uri,
                                      models, lambda s: bad)
    rolled = next(s for s in seen if (s["rollout"] or {}).get("state") == "RollingBack"
                  or (s["history"] and s["history"][0].get("result") == "RolledBack"))
    assert rolled["t"] - reached <= 2 * INTERVAL_S, (rolled["t"] - reached, rolled)
    wait_for(lambda: (md_get(rollout_operator.kube, namespace, "flip")["status"].get("history") or [{}])[0]
             .get("result") == "RolledBack", 60, "RolledBack in history")
    st = md_get(rollout_operator.kube, namespace, "flip")["status"]
    assert st["stable"]["version"] == "1" and st["history"][0]["version"] == "2"
    message = st["history"][0]["message"]
    assert "realised-auc" in message and "worse than stable" in message and "maxDrop 0.02" in message, message
    # the values the operator judged are scikit-learn's on the same rows
    check = next(c for s in seen for c in ((s["rollout"] or {}).get("lastChecks") or []) if c["result"] == "Fail")
    assert check["value"] == pytest.approx(roc_auc_score(y, bad), abs=1e-9)
    assert check["baseline"] == pytest.approx(roc_auc_score(y, scores), abs=1e-9)
    # the rejection reaches MLflow through the outbox, after the status that records the rollback
    client = MlflowClient(mlflow_server.uri)
    wait_for(lambda: "modelops.dev/rejected" in client.get_model_version("flip", "2").tags, 30,
             "version 2 tagged rejected in MLflow",
             dump=lambda: md_get(rollout_operator.kube, namespace, "flip")["status"].get("outbox"))


def test_a_healthy_challenger_is_promoted_on_realised_auc(
        rollout_operator: Any, namespace: str, mlflow_server: Any, prometheus: PrometheusProc,
        exporter: ql.QualityExporter, models: dict[str, Path]) -> None:
    rng = np.random.default_rng(98)
    _, y, scores = data(5)
    # a retrained model: the same ranking up to small noise
    healthy = np.clip(scores + rng.normal(0, 0.01, len(scores)), 0, 1)
    assert abs(roc_auc_score(y, scores) - roc_auc_score(y, healthy)) < 0.01
    final, _, seen = run_canary(rollout_operator, namespace, "healthy", exporter, prometheus, mlflow_server.uri,
                                models, lambda s: healthy)
    assert final["history"][0]["result"] == "Promoted" and final["stable"]["version"] == "2", final["history"]
    passes = [c for s in seen for c in ((s["rollout"] or {}).get("lastChecks") or []) if c["result"] == "Pass"]
    assert passes and passes[-1]["value"] == pytest.approx(roc_auc_score(y, healthy), abs=1e-9)
