"""Prometheus metrics of the drift exporter (``GET /metrics``).

Every scrape evaluates the windows that changed since the previous scrape (cached otherwise), so the
values are as fresh as the scrape. Labels come from closed sets or capped sets only: ``model`` (at most
``--max-models``), ``version`` (at most ``--max-versions`` per model), ``feature`` (the reference
profile's features, at most ``--max-features`` per model version; the rest are judged and counted in the
drift share, but get no series of their own), ``method``/``reason``/``kind``/``side``/``what``
(fixed vocabularies).

Per model version (labels ``model_namespace``, ``model``, ``version``; ``model_namespace`` is the
InferenceService's namespace, "" for senders that named none)
    modelops_drift_share                      share (0-1) of judged features whose drift test fired
    modelops_drift_dataset_drift              1 when that share >= the dataset threshold (0.5), else 0
    modelops_drift_drifted_features           number of features whose drift test fired
    modelops_drift_judged_features            features with enough data to be judged
    modelops_drift_insufficient_data          1 while the window has fewer rows than --min-rows; the
                                              drift series above and below are then ABSENT (no fake 0)
    modelops_drift_window_rows                rows in the window now
    modelops_drift_window_min_rows            rows needed before drift is judged
    modelops_drift_window_oldest_row_age_seconds
    modelops_drift_reference_rows             training rows behind the reference profile
    modelops_drift_features_not_exported      features beyond --max-features (no per-feature series)
    modelops_drift_rows_ingested_total        counter of rows received
    modelops_drift_prediction_drift           1 when the prediction distribution drifted (label method)
    modelops_drift_prediction_score_ratio     prediction drift score / threshold (>= 1: drift)
    modelops_drift_prediction_psi             PSI of the predictions against the training predictions
Per feature (labels ``model``, ``version``, ``feature``; drift series also ``method``)
    modelops_drift_feature_drift              1 when the feature drifted, else 0; ``method`` is the test:
                                              wasserstein_norm, jensenshannon, ks, chi2 or z
    modelops_drift_feature_score              that test's statistic (a distance; a p-value for ks/chi2/z)
    modelops_drift_feature_threshold          its threshold (distances: drift at >=; p-values: at <)
    modelops_drift_feature_score_ratio        score on one scale for all tests: 1 = threshold, > 1 drift
    modelops_drift_feature_psi                population stability index against the reference bins
    modelops_drift_feature_missing_share      share of missing values in the window (data quality)
    modelops_drift_feature_out_of_range_share numeric: share outside the training [min, max]
    modelops_drift_feature_unseen_category_share  categorical: share of categories absent in training
Exporter
    modelops_drift_events_received_total{kind=request|response|batch}
    modelops_drift_events_rejected_total{reason}   reasons: see modelops.drift.events.REASONS
    modelops_drift_join_pending / modelops_drift_join_pending_bytes
    modelops_drift_join_unmatched_total{side=request|response}   a request without response still counts
    modelops_drift_truncated_total{what=features|versions|pending}   what the caps cut off
    modelops_drift_evaluation_duration_seconds   histogram of window evaluations
Model quality (issue 17; modelops.drift.feedback; labels ``model_namespace``, ``model``, ``version``)
    modelops_quality_realised{metric}        auc, accuracy, f1, log_loss, brier (classifiers), rmse, mae
                                             (regressors) over the joined (prediction, label) window;
                                             absent below --quality-min-labels joined rows
    modelops_quality_estimated{metric}       CBPE accuracy, auc, f1 / DLE mae, rmse without labels
    modelops_quality_estimate_abs_error{metric}  |estimated - realised|
    modelops_quality_joined_labels / modelops_quality_window_rows
    modelops_feedback_labels_total{outcome=joined|unmatched|expired|duplicate|invalid}
    modelops_feedback_label_delay_seconds    histogram; modelops_feedback_pending_predictions,
    modelops_feedback_pending_bytes, modelops_feedback_pending_evicted_total
    modelops_feedback_early_labels           labels waiting for a prediction not logged yet (they came first)
    modelops_feedback_early_joined_total     such labels joined when their prediction came
    modelops_feedback_early_unmatched_total{reason=age|capacity}   such labels given up (also outcome unmatched)
    modelops_feedback_early_bytes            memory preallocated by the early-label store

PromQL for RetrainSchedule's drift trigger (the exporter evaluates on every scrape)::

    # half or more of the features of the served version drifted, for 30 minutes
    min_over_time(modelops_drift_dataset_drift{model="churn"}[30m]) == 1
    # or on the share directly, whatever version serves
    max by (model) (modelops_drift_share{model="churn"}) >= 0.3
    # one feature
    modelops_drift_feature_drift{model="churn", feature="tenure"} == 1
    # prediction drift
    modelops_drift_prediction_drift{model="churn"} == 1

An empty result means "no verdict" (no data or insufficient data): a trigger should not fire on it;
``modelops_drift_insufficient_data == 1`` tells the two apart from "no drift" (which is an explicit 0).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from modelops.drift.events import REASONS
from modelops.drift.feedback import DELAY_BUCKETS
from modelops.drift.report import relative_score
from modelops.drift.service import EVALUATION_BUCKETS, Exporter
from modelops.formats import quality as fq

#: `model_namespace`: the InferenceService's namespace (issue 16, M7); not `namespace`, which Prometheus
#: sets from the scrape target (the exporter's own namespace)
MV = ["model_namespace", "model", "version"]
MVF = [*MV, "feature"]
MVFM = [*MVF, "method"]


class DriftCollector(Collector):
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        ex = self.exporter
        evaluations = ex.evaluate_all()

        def g(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        share = g("modelops_drift_share", "Share (0-1) of judged features of the current window whose drift "
                  "test fired, against the model's training reference.", MV)
        dataset = g("modelops_drift_dataset_drift", "1 when the drift share reached the dataset threshold "
                    "(default 0.5: half the features drifted), else 0.", MV)
        drifted = g("modelops_drift_drifted_features", "Number of features of the window whose drift test "
                    "fired.", MV)
        judged = g("modelops_drift_judged_features", "Number of features with enough non-missing values to "
                   "be judged.", MV)
        insufficient = g("modelops_drift_insufficient_data", "1 while the window holds fewer rows than the "
                         "minimum: drift is not judged and the drift series are absent; else 0.", MV)
        rows = g("modelops_drift_window_rows", "Rows in the sliding window now (after age expiry).", MV)
        min_rows = g("modelops_drift_window_min_rows", "Rows the window needs before drift is judged.", MV)
        age = g("modelops_drift_window_oldest_row_age_seconds", "Age of the oldest row in the window.", MV)
        ref_rows = g("modelops_drift_reference_rows", "Training rows summarized by the reference profile.", MV)
        not_exported = g("modelops_drift_features_not_exported", "Features judged but without per-feature "
                         "series because of the --max-features cap.", MV)
        ingested = CounterMetricFamily("modelops_drift_rows_ingested", "Rows received for this model "
                                       "version (requests joined with their responses, and batch rows).",
                                       labels=MV)
        p_drift = g("modelops_drift_prediction_drift", "1 when the distribution of the model's predictions "
                    "drifted from its predictions on the training data, else 0.", [*MV, "method"])
        p_ratio = g("modelops_drift_prediction_score_ratio", "Prediction drift score divided by its "
                    "threshold (1 = threshold, above 1 = drift).", [*MV, "method"])
        p_psi = g("modelops_drift_prediction_psi", "Population stability index of the predictions.", MV)
        f_drift = g("modelops_drift_feature_drift", "1 when this feature's distribution in the window drifted "
                    "from the training reference, else 0; method names the test.", MVFM)
        f_score = g("modelops_drift_feature_score", "Statistic of the deciding drift test: a distance "
                    "(wasserstein_norm, jensenshannon; drift when >= threshold) or a p-value (ks, chi2, z; "
                    "drift when < threshold).", MVFM)
        f_thr = g("modelops_drift_feature_threshold", "Threshold of the deciding drift test.", MVFM)
        f_ratio = g("modelops_drift_feature_score_ratio", "Drift score on one scale for every test: 1 at "
                    "the threshold, above 1 means drift.", MVFM)
        f_psi = g("modelops_drift_feature_psi", "Population stability index of the feature against the "
                  "reference bins (< 0.1 stable, 0.1-0.2 moderate, > 0.2 major shift).", MVF)
        f_missing = g("modelops_drift_feature_missing_share", "Share of missing values of the feature in "
                      "the window.", MVF)
        f_range = g("modelops_drift_feature_out_of_range_share", "Share of the window's values of a numeric "
                    "feature outside the training minimum and maximum.", MVF)
        f_unseen = g("modelops_drift_feature_unseen_category_share", "Share of the window's values of a "
                     "categorical feature that are not among the training categories.", MVF)

        tracked = {(t.namespace, t.model, t.version): t for t in ex.tracked()}
        for e in evaluations:
            mv = [e.namespace, e.model, e.version]
            t = tracked.get((e.namespace, e.model, e.version))
            r = e.result
            rows.add_metric(mv, r.rows)
            min_rows.add_metric(mv, r.min_rows)
            insufficient.add_metric(mv, 1.0 if r.status == "insufficient_data" else 0.0)
            if t is not None:
                ref_rows.add_metric(mv, float(t.profile.get("rows", 0)))
                with ex.lock:
                    oldest = t.window.oldest_age(_now())
                    total = ex.rows_ingested.get((e.namespace, e.model, e.version), 0)
                if oldest is not None:
                    age.add_metric(mv, oldest)
                ingested.add_metric(mv, total)
            if r.status != "ok":
                continue
            exported = r.features[: ex.cfg.max_features]
            not_exported.add_metric(mv, len(r.features) - len(exported))
            if r.drift_share is not None:
                share.add_metric(mv, r.drift_share)
                dataset.add_metric(mv, 1.0 if r.dataset_drifted else 0.0)
            drifted.add_metric(mv, float(r.drifted_features or 0))
            judged.add_metric(mv, float(r.judged_features or 0))
            for fd in exported:
                mvf = [*mv, fd.name]
                f_missing.add_metric(mvf, fd.missing_share)
                if fd.status != "ok" or fd.method is None or fd.score is None or fd.threshold is None:
                    continue
                mvfm = [*mvf, fd.method]
                f_drift.add_metric(mvfm, 1.0 if fd.drifted else 0.0)
                f_score.add_metric(mvfm, fd.score)
                f_thr.add_metric(mvfm, fd.threshold)
                f_ratio.add_metric(mvfm, relative_score(fd.method, fd.score, fd.threshold))
                if fd.psi is not None:
                    f_psi.add_metric(mvf, fd.psi)
                if fd.out_of_range_share is not None:
                    f_range.add_metric(mvf, fd.out_of_range_share)
                if fd.unseen_category_share is not None:
                    f_unseen.add_metric(mvf, fd.unseen_category_share)
            pd_ = r.prediction
            if pd_ is not None and pd_.status == "ok" and pd_.method and pd_.score is not None:
                p_drift.add_metric([*mv, pd_.method], 1.0 if pd_.drifted else 0.0)
                p_ratio.add_metric([*mv, pd_.method], relative_score(pd_.method, pd_.score,
                                                                     float(pd_.threshold or 1)))
                if pd_.psi is not None:
                    p_psi.add_metric(mv, pd_.psi)
        yield from (share, dataset, drifted, judged, insufficient, rows, min_rows, age, ref_rows, not_exported,
                    ingested, p_drift, p_ratio, p_psi, f_drift, f_score, f_thr, f_ratio, f_psi, f_missing,
                    f_range, f_unseen)

        with ex.lock:
            received = dict(ex.events_received)
            rejected = dict(ex.events_rejected)
            unmatched = dict(ex.unmatched)
            truncated = dict(ex.truncated)
            pending, pending_bytes = len(ex.join), ex.join.nbytes
            buckets, eval_sum = list(ex.evaluation_buckets), ex.evaluation_sum
        c = CounterMetricFamily("modelops_drift_events_received", "CloudEvents and batches received, by kind.",
                                labels=["kind"])
        for kind in ("request", "response", "batch"):
            c.add_metric([kind], received.get(kind, 0))
        yield c
        c = CounterMetricFamily("modelops_drift_events_rejected", "Events refused with a 4xx/5xx answer, by "
                                "reason.", labels=["reason"])
        for reason in REASONS:
            c.add_metric([reason], rejected.get(reason, 0))
        yield c
        c = CounterMetricFamily("modelops_drift_join_unmatched", "Requests or responses whose partner never "
                                "came (lone requests still feed the window).", labels=["side"])
        for side in ("request", "response"):
            c.add_metric([side], unmatched.get(side, 0))
        yield c
        c = CounterMetricFamily("modelops_drift_truncated", "Items cut off by a cap: per-feature series over "
                                "--max-features, model versions over --max-versions, join entries evicted.",
                                labels=["what"])
        for what in ("features", "versions", "models", "pending"):
            c.add_metric([what], truncated.get(what, 0))
        yield c
        gp = GaugeMetricFamily("modelops_drift_join_pending", "Requests/responses waiting for their partner.")
        gp.add_metric([], pending)
        yield gp
        gb = GaugeMetricFamily("modelops_drift_join_pending_bytes", "Approximate memory held by the join "
                               "table.")
        gb.add_metric([], pending_bytes)
        yield gb
        cumulative = 0
        out = []
        for bound, count in zip([*EVALUATION_BUCKETS, float("inf")], buckets, strict=True):
            cumulative += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        h = HistogramMetricFamily("modelops_drift_evaluation_duration_seconds", "Time to compute the drift "
                                  "of one window.")
        h.add_metric([], out, eval_sum)
        yield h
        yield from quality_families(ex)


def quality_families(ex: Exporter) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
    """The model-quality series of issue 17 (names and labels: modelops.formats.quality, QUALITY_CONTRACT)."""
    MVM = [*MV, "metric"]
    realised = GaugeMetricFamily(fq.REALISED_SERIES, "Realised model quality over the window of joined "
                                 "(prediction, label) rows; absent below --quality-min-labels joined rows.", labels=MVM)
    estimated = GaugeMetricFamily(fq.ESTIMATED_SERIES, "Label-free quality estimate over the window of "
                                  "predictions (CBPE for classifiers, DLE for regressors); absent without a "
                                  "calibrator in the reference profile or below --min-rows.", labels=MVM)
    error = GaugeMetricFamily(fq.ESTIMATE_ERROR_SERIES, "|estimated - realised| on the same version, once "
                              "realised quality exists.", labels=MVM)
    joined = GaugeMetricFamily(fq.JOINED_LABELS_SERIES, "Joined (prediction, label) rows in the quality "
                               "window now.", labels=MV)
    window = GaugeMetricFamily(fq.WINDOW_ROWS_SERIES, "Predictions in the estimation window now.", labels=MV)
    for tracked in ex.tracked():
        labels = [tracked.namespace, tracked.model, tracked.version]
        q = ex.quality(tracked)
        joined.add_metric(labels, q.joined if q else 0)
        window.add_metric(labels, q.window_rows if q else 0)
        if q is None:
            continue
        for family, values in ((realised, q.realised), (estimated, q.estimated), (error, q.abs_error)):
            for metric, value in sorted(values.items()):
                family.add_metric([*labels, metric], value)
    yield from (realised, estimated, error, joined, window)
    f = ex.feedback
    waiting, early_bytes, early_joined, given_up = f.early_gauges()  # first: gives up the labels too old now
    with f.lock:
        outcomes = dict(f.outcomes)
        buckets, delay_sum = list(f.delay_buckets), f.delay_sum
        evicted = f.store.evicted
    c = CounterMetricFamily(fq.FEEDBACK_LABELS_SERIES, "Labels received on POST /feedback, by outcome "
                            "(a label that came before its prediction: once it joined it or gave up).",
                            labels=["outcome"])
    for outcome in fq.FEEDBACK_OUTCOMES:
        c.add_metric([outcome], outcomes.get(outcome, 0))
    yield c
    cumulative = 0
    points = []
    for bound, count in zip([*DELAY_BUCKETS, float("inf")], buckets, strict=True):
        cumulative += count
        points.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    h = HistogramMetricFamily(fq.FEEDBACK_DELAY_SERIES, "Label time minus prediction time of joined labels.")
    h.add_metric([], points, delay_sum)
    yield h
    pending, nbytes = f.pending_gauges()
    g = GaugeMetricFamily(fq.FEEDBACK_PENDING_SERIES, "Predictions waiting for their label (younger than "
                          "--feedback-max-age).")
    g.add_metric([], pending)
    yield g
    g = GaugeMetricFamily(fq.FEEDBACK_PENDING_BYTES_SERIES, "Memory preallocated by the pending-prediction "
                          "store and its id index.")
    g.add_metric([], nbytes)
    yield g
    c = CounterMetricFamily("modelops_feedback_pending_evicted", "Predictions overwritten in the full "
                            "pending store before their label came (--feedback-max-pending).")
    c.add_metric([], evicted)
    yield c
    g = GaugeMetricFamily(fq.FEEDBACK_EARLY_SERIES, "Labels waiting for their prediction: they came before "
                          "the logger's event (--feedback-max-early, --feedback-max-early-age).")
    g.add_metric([], waiting)
    yield g
    c = CounterMetricFamily(fq.FEEDBACK_EARLY_JOINED_SERIES, "Labels that came before their prediction and "
                            "joined it when it came (also outcome joined).")
    c.add_metric([], early_joined)
    yield c
    c = CounterMetricFamily(fq.FEEDBACK_EARLY_UNMATCHED_SERIES, "Labels that came before their prediction "
                            "and gave up waiting for it, by reason (also outcome unmatched).", labels=["reason"])
    for reason in fq.FEEDBACK_EARLY_REASONS:
        c.add_metric([reason], given_up.get(reason, 0))
    yield c
    g = GaugeMetricFamily("modelops_feedback_early_bytes", "Memory preallocated by the early-label store and "
                          "its id index.")
    g.add_metric([], early_bytes)
    yield g


def _now() -> float:
    import time

    return time.monotonic()
