"""The real `modelops drift-exporter` process, KServe-format CloudEvents in, Prometheus out."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import numpy as np
import pytest

from tests.integration.drift.conftest import (
    AUTH,
    FEATURES,
    get_json,
    kserve_headers,
    make_frame,
    metrics_text,
    post,
    sample_value,
    send_v1,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fed(exporter):
    """Three models through the same exporter: unshifted, one feature shifted, and too few rows."""
    rng = np.random.default_rng(11)
    send_v1(f"{exporter.url}/", "stable", make_frame(rng, 600), rows_per_event=20)
    send_v1(f"{exporter.url}/", "shifted", make_frame(rng, 600, shift={"calls": 1.0}), rows_per_event=20)
    send_v1(f"{exporter.url}/", "few", make_frame(rng, 60), rows_per_event=20)
    return exporter


def test_unshifted_traffic_reports_no_drift(fed):
    report = get_json(f"{fed.url}/drift/stable")
    assert report["status"] == "ok" and report["rows"] == 600
    assert report["judged_features"] == len(FEATURES)
    assert report["drifted_features"] == 0, [f for f in report["features"] if f["drifted"]]
    assert report["dataset_drifted"] is False
    assert report["prediction"]["drifted"] is False  # responses were joined to their requests
    text = metrics_text(fed.url)
    assert sample_value(text, "modelops_drift_share", model="stable") == 0.0
    assert sample_value(text, "modelops_drift_dataset_drift", model="stable") == 0.0
    for feature in FEATURES:
        assert sample_value(text, "modelops_drift_feature_drift", model="stable", feature=feature) == 0.0


def test_shifted_feature_is_flagged_and_its_gauge_crosses_the_threshold(fed):
    report = get_json(f"{fed.url}/drift/shifted")
    by_name = {f["name"]: f for f in report["features"]}
    calls = by_name["calls"]
    assert calls["method"] == "wasserstein_norm" and calls["drifted"] is True
    assert calls["score"] >= calls["threshold"] == 0.1
    assert [f for f in by_name if by_name[f]["drifted"]] == ["calls"]
    text = metrics_text(fed.url)
    assert sample_value(text, "modelops_drift_feature_drift", model="shifted", feature="calls") == 1.0
    score = sample_value(text, "modelops_drift_feature_score", model="shifted", feature="calls")
    assert score is not None and score >= 0.1
    assert sample_value(text, "modelops_drift_feature_score_ratio", model="shifted", feature="calls") >= 1.0
    assert sample_value(text, "modelops_drift_share", model="shifted") == pytest.approx(1 / len(FEATURES))
    assert sample_value(text, "modelops_drift_feature_psi", model="shifted", feature="calls") > 0.2


def test_below_the_minimum_window_it_says_insufficient_data_not_zero(fed):
    report = get_json(f"{fed.url}/drift/few")
    assert report["status"] == "insufficient_data" and report["rows"] == 60 and report["min_rows"] == 200
    text = metrics_text(fed.url)
    assert sample_value(text, "modelops_drift_insufficient_data", model="few") == 1.0
    assert sample_value(text, "modelops_drift_window_rows", model="few") == 60.0
    assert sample_value(text, "modelops_drift_share", model="few") is None  # absent, not a misleading 0
    assert sample_value(text, "modelops_drift_feature_drift", model="few") is None
    assert sample_value(text, "modelops_drift_insufficient_data", model="stable") == 0.0


def test_prometheus_scrapes_the_exporter_and_promql_sees_the_drift(fed, prometheus):
    prom = prometheus([f"127.0.0.1:{fed.port}"], scrape_interval="1s")
    # the query RetrainSchedule's drift trigger runs
    value = prom.wait_for('modelops_drift_feature_drift{model="shifted", feature="calls"}', lambda v: v == 1.0)
    assert value == 1.0
    assert prom.value('max by (model) (modelops_drift_share{model="shifted"})') == pytest.approx(1 / 6)
    assert prom.value('modelops_drift_dataset_drift{model="stable"}') == 0.0
    assert prom.value('modelops_drift_feature_score{model="shifted", feature="calls"} >= 0.1') >= 0.1
    drifted = prom.query('modelops_drift_feature_drift{model=~"stable|shifted"} == 1')
    assert {(r["metric"]["model"], r["metric"]["feature"]) for r in drifted} == {("shifted", "calls")}
    assert prom.value('modelops_drift_share{model="few"}') is None
    assert prom.value('modelops_drift_insufficient_data{model="few"}') == 1.0


def test_malformed_events_get_4xx_with_a_reason_and_are_counted(exporter):
    url = f"{exporter.url}/"
    before = metrics_text(exporter.url)
    cases = [
        (b"{not json", kserve_headers("m1", "request", "stable"), 400, "invalid_json"),
        (b'{"instances": [[1, 2]]}', {k: v for k, v in kserve_headers("m2", "request", "stable").items()
                                      if k != "Ce-Id"}, 400, "not_a_cloudevent"),
        (b'{"instances": [[1, 2]]}', kserve_headers("m3", "request", "stable"), 422, "invalid_payload"),
        (b'{"instances": [[1, 2, 3, 4, "a", "b"]]}', {**kserve_headers("m4", "request", "stable"),
                                                      "Ce-Type": "com.example.other"}, 400,
         "unsupported_event_type"),
        (b"\x89PNG", kserve_headers("m6", "request", "stable", content_type="image/png"), 415,
         "unsupported_content_type"),
        (json.dumps({"instances": [[1, 2, 3, 4, "a", "b"]] * 1001}).encode(),
         kserve_headers("m7", "request", "stable"), 413, "too_many_rows"),
        (b"x" * 300_000, kserve_headers("m8", "request", "stable"), 413, "body_too_large"),
    ]
    for body, headers, status, reason in cases:
        got_status, answer = post(url, body, headers)
        assert (got_status, answer["reason"]) == (status, reason), answer
        assert answer["message"]
    after = metrics_text(exporter.url)
    for _, _, _, reason in cases:
        delta = (sample_value(after, "modelops_drift_events_rejected_total", reason=reason)
                 - sample_value(before, "modelops_drift_events_rejected_total", reason=reason))
        assert delta >= 1, reason


def test_v2_tensors_structured_mode_and_batch_ingestion(exporter):
    rng = np.random.default_rng(3)
    frame = make_frame(rng, 250)
    url = f"{exporter.url}/"
    for start_row in range(0, 250, 50):
        part = frame.iloc[start_row:start_row + 50]
        event_id = str(uuid.uuid4())
        # V2 with one tensor per feature (the pandas codec), version only in the V2 response
        inputs = [{"name": f, "shape": [len(part)], "datatype": "BYTES" if f in ("plan", "region") else "FP64",
                   "data": part[f].tolist()} for f in FEATURES]
        status, answer = post(url, {"id": event_id, "inputs": inputs},
                              kserve_headers(event_id, "request", "churn-v2"))
        assert status == 200, answer
        outputs = [{"name": "output-0", "shape": [len(part)], "datatype": "INT64",
                    "data": [int(x) for x in (part["tenure"] < 18)]}]
        status, answer = post(url, {"model_name": "churn-v2", "model_version": "7", "id": event_id,
                                    "outputs": outputs}, kserve_headers(event_id, "response", "churn-v2"))
        assert status == 200, answer
    report = get_json(f"{exporter.url}/drift/churn-v2")
    assert report["version"] == "7" and report["rows"] == 250 and report["status"] == "ok"
    assert report["prediction"] is not None

    # structured mode, one event
    event = {"specversion": "1.0", "id": "s-1", "source": "replay", "type": "org.kubeflow.serving.inference.request",
             "inferenceservicename": "structured", "datacontenttype": "application/json",
             "data": {"instances": [dict(zip(FEATURES, [1.0, 50.0, 3.0, 40.0, "basic", "north"], strict=True))]}}
    status, answer = post(url, event, {"Content-Type": "application/cloudevents+json"})
    assert (status, answer) == (200, {"accepted": 1})

    # direct batch ingestion
    rows = make_frame(rng, 300)
    body = {"version": "2", "instances": rows.to_dict(orient="records")}
    status, answer = post(f"{exporter.url}/ingest/batchmodel", body)
    assert status == 200 and answer["accepted"] == 300
    assert get_json(f"{exporter.url}/drift/batchmodel?version=2")["status"] == "ok"


def test_window_stays_bounded_by_rows(exporter):
    rng = np.random.default_rng(5)
    for _ in range(3):
        status, _ = post(f"{exporter.url}/ingest/bounded", {"instances": make_frame(rng, 1000)
                                                              .to_dict(orient="records")})
        assert status == 200
    report = get_json(f"{exporter.url}/drift/bounded")
    assert report["rows"] == 2000  # --window-rows
    text = metrics_text(exporter.url)
    assert sample_value(text, "modelops_drift_rows_ingested_total", model="bounded") == 3000


def test_html_report_and_png_on_demand(fed):
    t0 = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(f"{fed.url}/reports/shifted", headers=AUTH), timeout=300) as r:
        html = r.read().decode()
        assert r.headers["X-Report-Cache"] == "miss"
    assert "Drift report: shifted" in html and "calls" in html
    with urllib.request.urlopen(urllib.request.Request(f"{fed.url}/reports/shifted", headers=AUTH), timeout=60) as r:
        assert r.headers["X-Report-Cache"] == "hit"
    with urllib.request.urlopen(urllib.request.Request(f"{fed.url}/reports/shifted/drift.png", headers=AUTH), timeout=60) as r:
        png = r.read()
        assert r.headers["Content-Type"] == "image/png"
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert time.monotonic() - t0 < 240
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(f"{fed.url}/reports/never-seen", headers=AUTH), timeout=30)
    assert err.value.code == 404


def test_reports_are_written_on_a_schedule(start_exporter, model_dir, tmp_path):
    proc = start_exporter("--reference", f"scheduled={model_dir}", "--min-rows", "100", "--join-timeout", "0",
                          "--report-dir", str(tmp_path), "--report-interval", "1")
    # only "scheduled" has a reference here: other models are refused with a reason
    status, answer = post(f"{proc.url}/", b'{"instances": [[1, 2, 3, 4, "a", "b"]]}',
                          kserve_headers("u1", "request", "other-model"))
    assert (status, answer["reason"]) == (422, "unknown_model")
    assert sample_value(metrics_text(proc.url), "modelops_drift_events_rejected_total", reason="unknown_model") == 1
    status, _ = post(f"{proc.url}/ingest/scheduled", {"version": "1", "instances": make_frame(
        np.random.default_rng(9), 150).to_dict(orient="records")})
    assert status == 200
    latest = tmp_path / "scheduled" / "1" / "latest.html"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (latest.exists() and (latest.parent / "latest.png").exists()):
        time.sleep(1)
    assert latest.exists(), proc.log.read_text()[-2000:]
    assert "Drift report: scheduled" in latest.read_text()
    assert list(latest.parent.glob("report-*.html"))
