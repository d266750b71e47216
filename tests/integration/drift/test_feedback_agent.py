"""Labels join KServe's own logged predictions (issue 17, item 5), without a node: real processes only.

    GatewayTraffic (the loop's client) --Ce-Id: business key--> KServe v0.20.0's agent (its own binary, built
    from its Go module, as a host process) --> `modelops serve` (a churn model with the trainer's reference
    profile and calibrator) ; the agent logs request and response CloudEvents to `modelops drift-exporter`
    at the namespace URL the operator writes into the logger
    LabelFeed (the loop's labels: the generator's truth, late and out of order) --> the exporter's
    /feedback/ns/NS/TOKEN, the token of the same logger URL

The exporter joins every label it gets with the prediction the agent logged under the same id: joined > 0,
unmatched 0, and the realised quality it exports equals scikit-learn on the joined rows. Twice: labels 1-4 s
late, and labels sent as soon as the answer came while the agent's logged events reach the exporter 1 s
later (a relay between them holds each event for a second, as an agent batching its log output or a busy
node does; the node's e2e run, issue 17): those labels come before their prediction, wait for it in the
exporter and join when it comes.
"""

from __future__ import annotations

import heapq
import http.server
import itertools
import json
import socket
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops.formats.drift_url import VERSION_ANNOTATION, logger_url
from modelops_dev.e2e.gateway_traffic import GatewayTraffic, v2_inputs
from modelops_dev.e2e.labels import LabelDelay, LabelFeed, TruthBook
from tests.fixtures.procs import free_port, http_ok, start, stop, wait_until
from tests.integration.drift.conftest import TOKEN, metrics_text, sample_value

pytestmark = pytest.mark.integration

NS, MODEL, VERSION = "shop", "churn", "3"
ROWS = 10  # rows per inference


def agent_binary() -> Path:
    from modelops_dev.cluster import versions
    from modelops_dev.cluster.build import serving_ready

    if not serving_ready("kserve"):
        pytest.fail("KServe's agent is not built; run: modelops cluster build-serving kserve", pytrace=False)
    return versions.serving_dir("kserve") / "bin" / "agent"


def churn_model(root: Path) -> Path:
    """A churn classifier in a model directory as the trainer writes it: MLflow sklearn model, modelops.json,
    and the reference profile with the calibrator fitted on a held-out split."""
    import mlflow.sklearn
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from modelops.formats.quality import CALIBRATION_KEY
    from modelops.formats.reference_profile import write_profile
    from modelops_pipelines.calibration import fit_classification
    from modelops_pipelines.generate import TARGET, generate_churn
    from modelops_pipelines.profile import build_reference_profile

    data = generate_churn(rows=4000, seed=1)
    x, y = data.drop(columns=[TARGET]), data[TARGET].to_numpy()
    cats = [c for c in x.columns if x[c].dtype == object]
    nums = [c for c in x.columns if c not in cats]
    pipe = Pipeline([("prep", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), cats),
                                                 ("num", StandardScaler(), nums)])),
                     ("model", LogisticRegression(max_iter=1000))])
    train, held = slice(0, 3000), slice(3000, None)
    pipe.fit(x.iloc[train], y[train])
    path = root / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.models.signature import ModelSignature
        from mlflow.types.schema import ColSpec, Schema

        sig = ModelSignature(inputs=Schema([ColSpec("string" if c in cats else "double", c) for c in x.columns]),
                             outputs=Schema([ColSpec("long")]))
        mlflow.sklearn.save_model(pipe, str(path), signature=sig, input_example=x.head(3),
                                  serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
    profile = build_reference_profile(x.iloc[train], task="classification", categorical=cats,
                                      predictions=pipe.predict(x.iloc[train]))
    calibration = fit_classification(y[held], pipe.predict_proba(x.iloc[held]), [0, 1])
    assert calibration is not None
    profile[CALIBRATION_KEY] = calibration
    write_profile(profile, path)
    (path / "modelops.json").write_text(json.dumps({
        "task": "classification", "target": TARGET, "classes": [0, 1],
        "features": [{"name": c, "dtype": "string" if c in cats else "float64", "categorical": c in cats}
                     for c in x.columns],
        "metric": {"name": "roc_auc", "value": 0.8}, "family": "linear", "modelName": MODEL, "version": VERSION,
        "runId": "run-it"}))
    return path


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def post_json(url: str, body: Any) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return dict(json.loads(r.read()))


class LaggingRelay:
    """Between the agent and the exporter: answers each logged event at once (so the agent is never held up)
    and delivers it, path, headers and body unchanged, `lag` seconds later, in order."""

    HOP = frozenset({"host", "content-length", "connection", "transfer-encoding"})

    def __init__(self, target: str, lag: float) -> None:
        self.target, self.lag = target, lag
        self.heap: list[tuple[float, int, str, dict[str, str], bytes]] = []
        self.seq = itertools.count()
        self.cond = threading.Condition()
        self.delivered = 0
        self.errors: list[str] = []
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in relay.HOP}
                with relay.cond:
                    heapq.heappush(relay.heap, (time.monotonic() + relay.lag, next(relay.seq), self.path, headers,
                                                body))
                    relay.cond.notify()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.stopping = False
        self.threads = [threading.Thread(target=self.server.serve_forever, daemon=True),
                        threading.Thread(target=self._deliver, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def waiting(self) -> int:
        with self.cond:
            return len(self.heap)

    def _deliver(self) -> None:
        while True:
            with self.cond:
                while not self.stopping and (not self.heap or self.heap[0][0] > time.monotonic()):
                    self.cond.wait(0.01)
                if self.stopping:
                    return
                _, _, path, headers, body = heapq.heappop(self.heap)
            try:
                req = urllib.request.Request(self.target + path, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
                self.delivered += 1
            except Exception as exc:  # the test asserts there were none
                self.errors.append(repr(exc)[:300])

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


#: how late the labels come: 1-4 s after the answer; or at once (the feed posts every 50 ms) while the agent's
#: events reach the exporter 1 s after the answer (LaggingRelay)
DELAYS = {"late": (LabelDelay(share=1.0, median=2.0, sigma=0.5, minimum=1.0, maximum=4.0), 0.5, 0.0),
          "immediate": (LabelDelay(share=1.0, median=0.0, sigma=0.0, minimum=0.0, maximum=0.0), 0.05, 1.0)}


@pytest.mark.parametrize("delay", list(DELAYS))
def test_labels_by_ce_id_join_the_predictions_kserves_agent_logged(tmp_path: Path, delay: str) -> None:
    from sklearn.metrics import accuracy_score, roc_auc_score

    from modelops.formats.artifacts import tree_digest
    from modelops_pipelines.generate import TARGET, generate_churn

    agent = agent_binary()
    model = churn_model(tmp_path)
    exe = Path(sys.executable).with_name("modelops")
    procs = []
    label_delay, period, lag = DELAYS[delay]
    relay: LaggingRelay | None = None
    try:
        # the model server, the exporter (its default reference: the model's profile) and the agent
        http = free_port()
        server_log = tmp_path / "serve.log"
        procs.append(server := start([str(exe), "serve", "--model-dir", str(model), "--http-port", str(http),
                                      "--no-grpc", "--no-fast-path", "--model-sha256", tree_digest(model)],
                                     server_log))
        ex_port = free_port()
        ex_log = tmp_path / "exporter.log"
        procs.append(exporter := start([str(exe), "drift-exporter", "--host", "127.0.0.1", "--port", str(ex_port),
                                        "--log-level", "warning", "--reference", str(model), "--min-rows", "50",
                                        "--quality-min-labels", "50", "--join-timeout", "30"], ex_log,
                                       env={"MODELOPS_DRIFT_TOKEN": TOKEN}))
        ex = f"http://127.0.0.1:{ex_port}"
        # the URL the operator writes into the InferenceService's logger (modelops.desired.inference_service)
        log_url = logger_url(f"{ex}/events", TOKEN, NS)
        agent_url = log_url
        if lag:
            relay = LaggingRelay(ex, lag)
            agent_url = log_url.replace(ex, f"http://127.0.0.1:{relay.port}")
        a_port = free_port()
        agent_log = tmp_path / "agent.log"
        procs.append(agent_proc := start([str(agent), "--port", str(a_port), "--component-port", str(http),
                                          "--log-url", agent_url, "--log-mode", "all", "--inference-service", MODEL,
                                          "--namespace", NS, "--component", "predictor", "--endpoint", "default",
                                          "--source-uri", f"http://{MODEL}-v{VERSION}-predictor.{NS}/",
                                          "--metadata-annotations", f"{VERSION_ANNOTATION}={VERSION}"], agent_log,
                                         # what KServe's pod mutator sets: the model server's readiness probe
                                         env={"SERVING_READINESS_PROBE": json.dumps({
                                             "tcpSocket": {"port": http}, "timeoutSeconds": 1, "periodSeconds": 10,
                                             "successThreshold": 1, "failureThreshold": 3})}))
        wait_until(lambda: http_ok(f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready"), 300, "modelops serve",
                   server, server_log)
        wait_until(lambda: http_ok(f"{ex}/healthz"), 120, "drift exporter", exporter, ex_log)
        wait_until(lambda: port_open(a_port), 60, "KServe agent", agent_proc, agent_log)

        # the loop's labels: every prediction labelled (so the check below sees them all), 1-4 s late or at once
        feedback_url = log_url.replace("/events/ns/", "/feedback/ns/")
        feed = LabelFeed(lambda items: post_json(feedback_url, items), label_delay, seed=1, period=period).start()
        book = TruthBook("order", feed)
        pool = generate_churn(rows=600, seed=100)
        truth, features = pool[TARGET].astype(int).tolist(), pool.drop(columns=[TARGET])
        cursor = itertools.cycle(range(0, len(pool), ROWS))
        stop_at = len(pool) // ROWS
        answered: dict[str, int] = {}
        rows_of: dict[str, int] = {}  # inference id -> its first row in the pool

        def body() -> dict[str, Any]:
            start_row = next(cursor)
            b = book.request(v2_inputs(features.iloc[start_row:start_row + ROWS]), truth[start_row:start_row + ROWS])
            rows_of[b["id"]] = start_row
            return b

        def on_answer(b: dict[str, Any], status: int, version: str | None) -> None:
            if b.get("id"):
                answered[b["id"]] = status
                book.answered(b, status, version)

        # straight to the agent's port, the path a predictor Service takes to the agent in the cluster
        traffic = GatewayTraffic(f"http://127.0.0.1:{a_port}", f"{MODEL}.{NS}.example.com", MODEL, body,
                                 lambda: {f"v{VERSION}": 100}, senders=2, on_answer=on_answer).start()
        try:
            wait_until(lambda: len(answered) >= stop_at, 300, "every inference answered through the agent")
        finally:
            traffic.stop()
        assert set(answered.values()) == {200}, (answered, traffic.last_error)
        try:
            wait_until(lambda: feed.waiting == 0 and feed.sent == feed.scheduled, 60, "every label sent")
        finally:
            feed.stop()
        n = len(answered) * ROWS
        assert n >= len(pool) and feed.scheduled == feed.predictions == n, feed.report()

        # every label joined a prediction the agent logged under the client's Ce-Id; none unmatched. A label
        # sent at once may come before the agent's logged event: answered `early`, it joins when that comes
        assert feed.failed_posts == 0, feed.report()
        early = feed.outcomes["early"]
        if delay == "late":
            assert feed.outcomes["joined"] == n and feed.outcomes["unmatched"] == 0, feed.report()
        else:  # most labels came before the agent's event: they waited for it
            assert early >= n // 2, feed.report()
        assert feed.outcomes["joined"] + early == n and feed.outcomes["unmatched"] == 0, feed.report()
        assert sum(feed.outcomes.values()) == n, feed.report()
        if relay is not None:
            # the agent logs asynchronously: the last events may reach the relay after its queue ran empty
            wait_until(lambda: relay.waiting == 0 and relay.delivered >= 2 * len(answered), 60,
                       "the relay delivered the agent's events")
            assert relay.errors == [] and relay.delivered == 2 * len(answered), (relay.errors, relay.delivered)
        wait_until(lambda: sample_value(metrics_text(ex), "modelops_feedback_early_labels") == 0, 60,
                   "the early labels joined (their predictions logged)", exporter, ex_log)
        text = metrics_text(ex)
        print(json.dumps({"delay": delay, "labels": n, "answered_early": early,
                          "joined_late": sample_value(text, "modelops_feedback_early_joined_total")}))
        assert sample_value(text, "modelops_feedback_labels_total", outcome="joined") == n
        assert sample_value(text, "modelops_feedback_labels_total", outcome="unmatched") == 0
        assert sample_value(text, "modelops_feedback_early_joined_total") == early
        assert sample_value(text, "modelops_feedback_early_unmatched_total", reason="age") == 0
        assert sample_value(text, "modelops_feedback_early_unmatched_total", reason="capacity") == 0
        # the agent logged a request and a response event for each inference, none refused
        assert sample_value(text, "modelops_drift_events_received_total", kind="response") == len(answered)
        assert sample_value(text, "modelops_drift_events_received_total", kind="request") == len(answered)
        rejected = [line for line in text.splitlines() if line.startswith("modelops_drift_events_rejected_total{")]
        assert rejected and all(float(line.rsplit(" ", 1)[1]) == 0 for line in rejected), rejected
        # the exporter's label-delay histogram has them all; the late ones none within the first second
        assert sample_value(text, "modelops_feedback_label_delay_seconds_count") == n
        if delay == "late":
            assert sample_value(text, "modelops_feedback_label_delay_seconds_bucket", le="1.0") == 0

        # the realised quality is scikit-learn's on the joined rows (the served scores, read back from the
        # model server with the same rows)
        mv = {"model_namespace": NS, "model": MODEL, "version": VERSION}
        assert sample_value(text, "modelops_quality_joined_labels", **mv) == n
        scores = post_json(f"http://127.0.0.1:{http}/v2/models/{MODEL}/infer",
                           {"inputs": v2_inputs(features)})
        pool_proba = next(np.asarray(o["data"], dtype=float).reshape(o["shape"]) for o in scores["outputs"]
                          if o["name"] == "predict_proba")[:, 1]
        joined_rows = np.concatenate([np.arange(rows_of[i], rows_of[i] + ROWS) for i in answered])
        proba, y = pool_proba[joined_rows], np.asarray(truth)[joined_rows]
        auc = sample_value(text, "modelops_quality_realised", **mv, metric="auc")
        acc = sample_value(text, "modelops_quality_realised", **mv, metric="accuracy")
        assert auc is not None and acc is not None, text[-4000:]
        assert abs(auc - roc_auc_score(y, proba)) < 1e-9
        assert abs(acc - accuracy_score(y, (proba > 0.5).astype(int))) < 1e-9
        # and the label-free estimate of the same version (the calibrator of the profile) is exported
        assert sample_value(text, "modelops_quality_estimated", **mv, metric="auc") is not None, text[-4000:]
    finally:
        for p in procs:
            stop(p)
        if relay is not None:
            relay.stop()
    # the agent named its events by the client's key: its log shows no event it failed to send
    assert "Failed to" not in agent_log.read_text(errors="replace"), agent_log.read_text()[-3000:]
