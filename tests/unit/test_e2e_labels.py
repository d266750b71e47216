"""The loop's label feedback (modelops_dev.e2e.labels): which predictions get a label and when, the batches
that go out (late, out of order, by the exporter's row ids), the exporter endpoint read from a logger URL, the
quality read back, the quality plot, and the gateway client that puts the business key on `Ce-Id`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops_dev.e2e.labels import LabelDelay, LabelFeed, feedback_target, quality_by_version, row_ids
from modelops_dev.e2e.plot import plot_quality, quality_series

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Exporter:
    """What the exporter's /feedback answers: joined when the id was predicted, once."""

    def __init__(self, predicted: set[str]) -> None:
        self.predicted, self.seen = predicted, set()
        self.bodies: list[list[dict[str, Any]]] = []
        self.fail = 0

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, int]:
        if self.fail:
            self.fail -= 1
            raise OSError("connection refused")
        self.bodies.append(items)
        out = {"joined": 0, "unmatched": 0, "duplicate": 0}
        for it in items:
            key = "unmatched" if it["id"] not in self.predicted else "duplicate" if it["id"] in self.seen else "joined"
            self.seen.add(it["id"])
            out[key] += 1
        return out


# ---- the delay schedule -------------------------------------------------------------------------------
def test_delay_draw_share_and_bounds() -> None:
    d = LabelDelay(share=0.3, median=20.0, sigma=0.7, minimum=2.0, maximum=120.0)
    labelled, delays = d.draw(np.random.default_rng(1), 20_000)
    assert abs(labelled.mean() - 0.3) < 0.015  # 3 sd of a binomial share at n=20,000 is 0.0097
    assert delays.min() >= 2.0 and delays.max() <= 120.0
    assert abs(np.median(delays) - 20.0) < 1.0
    # log-normal spread: a real share comes after twice the median, and they overtake earlier predictions
    assert 0.1 < (delays > 40).mean() < 0.25
    assert LabelDelay(share=0.0).draw(np.random.default_rng(0), 100)[0].sum() == 0
    assert LabelDelay(share=1.0).draw(np.random.default_rng(0), 100)[0].all()


@pytest.mark.parametrize("kw", [{"share": 1.5}, {"share": -0.1}, {"median": 1.0, "minimum": 2.0},
                                {"median": 200.0, "maximum": 120.0}, {"sigma": -1.0}])
def test_delay_rejects_bad_settings(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LabelDelay(**kw)


def test_row_ids_are_the_exporters() -> None:
    """The exporter names row i of inference ID `ID#i` (one row: `ID`); labels sent by these ids join the
    predictions Feedback.record stored from a response event with that id."""
    from modelops.drift.feedback import Feedback

    assert row_ids("a", 1) == ["a"] and row_ids("b", 3) == ["b#0", "b#1", "b#2"]
    fb = Feedback(clock=lambda: 1000.0)
    profile = {"task": "classification", "prediction": {"categories": {"0": 0.5, "1": 0.5}}}
    fb.record(("ns", "churn", "1"), profile, "req-1", [0, 1, 1], np.array([[0.8, 0.2], [0.3, 0.7], [0.1, 0.9]]))
    fb.record(("ns", "churn", "1"), profile, "req-2", [1], np.array([[0.4, 0.6]]))
    items = [{"id": i, "label": y} for i, y in zip(row_ids("req-1", 3) + row_ids("req-2", 1), [0, 1, 0, 1],
                                                   strict=True)]
    assert fb.submit("ns", items) == {"joined": 4, "unmatched": 0, "expired": 0, "duplicate": 0, "invalid": 0,
                                      "early": 0}
    # ids are per namespace: another namespace's label waits for a prediction of its own (early), never joins
    assert fb.submit("other-ns", items[:1])["early"] == 1 and fb.outcomes["joined"] == 4


# ---- the feed ------------------------------------------------------------------------------------------
def test_feed_posts_labels_when_due_out_of_order_and_by_row_id() -> None:
    clock, wall = Clock(), Clock()
    wall.now = 1.8e9
    truth = {f"r{k}": [k % 2, (k + 1) % 2] for k in range(200)}
    exporter = Exporter({i for k in truth for i in row_ids(k, 2)})
    feed = LabelFeed(exporter, LabelDelay(share=0.5, median=10.0, sigma=0.8, minimum=1.0, maximum=60.0), seed=3,
                     batch=50, clock=clock, wall=wall)
    for k, (name, labels) in enumerate(truth.items()):  # one inference every 0.1 s
        clock.now = k * 0.1
        feed.predicted(name, labels)
    assert feed.predictions == 400 and 150 < feed.scheduled < 250
    clock.now = 20.0  # nothing is sent before it is due
    feed.flush()
    early = [it for b in exporter.bodies for it in b]
    clock.now = 200.0
    feed.flush()
    sent = [it for b in exporter.bodies for it in b]
    assert len(sent) == feed.scheduled == feed.sent and feed.waiting == 0
    assert 0 < len(early) < len(sent)
    assert all(len(b) <= 50 for b in exporter.bodies)
    assert feed.outcomes["joined"] == len(sent) and feed.outcomes["unmatched"] == 0
    # every label is its row's truth, stamped with the wall time it was sent
    for it in sent:
        name, _, row = it["id"].partition("#")
        assert it["label"] == truth[name][int(row)] and it["ts"] == 1.8e9
        assert isinstance(it["label"], int)
    # out of order: the labels do not come in the order of their predictions
    order = [(int(it["id"].split("#")[0][1:]), int(it["id"].split("#")[1])) for it in sent]
    assert order != sorted(order)
    # the delays recorded are at least the minimum and the early ones came within 20 s of their prediction
    rep = feed.report()
    assert rep["sent"] == len(sent) and rep["delay_p50_s"] is not None and min(feed.delays) >= 1.0


def test_feed_keeps_labels_through_a_failed_post() -> None:
    clock = Clock()
    exporter = Exporter(set(row_ids("x", 5)))
    feed = LabelFeed(exporter, LabelDelay(share=1.0, median=2.0, sigma=0.0, minimum=2.0, maximum=2.0), clock=clock)
    feed.predicted("x", [1, 0, 1, 1, 0])
    clock.now = 5.0
    exporter.fail = 1
    assert feed.flush() == 0 and feed.failed_posts == 1 and "connection refused" in feed.last_error
    assert feed.waiting == 5
    assert feed.flush() == 5 and feed.outcomes["joined"] == 5 and feed.waiting == 0


def test_feed_thread_sends_in_the_background() -> None:
    done = threading.Event()
    got: list[dict[str, Any]] = []

    def post(items: list[dict[str, Any]]) -> dict[str, int]:
        got.extend(items)
        done.set()
        return {"joined": len(items)}

    feed = LabelFeed(post, LabelDelay(share=1.0, median=0.0, sigma=0.0, minimum=0.0, maximum=0.0),
                     period=0.05).start()
    try:
        feed.predicted("t", [1])
        assert done.wait(10)
    finally:
        feed.stop()
    assert got[0]["id"] == "t" and got[0]["label"] == 1 and feed.outcomes["joined"] == 1


# ---- the exporter endpoint from the logger URL, and the quality read back ---------------------------------
def test_feedback_target_from_the_operators_logger_urls() -> None:
    from modelops.desired.drift_shards import exporter_url
    from modelops.formats.drift_url import logger_url, namespace_token

    token = namespace_token("s3cret", "demo")
    one = logger_url("http://modelops-demo-drift-exporter.demo.svc:8080/events", "s3cret", "demo")
    assert feedback_target(one) == ("services", "demo", "modelops-demo-drift-exporter", 8080,
                                    f"feedback/ns/demo/{token}")
    template = "http://x-drift-exporter-{shard}.x-drift-exporter-shards.demo.svc:8080/events"
    sharded = logger_url(exporter_url(template, 3, "demo", "churn"), "s3cret", "demo")
    kind, ns, name, port, path = feedback_target(sharded)
    assert (kind, ns, port, path) == ("pods", "demo", 8080, f"feedback/ns/demo/{token}")
    assert name.startswith("x-drift-exporter-") and name.rsplit("-", 1)[1] in {"0", "1", "2"}
    # the labels of a model go to the shard that owns (namespace, model), the one its predictions are logged to
    from modelops.formats.drift_url import shard_of

    for model in ("churn", "fraud", "ltv", "a", "b"):
        url = logger_url(exporter_url(template, 3, "demo", model), "s3cret", "demo")
        assert feedback_target(url)[2] == f"x-drift-exporter-{shard_of('demo', model, 3)}", model
    for bad in ("http://exporter.demo.svc:8080/events", "ftp://e.demo.svc/events/ns/demo/t",
                "http://exporter:8080/events/ns/demo/t"):
        with pytest.raises(ValueError):
            feedback_target(bad)


def test_quality_by_version() -> None:
    result = [{"metric": {"version": "1", "metric": "auc"}, "value": [0, "0.81"]},
              {"metric": {"version": "1", "metric": "accuracy"}, "value": [0, "0.9"]},
              {"metric": {"version": "2", "metric": "auc"}, "value": [0, "NaN"]},
              {"metric": {"version": "2", "metric": "f1"}, "value": [0, "0.5"]}]
    assert quality_by_version(result) == {"1": {"auc": 0.81, "accuracy": 0.9}, "2": {"f1": 0.5}}


# ---- the plot ------------------------------------------------------------------------------------------
def _timeline() -> dict[str, Any]:
    samples = []
    for k in range(40):
        q: dict[str, Any] = {"realised": {}, "estimated": {"1": {"auc": 0.8, "accuracy": 0.86}}, "joined": {"1": 10 * k}}
        if k >= 10:  # realised only above the minimum labels
            q["realised"]["1"] = {"auc": 0.8 - 0.004 * max(0, k - 20), "accuracy": 0.85}
        if k >= 30:
            q["estimated"]["2"] = {"auc": 0.83}
            q["joined"]["2"] = 5 * (k - 30)
        samples.append({"t": 5.0 * k, "quality": q, "weight": 0, "drift_share": 0.1})
    samples.append({"t": 200.0, "weight": 0, "drift_share": None})  # a sample without quality (not sending)
    events = [{"t": 100.0, "stage": "drift", "message": "traffic shifted (generate-data --shift 0.8)"},
              {"t": 190.0, "stage": "promote", "message": "v2 promoted: MLflow alias champion -> 2"}]
    return {"samples": samples, "events": events}


def test_quality_series_per_version_only_where_present() -> None:
    tl = _timeline()
    realised = quality_series(tl["samples"], "realised", "auc")
    assert set(realised) == {"1"} and realised["1"][0][0] == 50.0 and len(realised["1"][0]) == 30
    assert realised["1"][1][-1] == pytest.approx(0.8 - 0.004 * 19)
    estimated = quality_series(tl["samples"], "estimated", "auc")
    assert set(estimated) == {"1", "2"} and len(estimated["2"][0]) == 10 and estimated["2"][0][0] == 150.0
    assert quality_series(tl["samples"], "estimated", "f1") == {}


def test_plot_quality_writes_a_png(tmp_path: Path) -> None:
    import matplotlib.image

    out = plot_quality(_timeline(), tmp_path / "q" / "quality.png")
    img = matplotlib.image.imread(out)
    assert img.shape[0] > 500 and img.shape[1] > 800
    # the lines are drawn: the picture is not one colour
    assert float(np.std(img[..., :3])) > 0.05
    # no quality at all (labels off): still a picture, no error
    empty = plot_quality({"samples": [{"t": 0.0}], "events": []}, tmp_path / "empty.png")
    assert empty.stat().st_size > 0


# ---- the gateway client puts the business key on Ce-Id -----------------------------------------------------
def test_gateway_traffic_sends_the_id_as_ce_id_and_reports_answers() -> None:
    from modelops_dev.e2e.gateway_traffic import GatewayTraffic

    seen: list[tuple[str | None, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.headers.get("Ce-Id"), body.get("id")))
            out = json.dumps({"model_version": "1", "id": body.get("id"), "outputs": []}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answers: list[tuple[str, int, str | None]] = []
    got = threading.Event()
    counter = iter(range(10**6))

    def on_answer(body: dict[str, Any], status: int, version: str | None) -> None:
        answers.append((body["id"], status, version))
        if len(answers) >= 3:
            got.set()

    traffic = GatewayTraffic(f"http://127.0.0.1:{server.server_address[1]}", "churn.example", "churn",
                             lambda: {"id": f"k-{next(counter)}", "inputs": []}, lambda: {"v1": 100}, senders=1,
                             on_answer=on_answer).start()
    try:
        assert got.wait(20), traffic.last_error
    finally:
        traffic.stop()
        server.shutdown()
    assert all(ce == body_id and ce is not None for ce, body_id in seen), seen
    assert answers[0] == ("k-0", 200, "1")


def test_truth_book_hands_answered_truth_to_the_feed_and_forgets_failures() -> None:
    from modelops_dev.e2e.labels import TruthBook

    clock = Clock()
    feed = LabelFeed(lambda items: {"joined": len(items)}, LabelDelay(share=1.0, median=1.0, sigma=0.0,
                                                                       minimum=1.0, maximum=1.0), clock=clock)
    book = TruthBook("run", feed)
    a = book.request([{"name": "x"}], [1, 0])
    b = book.request([{"name": "x"}], [0])
    assert (a["id"], b["id"], a["inputs"]) == ("run-0", "run-1", [{"name": "x"}]) and book.open == 2
    book.answered(a, 200, "1")
    book.answered(b, 422, None)  # never predicted: no label for it
    assert book.open == 0 and (book.answered_ok, book.failed) == (1, 1)
    clock.now = 5.0
    assert [(i, label) for _d, _s, i, (label, _at) in feed.due()] == [("run-0#0", 1), ("run-0#1", 0)]
    # without a feed nothing is kept
    off = TruthBook("off", None)
    off.answered(off.request([], [1]), 200, "1")
    assert off.open == 0 and off.answered_ok == 1
