"""Issue 17: label feedback, live realised quality, label-free estimates (exporter side).

The realised metrics are held to scikit-learn's on the same joined rows (1e-9), the replay drives the
real HTTP app with out-of-order labels up to 24 h late on a test clock, and bad input never loses a
pending prediction.
"""

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sklearn import metrics as skm
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from modelops.drift import estimate, quality
from modelops.drift.app import create_app
from modelops.drift.auth import Auth
from modelops.drift.events import LoggedEvent
from modelops.drift.feedback import Feedback, IdIndex, id_keys
from modelops.drift.reference import ReferenceSpec, ReferenceStore
from modelops.drift.service import Exporter, ExporterConfig
from modelops.drift.stats import DriftConfig
from modelops.formats.quality import CALIBRATION_KEY, QUALITY_HIGHER_IS_BETTER, REALISED_METRICS
from modelops_pipelines import calibration
from modelops_pipelines.profile import build_reference_profile

pytestmark = pytest.mark.unit

SECRET = "s3cret"
HEADERS = {"Authorization": f"Bearer {SECRET}"}


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- the metric math against scikit-learn ------------------------------------------------------------

@pytest.mark.parametrize("decimals", [2, 8])
def test_classification_metrics_equal_scikit_learn(decimals):
    rng = np.random.default_rng(decimals)
    for n in (1, 2, 50, 5000):
        s = np.round(rng.random(n), decimals)
        s[: n // 10] = np.round(s[: n // 10])  # scores of exactly 0 and 1 (log loss clipping)
        y = (rng.random(n) < s).astype(float)
        pred = (s > 0.5).astype(float)
        got = quality.classification_metrics(y, pred, s)
        assert abs(got["accuracy"] - skm.accuracy_score(y, pred)) < 1e-9
        assert abs(got["f1"] - skm.f1_score(y, pred, zero_division=0)) < 1e-9
        assert abs(got["log_loss"] - skm.log_loss(y, s, labels=[0, 1])) < 1e-9
        assert abs(got["brier"] - skm.brier_score_loss(y, s, pos_label=1)) < 1e-9
        if len(set(y)) == 2:
            assert abs(got["auc"] - skm.roc_auc_score(y, s)) < 1e-9
        else:
            assert "auc" not in got  # one class: AUC is undefined, so absent (never a fake value)


def test_regression_metrics_equal_scikit_learn():
    rng = np.random.default_rng(3)
    y, p = rng.normal(0, 5, 7777), rng.normal(0, 5, 7777)
    got = quality.regression_metrics(y, p)
    assert abs(got["rmse"] - skm.root_mean_squared_error(y, p)) < 1e-9
    assert abs(got["mae"] - skm.mean_absolute_error(y, p)) < 1e-9


def test_quality_vocabulary_is_closed():
    assert set(REALISED_METRICS["classification"]) | set(REALISED_METRICS["regression"]) == set(
        QUALITY_HIGHER_IS_BETTER)
    assert not QUALITY_HIGHER_IS_BETTER["log_loss"] and QUALITY_HIGHER_IS_BETTER["auc"]


def test_id_index_finds_what_was_inserted_and_forgets_what_was_removed():
    rng = np.random.default_rng(0)
    index = IdIndex(16)
    keys = np.unique(rng.integers(2, 2**63, 50_000, dtype=np.int64)).astype(np.uint64)
    index.insert(keys, np.arange(len(keys)))  # grows on the way
    vals, where = index.find(keys)
    assert (vals == np.arange(len(keys))).all()
    index.remove_at(where[::2])
    vals, _ = index.find(keys)
    assert (vals[::2] == -1).all() and (vals[1::2] == np.arange(len(keys))[1::2]).all()
    assert (index.find(np.asarray([12345, 3], dtype=np.uint64))[0] == -1).all()
    index.insert(keys[::2], np.arange(len(keys))[::2] + 7)  # reuses deleted slots
    assert (index.find(keys)[0][::2] == np.arange(len(keys))[::2] + 7).all()


def test_ids_of_different_namespaces_differ():
    assert id_keys("a", ["x"])[0] != id_keys("b", ["x"])[0]


# --- the calibrator: trainer fits, exporter applies without scikit-learn ----------------------------

def test_stored_dle_trees_predict_what_scikit_learn_predicts():
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = make_regression(3000, 4, noise=5.0, random_state=0)
    frame = pd.DataFrame(X, columns=list("abcd"))
    frame.loc[::7, "b"] = np.nan
    pred = LinearRegression().fit(np.nan_to_num(X), y).predict(np.nan_to_num(X))
    cal = calibration.fit_regression(frame, y, pred, list("abcd"))
    json.loads(json.dumps(cal))  # plain numbers only
    Xm = calibration.dle_matrix(frame, list("abcd"), cal["fill"], pred)
    ref = calibration.dle_estimator(0).fit(Xm, np.abs(y - pred))
    assert isinstance(ref, GradientBoostingRegressor)
    ours = estimate.ensemble_predict(cal["abs"], Xm)
    assert np.allclose(ours, ref.predict(Xm), atol=1e-9)
    # missing values take the stored fill, as in training
    est = estimate.dle(cal, frame.to_numpy(float), pred)
    assert abs(est["mae"] - np.maximum(ref.predict(Xm), 0).mean()) < 1e-9


def test_isotonic_calibrator_is_scikit_learns():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(1)
    s = rng.random(2000)
    y = (rng.random(2000) < s**2).astype(int)
    cal = calibration.fit_classification(y, np.column_stack([1 - s, s]), [0, 1])
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, y)
    grid = np.linspace(-0.2, 1.2, 301)
    assert np.allclose(estimate.calibrate(cal, grid), iso.predict(grid), atol=1e-12)
    assert calibration.fit_classification(y[:10], np.column_stack([1 - s, s])[:10], [0, 1]) is None  # too few
    assert calibration.fit_classification(y, np.ones((2000, 3)) / 3, [0, 1, 2]) is None  # multi-class: none


def test_cbpe_of_a_perfectly_calibrated_model_has_the_expected_confusion_matrix():
    cal = {"kind": "classification", "method": "isotonic", "x": [0.0, 1.0], "y": [0.0, 1.0]}
    score = np.asarray([0.9, 0.8, 0.3, 0.1])
    pred = (score > 0.5).astype(float)
    got = estimate.cbpe(cal, score, pred)
    assert got["accuracy"] == pytest.approx((0.9 + 0.8 + 0.7 + 0.9) / 4)
    tp, fp, fn = 1.7, 0.3, 0.4
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert 0.5 < got["auc"] <= 1.0


# --- estimation accuracy under covariate shift (Must show) ------------------------------------------

def _truth(X):
    z = 1.2 * X[:, 0] - 0.8 * X[:, 1] + 0.6 * X[:, 2] * X[:, 3] + 0.5 * np.sin(2 * X[:, 4])
    return 1 / (1 + np.exp(-z))


def shifted_windows(seed=0, windows=30, rows=5000):
    """Training rows, held-out rows, then windows whose inputs drift (no concept shift: P(y|x) is fixed)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (40_000, 5))
    y = (rng.random(len(X)) < _truth(X)).astype(int)
    model = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(X[:30_000], y[:30_000])
    cal = calibration.fit_classification(y[30_000:], model.predict_proba(X[30_000:]), [0, 1])
    out = []
    for w in range(windows):
        shift = np.asarray([1.0, -0.7, 0.5, 0.0, 0.3]) * (w / windows) * 1.5
        scale = 1.0 + 0.5 * w / windows
        Xw = rng.normal(shift, scale, (rows, 5))
        yw = (rng.random(rows) < _truth(Xw)).astype(float)
        out.append((model.predict_proba(Xw)[:, 1], yw))
    return cal, out


def test_cbpe_tracks_realised_quality_under_covariate_shift():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # one core: the suite runs beside other work
        cal, windows = shifted_windows()
    ok_acc = ok_auc = 0
    for score, y in windows:
        pred = (score > 0.5).astype(float)
        est = estimate.cbpe(cal, score, pred)
        ok_acc += abs(est["accuracy"] - skm.accuracy_score(y, pred)) <= 0.02
        ok_auc += abs(est["auc"] - skm.roc_auc_score(y, score)) <= 0.03
    assert ok_acc >= 0.9 * len(windows), ok_acc
    assert ok_auc >= 0.9 * len(windows), ok_auc


# --- the exporter end to end: replay (Must show) ---------------------------------------------------

def _profiles():
    """A binary classifier and a regressor (not the churn table), with calibrators and serving scores."""
    Xc, yc = make_classification(130_000, 6, n_informative=4, flip_y=0.05, random_state=7)
    clf = LogisticRegression(max_iter=500).fit(Xc[:20_000], yc[:20_000])
    cols = [f"x{i}" for i in range(6)]
    prof_c = build_reference_profile(pd.DataFrame(Xc[:20_000], columns=cols), task="classification",
                                     predictions=clf.predict(Xc[:20_000]), sample_rows=0)
    prof_c[CALIBRATION_KEY] = calibration.fit_classification(yc[20_000:30_000], clf.predict_proba(
        Xc[20_000:30_000]), [0, 1])
    Xr, yr = make_regression(130_000, 5, noise=10.0, random_state=8)
    reg = LinearRegression().fit(Xr[:20_000], yr[:20_000])
    rcols = [f"r{i}" for i in range(5)]
    prof_r = build_reference_profile(pd.DataFrame(Xr[:20_000], columns=rcols), task="regression",
                                     predictions=reg.predict(Xr[:20_000]), sample_rows=0)
    prof_r[CALIBRATION_KEY] = calibration.fit_regression(pd.DataFrame(Xr[20_000:30_000], columns=rcols),
                                                         yr[20_000:30_000], reg.predict(Xr[20_000:30_000]), rcols)
    served_c = (Xc[30_000:], yc[30_000:], clf.predict_proba(Xc[30_000:]))
    served_r = (Xr[30_000:], yr[30_000:], reg.predict(Xr[30_000:]))
    return prof_c, prof_r, served_c, served_r


@pytest.fixture(scope="module")
def datasets():
    return _profiles()


def app_for(profiles, clock, **cfg):
    store = ReferenceStore([ReferenceSpec.parse(f"{m}=mem-{m}") for m in profiles],
                           loader=lambda source, uri: profiles[source.removeprefix("mem-")])
    ex = Exporter(store, ExporterConfig(drift=DriftConfig(min_rows=200, min_feature_rows=20), **cfg))
    ex.feedback.clock = clock
    return ex, TestClient(create_app(ex, auth=Auth(SECRET)))


def scrape(client):
    out = {}
    for fam in text_string_to_metric_families(client.get("/metrics").text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def realised(metrics, model, version="1"):
    return {dict(k)["metric"]: v for (name, k), v in metrics.items() if name == "modelops_quality_realised"
            and dict(k)["model"] == model and dict(k)["version"] == version}


def test_replay_of_100k_predictions_with_labels_up_to_a_day_late_equals_scikit_learn(datasets):
    prof_c, prof_r, served_c, served_r = datasets
    clock = Clock()
    window_rows, window_age = 20_000, 6 * 3600.0
    _, client = app_for({"clf": prof_c, "reg": prof_r}, clock, quality_window_rows=window_rows,
                         quality_window_age=window_age)
    rng = np.random.default_rng(11)
    n, step, horizon = 100_000, 1800.0, 2 * 86400.0
    t0 = clock.t
    for model, (X, y, out) in (("clf", served_c), ("reg", served_r)):
        pred_t = t0 + np.sort(rng.uniform(0, horizon, n))
        label_t = pred_t + rng.uniform(0, 86400.0, n)  # up to 24 h late, so out of order
        ids = np.asarray([f"{model}-{i}" for i in range(n)])
        joined_order: list[int] = []
        joined_at: list[float] = []
        checks = 0
        estimated_seen: set[str] = set()
        steps = int((horizon + 86400.0) / step) + 1
        for k in range(steps):
            lo, hi = t0 + k * step, t0 + (k + 1) * step
            clock.t = lo
            rows = np.flatnonzero((pred_t >= lo) & (pred_t < hi))
            for chunk in np.array_split(rows, max(1, len(rows) // 500)) if len(rows) else []:
                body = {"version": "1", "instances": X[chunk].tolist(), "ids": ids[chunk].tolist()}
                if model == "clf":
                    body["predictions"] = out[chunk].argmax(axis=1).tolist()
                    body["probabilities"] = out[chunk].tolist()
                else:
                    body["predictions"] = out[chunk].tolist()
                r = client.post(f"/ingest/{model}", json=body, headers=HEADERS)
                assert r.status_code == 200, r.text
            clock.t = hi
            due = np.flatnonzero((label_t >= lo) & (label_t < hi))
            due = due[rng.permutation(len(due))]
            for chunk in np.array_split(due, max(1, len(due) // 1000)) if len(due) else []:
                items = [{"id": ids[i], "label": int(y[i]) if model == "clf" else float(y[i]),
                          "ts": float(label_t[i])} for i in chunk]
                r = client.post("/feedback", json=items, headers=HEADERS)
                assert r.status_code == 200, r.text
                assert r.json()["joined"] == len(chunk), r.json()
                joined_order.extend(chunk.tolist())
                joined_at.extend([clock.t] * len(chunk))
            if k % 8 == 7 and joined_order:
                # the window: the newest window_rows joined rows within window_age of their join
                order = np.asarray(joined_order[-window_rows:])
                at = np.asarray(joined_at[-window_rows:])
                rows_in = order[at >= clock.t - window_age]
                scraped = scrape(client)
                got = realised(scraped, model)
                estimated_seen.update(dict(k)["metric"] for (name, k), _ in scraped.items()
                                      if name == "modelops_quality_estimated" and dict(k)["model"] == model)
                if len(rows_in) < 100:
                    assert not got  # absent below --quality-min-labels, never a fake 0
                    continue
                if model == "clf":
                    yt, p = y[rows_in], out[rows_in, 1]
                    yhat = out[rows_in].argmax(axis=1)
                    want = {"auc": skm.roc_auc_score(yt, p), "accuracy": skm.accuracy_score(yt, yhat),
                            "f1": skm.f1_score(yt, yhat), "log_loss": skm.log_loss(yt, p, labels=[0, 1]),
                            "brier": skm.brier_score_loss(yt, p)}
                else:
                    want = {"rmse": skm.root_mean_squared_error(y[rows_in], out[rows_in]),
                            "mae": skm.mean_absolute_error(y[rows_in], out[rows_in])}
                assert set(got) == set(want), (got, want)
                for m, v in want.items():
                    assert abs(got[m] - v) <= 1e-9, (model, m, got[m], v)
                checks += 1
        assert len(joined_order) == n and checks >= 10
        # label-free estimates were published while predictions flowed
        assert estimated_seen == ({"accuracy", "auc", "f1"} if model == "clf" else {"mae", "rmse"})
    m = scrape(client)
    assert m[("modelops_feedback_labels_total", (("outcome", "joined"),))] == 2 * n
    assert m[("modelops_feedback_label_delay_seconds_count", ())] == 2 * n
    for model in ("clf", "reg"):
        labels = (("model", model), ("model_namespace", ""), ("version", "1"))
        assert m[("modelops_quality_joined_labels", labels)] > 0


# --- the logged-event path and bad input (Must show) -----------------------------------------------

def _event_app(datasets):
    prof_c = datasets[0]
    clock = Clock()
    ex, client = app_for({"clf": prof_c}, clock, quality_min_labels=1)
    return ex, client, clock


def _log(ex, i, rows, probs, version="1"):
    ex.handle_event(LoggedEvent(id=str(i), kind="request", model="clf", version=version,
                                payload={"instances": rows}))
    ex.handle_event(LoggedEvent(id=str(i), kind="response", model="clf", version=version,
                                payload={"predictions": [int(p[1] > 0.5) for p in probs], "probabilities": probs}))


def test_logged_responses_wait_for_labels_by_ce_id(datasets):
    ex, client, _ = _event_app(datasets)
    X, _, out = datasets[2]
    _log(ex, "one", X[:1].tolist(), out[:1].tolist())
    _log(ex, "batch", X[1:4].tolist(), out[1:4].tolist())
    assert ex.feedback.pending_gauges()[0] == 4
    r = client.post("/feedback", headers=HEADERS, json=[
        {"id": "one", "label": 1}, {"id": "batch#0", "label": 0}, {"id": "batch#2", "label": "1"}])
    assert r.json() == {"joined": 3, "unmatched": 0, "expired": 0, "duplicate": 0, "invalid": 0, "early": 0}
    rows = ex.feedback.joined_rows(("", "clf", "1"))
    assert np.allclose(np.sort(rows[:, 0]), np.sort(out[[0, 1, 3], 1]))
    assert ex.feedback.pending_gauges()[0] == 1


def test_bad_feedback_is_refused_or_counted_and_loses_nothing(datasets):
    ex, client, clock = _event_app(datasets)
    X, _, out = datasets[2]
    for i in range(5):
        _log(ex, f"p{i}", X[i:i + 1].tolist(), out[i:i + 1].tolist())
    pending = ex.feedback.pending_gauges()[0]
    assert pending == 5
    for body, ctype in ((b"{not json", "application/json"), (b"42", "application/json"),
                        (b'"label"', "application/json"), (b"\xff\xfe", "application/json")):
        r = client.post("/feedback", content=body, headers={**HEADERS, "content-type": ctype})
        assert r.status_code == 400, (body, r.text)
    assert client.post("/feedback", json={"id": "p0", "label": 1}).status_code == 401  # no token
    r = client.post("/feedback", headers={**HEADERS, "ce-type": "org.kubeflow.serving.inference.request",
                                          "ce-id": "x", "ce-source": "s", "ce-specversion": "1.0"},
                    json={"id": "p0", "label": 1})
    assert r.status_code == 400  # a CloudEvent of another type
    r = client.post("/feedback", headers=HEADERS, json=[
        {"id": "nobody", "label": 1},             # unknown id
        {"id": "p0", "label": "maybe"},           # not a class of this model
        {"id": "p1", "label": {"x": 1}},          # not a scalar
        {"label": 1},                              # no id
        {"id": "p2", "label": 1, "ts": "yesterday"},  # unreadable time
        "p3",                                      # not an object
    ])
    assert r.status_code == 200
    # the unknown id may be a prediction not logged yet: its label waits (early), counted unmatched when it gives up
    assert r.json() == {"joined": 0, "unmatched": 0, "expired": 0, "duplicate": 0, "invalid": 5, "early": 1}
    assert ex.feedback.pending_gauges()[0] == pending  # nothing lost
    # the corrected labels still join; a second label for the same id is a duplicate
    r = client.post("/feedback", headers=HEADERS, json=[{"id": "p0", "label": 1}, {"id": "p0", "label": 0},
                                                        {"id": "p1", "label": True}])
    assert r.json()["joined"] == 1 and r.json()["duplicate"] == 1 and r.json()["invalid"] == 1
    r = client.post("/feedback", headers=HEADERS, json={"id": "p0", "label": 0})
    assert r.json()["duplicate"] == 1
    # CloudEvents: binary mode and structured mode
    ce = {"ce-type": "org.kubeflow.serving.feedback", "ce-id": "f1", "ce-source": "crm", "ce-specversion": "1.0"}
    r = client.post("/feedback", headers={**HEADERS, **ce}, json={"id": "p2", "label": 0})
    assert r.status_code == 200 and r.json()["joined"] == 1
    r = client.post("/feedback", headers={**HEADERS, "content-type": "application/cloudevents+json"},
                    content=json.dumps({"specversion": "1.0", "type": "org.kubeflow.serving.feedback", "id": "f2",
                                        "source": "crm", "data": [{"id": "p3", "label": 1}]}))
    assert r.status_code == 200 and r.json()["joined"] == 1
    # a label later than --feedback-max-age is expired, and its prediction no longer pending
    clock.t += ex.cfg.feedback_max_age + 1
    r = client.post("/feedback", headers=HEADERS, json={"id": "p4", "label": 1})
    assert r.json()["expired"] == 1 and ex.feedback.pending_gauges()[0] == 0
    # the namespace URL binds labels to that namespace's predictions only
    r = client.post("/feedback/ns/other/wrong-token", json={"id": "p4", "label": 1})
    assert r.status_code == 401
    m = scrape(client)
    for outcome in ("joined", "unmatched", "expired", "duplicate", "invalid"):
        assert ("modelops_feedback_labels_total", (("outcome", outcome),)) in m
    assert m[("modelops_feedback_labels_total", (("outcome", "joined"),))] == 3
    # the unknown id's label waited longer than --feedback-max-early-age: unmatched, with its reason
    assert m[("modelops_feedback_labels_total", (("outcome", "unmatched"),))] == 1
    assert m[("modelops_feedback_early_unmatched_total", (("reason", "age"),))] == 1
    assert m[("modelops_feedback_early_labels", ())] == 0


def test_feedback_without_a_calibrator_exports_realised_quality_but_no_estimates():
    prof = build_reference_profile(pd.DataFrame({"a": np.arange(100.0)}), task="classification",
                                   predictions=np.arange(100) % 2, sample_rows=0)
    clock = Clock()
    fb = Feedback(clock=clock, min_labels=2, min_rows=2)
    key = ("ns", "m", "1")
    fb.record(key, prof, None, [1, 0, 1], [[0.2, 0.8], [0.7, 0.3], [0.4, 0.6]], ids=["a", "b", "c"])
    assert fb.submit("ns", [{"id": "a", "label": 1}, {"id": "b", "label": 1}, {"id": "c", "label": 0}])[
        "joined"] == 3
    q = fb.quality(key)
    assert q is not None and q.estimated == {} and q.realised["accuracy"] == pytest.approx(1 / 3)
    assert fb.submit("other-ns", [{"id": "a", "label": 1}])["early"] == 1  # ids are per namespace: no join
    clock.t += fb.early.max_age + 1
    assert fb.early_gauges()[0] == 0 and fb.outcomes["unmatched"] == 1 and fb.outcomes["joined"] == 3


# --- labels before their prediction (the agent logs asynchronously; issue 17, found on the node) ----------

BIN = {"task": "classification", "prediction": {"categories": {"no": 0.5, "yes": 0.5}}}


def _bin_feedback(**kw):
    clock = Clock()
    return Feedback(clock=clock, min_labels=1, min_rows=1, **kw), clock


def _predict(fb, ids, scores, key=("ns", "m", "1")):
    s = np.asarray(scores, dtype=float)
    fb.record(key, BIN, None, np.where(s > 0.5, "yes", "no").tolist(), np.column_stack([1 - s, s]), ids=ids)


def test_a_label_before_its_prediction_joins_as_if_it_came_second():
    rng = np.random.default_rng(5)
    n = 400
    scores = rng.random(n)
    labels = np.where(rng.random(n) < scores, "yes", "no").tolist()
    ids = [f"r{i}" for i in range(n)]
    rows = {}
    for order in ("prediction first", "label first"):
        fb, clock = _bin_feedback()
        items = [{"id": i, "label": y} for i, y in zip(ids, labels, strict=True)]
        if order == "prediction first":
            _predict(fb, ids, scores)
            assert fb.submit("ns", items)["joined"] == n
        else:
            answer = fb.submit("ns", items)
            assert answer == {"joined": 0, "unmatched": 0, "expired": 0, "duplicate": 0, "invalid": 0, "early": n}
            assert fb.early_gauges()[0] == n and fb.pending_gauges()[0] == 0
            clock.t += 30
            _predict(fb, ids[:150], scores[:150])  # the agent's batches come in pieces
            _predict(fb, ids[150:], scores[150:])
            waiting, _, joined_late, given_up = fb.early_gauges()
            assert (waiting, joined_late, given_up) == (0, n, {"age": 0, "capacity": 0})
        assert fb.outcomes == {"joined": n, "unmatched": 0, "expired": 0, "duplicate": 0, "invalid": 0}
        assert fb.pending_gauges()[0] == 0
        rows[order] = fb.joined_rows(("ns", "m", "1"))
        q = fb.quality(("ns", "m", "1"))
        assert q is not None
        y = np.asarray(labels) == "yes"
        assert abs(q.realised["auc"] - skm.roc_auc_score(y, scores)) <= 1e-9
        assert abs(q.realised["accuracy"] - skm.accuracy_score(y, scores > 0.5)) <= 1e-9
    a, b = (r[np.lexsort(r.T)] for r in rows.values())
    assert np.array_equal(a, b)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_early_labels_keep_numbers_and_classes_exactly(task):
    fb, _ = _bin_feedback()
    if task == "regression":
        profile = {"task": "regression"}
        labels = [1.5, 2, -3.25, 1e-300, 7]
        preds, proba = [1.0, 2.0, -3.0, 0.0, 8.0], None
        want = np.asarray(labels, dtype=float)
    else:
        profile = {"task": "classification", "prediction": {"categories": {"0": 0.3, "1": 0.3, "2": 0.4}}}
        labels = [2, "1", 0.0, "2.0", True]  # True is not a class of this model: invalid
        preds, proba = [2, 1, 1, 0, 2], None
        want = np.asarray([2.0, 1.0, 0.0, 2.0])
    ids = [f"x{i}" for i in range(5)]
    answer = fb.submit("ns", [{"id": i, "label": y} for i, y in zip(ids, labels, strict=True)])
    assert answer["early"] == 5
    fb.record(("ns", "m", "1"), profile, None, preds, proba, ids=ids)
    got = fb.joined_rows(("ns", "m", "1"))
    assert np.array_equal(np.sort(got[:, 2]), np.sort(want))
    if task == "multiclass":
        assert fb.outcomes["invalid"] == 1 and fb.outcomes["joined"] == 4
        assert fb.pending_gauges()[0] == 1  # the prediction of the invalid label still waits for a good one
        assert fb.submit("ns", [{"id": "x4", "label": 2}])["joined"] == 1


def test_early_labels_give_up_after_their_age_and_count_as_unmatched():
    fb, clock = _bin_feedback(max_early_age=60.0)
    assert fb.submit("ns", [{"id": "a", "label": "yes"}, {"id": "b", "label": "no"}])["early"] == 2
    clock.t += 40
    assert fb.submit("ns", [{"id": "c", "label": "yes"}])["early"] == 1
    clock.t += 21  # a and b waited 61 s, c 21 s
    waiting, _, joined_late, given_up = fb.early_gauges()
    assert (waiting, joined_late, given_up) == (1, 0, {"age": 2, "capacity": 0})
    assert fb.outcomes["unmatched"] == 2
    _predict(fb, ["a", "b", "c"], [0.9, 0.2, 0.7])
    assert fb.outcomes["joined"] == 1 and fb.pending_gauges()[0] == 2  # a and b's predictions still wait
    assert fb.submit("ns", [{"id": "a", "label": "yes"}])["joined"] == 1  # a label sent again joins
    waiting, _, joined_late, _ = fb.early_gauges()
    assert (waiting, joined_late) == (0, 1)


def test_early_labels_are_bounded_in_count_the_oldest_give_way():
    fb, clock = _bin_feedback(max_early=5)
    ids = [f"e{i}" for i in range(8)]
    for i in ids:  # one by one: e0..e2 are overwritten by e5..e7
        clock.t += 1
        assert fb.submit("ns", [{"id": i, "label": "yes"}])["early"] == 1
    waiting, nbytes, _, given_up = fb.early_gauges()
    assert waiting == 5 and given_up == {"age": 0, "capacity": 3} and fb.outcomes["unmatched"] == 3
    assert nbytes == fb.early.nbytes > 0
    # one batch larger than the store: its first labels give way at once
    fb2, _ = _bin_feedback(max_early=5)
    assert fb2.submit("ns", [{"id": i, "label": "no"} for i in ids])["early"] == 8
    assert fb2.early_gauges()[3] == {"age": 0, "capacity": 3}
    for f in (fb, fb2):
        _predict(f, ids, np.linspace(0.1, 0.9, 8))
        assert f.outcomes["joined"] == 5 and f.pending_gauges()[0] == 3
        assert sum(f.outcomes.values()) == 8 and f.early_gauges()[0] == 0
    # without an early store (--feedback-max-early 0) such labels are unmatched at once
    fb3, _ = _bin_feedback(max_early=0)
    assert fb3.submit("ns", [{"id": "z", "label": "no"}])["unmatched"] == 1


def test_early_labels_expire_in_arrival_order_over_holes_and_chunks():
    fb, clock = _bin_feedback(max_early=20_000, max_early_age=100.0)
    fb.early.CHUNK = 64  # several steps per expiry
    ids = [f"h{i}" for i in range(10_000)]
    fb.submit("ns", [{"id": i, "label": "yes"} for i in ids[:6000]])
    clock.t += 50
    fb.submit("ns", [{"id": i, "label": "no"} for i in ids[6000:]])
    _predict(fb, ids[::3], np.full(len(ids[::3]), 0.7))  # holes all over the store
    joined = len(ids[::3])
    clock.t += 60  # the first 6000 are 110 s old, the rest 60 s
    waiting, _, joined_late, given_up = fb.early_gauges()
    assert joined_late == joined and given_up["age"] == 6000 - len(range(0, 6000, 3))
    assert waiting == 4000 - len(range(6000, 10_000, 3))
    assert fb.early.index.used == waiting
    clock.t += 50
    assert fb.early_gauges()[0] == 0 and fb.early.size == 0 and fb.early.index.used == 0
    assert fb.outcomes["joined"] + fb.outcomes["unmatched"] == 10_000


def test_duplicate_and_refused_labels_around_the_early_store():
    fb, _ = _bin_feedback()
    answer = fb.submit("ns", [{"id": "d", "label": "yes"}, {"id": "d", "label": "no"}, {"id": "w", "label": 3.5}])
    assert answer == {"joined": 0, "unmatched": 0, "expired": 0, "duplicate": 1, "invalid": 0, "early": 2}
    assert fb.submit("ns", [{"id": "d", "label": "no"}])["duplicate"] == 1  # one is already waiting: first wins
    _predict(fb, ["d", "w"], [0.8, 0.4])
    rows = fb.joined_rows(("ns", "m", "1"))
    assert rows.tolist() == [[0.8, 1.0, 1.0]]  # "yes", the first label of d
    assert fb.outcomes["invalid"] == 1 and fb.pending_gauges()[0] == 1  # 3.5 is no class; w still waits
    assert fb.submit("ns", [{"id": "d", "label": "yes"}])["duplicate"] == 1  # d has its label
    assert fb.submit("ns", [{"id": "w", "label": "no"}])["joined"] == 1
    # another namespace's label with the same id never joins this prediction
    fb.submit("other", [{"id": "q", "label": "yes"}])
    _predict(fb, ["q"], [0.6])
    assert fb.early_gauges()[0] == 1 and fb.pending_gauges()[0] == 1


def test_replay_with_labels_before_and_after_their_predictions_equals_scikit_learn(datasets):
    """Half the labels come up to 250 s BEFORE their prediction is ingested (the agent's lag), half up to
    24 h after; every exported realised metric equals scikit-learn on the joined rows (1e-9)."""
    prof_c, prof_r, served_c, served_r = datasets
    clock = Clock()
    window_age = 6 * 3600.0
    n, step, horizon = 30_000, 300.0, 86400.0
    ex, client = app_for({"clf": prof_c, "reg": prof_r}, clock, quality_window_rows=n,
                         quality_window_age=window_age)
    rng = np.random.default_rng(12)
    t0 = clock.t
    for model, (X, y, out) in (("clf", served_c), ("reg", served_r)):
        X, y, out = X[:n], y[:n], out[:n]
        pred_t = t0 + np.sort(rng.uniform(0, horizon, n))
        early = rng.random(n) < 0.5
        label_t = np.where(early, pred_t - rng.uniform(0, 250.0, n), pred_t + rng.uniform(0, 86400.0, n))
        ids = np.asarray([f"{model}-e-{i}" for i in range(n)])
        joined_at = np.full(n, np.nan)
        posted = np.zeros(n, dtype=bool)
        checks = 0
        for k in range(int((2 * horizon) / step) + 2):
            lo, hi = t0 - step + k * step, t0 + k * step
            clock.t = lo  # labels first: those of predictions of this step or the next come early
            due = np.flatnonzero((label_t >= lo) & (label_t < hi))
            due = due[rng.permutation(len(due))]
            for chunk in np.array_split(due, max(1, len(due) // 700)) if len(due) else []:
                items = [{"id": ids[i], "label": int(y[i]) if model == "clf" else float(y[i]),
                          "ts": float(label_t[i])} for i in chunk]
                r = client.post("/feedback", json=items, headers=HEADERS)
                a = r.json()
                assert r.status_code == 200 and a["joined"] + a["early"] == len(chunk), a
                assert a["early"] == np.count_nonzero(~posted[chunk]), a
                joined_at[chunk[posted[chunk]]] = clock.t
                posted_labels = chunk[~posted[chunk]]
                joined_at[posted_labels] = -1.0  # waiting
            clock.t = hi
            rows = np.flatnonzero((pred_t >= lo) & (pred_t < hi))
            for chunk in np.array_split(rows, max(1, len(rows) // 500)) if len(rows) else []:
                body = {"version": "1", "instances": X[chunk].tolist(), "ids": ids[chunk].tolist()}
                if model == "clf":
                    body["predictions"] = out[chunk].argmax(axis=1).tolist()
                    body["probabilities"] = out[chunk].tolist()
                else:
                    body["predictions"] = out[chunk].tolist()
                assert client.post(f"/ingest/{model}", json=body, headers=HEADERS).status_code == 200
                posted[chunk] = True
                waiting = chunk[joined_at[chunk] == -1.0]
                joined_at[waiting] = clock.t  # the early labels join when their prediction comes
            if k % 12 == 11:
                rows_in = np.flatnonzero(joined_at >= clock.t - window_age)
                got = realised(scrape(client), model)
                if len(rows_in) < 100:
                    assert not got
                    continue
                key = ("", model, "1")
                live = ex.feedback.joined_rows(key)
                if model == "clf":
                    yt, p = y[rows_in], out[rows_in, 1]
                    yhat = out[rows_in].argmax(axis=1)
                    want = {"auc": skm.roc_auc_score(yt, p), "accuracy": skm.accuracy_score(yt, yhat),
                            "f1": skm.f1_score(yt, yhat), "log_loss": skm.log_loss(yt, p, labels=[0, 1]),
                            "brier": skm.brier_score_loss(yt, p)}
                    expect = np.column_stack([p, yhat, yt]).astype(float)
                else:
                    want = {"rmse": skm.root_mean_squared_error(y[rows_in], out[rows_in]),
                            "mae": skm.mean_absolute_error(y[rows_in], out[rows_in])}
                    expect = np.column_stack([out[rows_in], out[rows_in], y[rows_in]])
                assert np.array_equal(live[np.lexsort(live.T)], expect[np.lexsort(expect.T)])
                assert set(got) == set(want), (got, want)
                for m, v in want.items():
                    assert abs(got[m] - v) <= 1e-9, (model, m, got[m], v)
                checks += 1
        assert np.isfinite(joined_at).all() and (joined_at > 0).all() and checks >= 8
    m = scrape(client)
    early_total = m[("modelops_feedback_early_joined_total", ())]
    assert 0.45 * 2 * n < early_total < 0.55 * 2 * n
    assert m[("modelops_feedback_labels_total", (("outcome", "joined"),))] == 2 * n
    assert m[("modelops_feedback_labels_total", (("outcome", "unmatched"),))] == 0
    assert m[("modelops_feedback_early_labels", ())] == 0
    assert m[("modelops_feedback_label_delay_seconds_count", ())] == 2 * n


def test_labels_join_at_the_shard_that_owns_the_model_and_elsewhere_give_up_counted(datasets):
    """With shards, a model's predictions are only on its owner (others refuse them, misdirected); its labels,
    posted to the owner (the feedback URL of its logger URL), join there. Posted to another shard they wait
    as early labels and give up counted as unmatched: never lost silently, never joined twice."""
    from modelops.drift.events import EventError
    from modelops.formats.drift_url import shard_of

    prof_c = datasets[0]
    X, y, out = datasets[2]
    owner = shard_of("shop", "clf", 2)
    clocks = [Clock(), Clock()]
    shards = [app_for({"clf": prof_c}, clocks[i], shard_id=i, shards=2, quality_min_labels=1)[0] for i in range(2)]
    body = {"version": "1", "instances": X[:50].tolist(), "predictions": out[:50].argmax(axis=1).tolist(),
            "probabilities": out[:50].tolist(), "ids": [f"o{i}" for i in range(50)]}
    with pytest.raises(EventError, match="shard"):
        shards[1 - owner].ingest_batch("clf", body, namespace="shop")
    shards[owner].ingest_batch("clf", body, namespace="shop")
    labels = [{"id": f"o{i}", "label": int(y[i])} for i in range(50)]
    assert shards[owner].feedback.submit("shop", labels)["joined"] == 50
    other = shards[1 - owner].feedback
    assert other.submit("shop", labels)["early"] == 50
    clocks[1 - owner].t += other.early.max_age + 1
    assert other.early_gauges()[3]["age"] == 50 and other.outcomes["unmatched"] == 50
    assert other.outcomes["joined"] == 0 and shards[owner].feedback.outcomes["joined"] == 50


def test_a_labels_delay_runs_from_when_the_inference_happened_not_from_its_receipt():
    """KServe's agent logs asynchronously: a label may reach the exporter before the logged prediction. Its
    delay is measured from the inference (the event's ce-time), clamped to [now - max_age, now]."""
    fb, clock = _bin_feedback(max_age=3600.0)
    t0 = clock.t
    assert fb.submit("ns", [{"id": "a", "label": "yes"}])["early"] == 1  # the label at t0
    clock.t = t0 + 30  # the prediction arrives 30 s later; the inference happened 10 s before the label
    fb.record(("ns", "m", "1"), BIN, "a", ["yes"], [[0.2, 0.8]], ts=t0 - 10)
    assert fb.outcomes["joined"] == 1 and fb.delay_sum == pytest.approx(10.0)
    assert fb.delay_buckets[0] == 0  # not in the <= 1 s bucket
    # per-row times (NaN: unknown, on receipt), a clock ahead of ours (now) and one far behind (now - max_age)
    clock.t = t0 + 100
    fb.record(("ns", "m", "1"), BIN, None, ["yes"] * 3, [[0.2, 0.8]] * 3, ids=["b", "c", "d"],
              ts=np.array([np.nan, t0 + 500, t0 - 10 * 3600]))
    slots, _ = fb.store.index.find(id_keys("ns", ["b", "c", "d"]))
    assert fb.store.ts[slots].tolist() == [t0 + 100, t0 + 100, t0 + 100 - 3600]
    clock.t = t0 + 110
    assert fb.submit("ns", [{"id": "b", "label": "no"}, {"id": "c", "label": "no"}])["joined"] == 2
    assert fb.delay_sum == pytest.approx(10.0 + 2 * 10.0)
