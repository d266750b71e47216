"""Benchmark: label join rate, pending-store memory, quality metrics per window, and CBPE against NannyML.

    uv run python bench/quality_feedback.py [--pending 1000000] [--labels 200000] [--nannyml-python PATH]

Prints one JSON object (issue 17, "Cost"):

- ``join``: labels joined per second by ``Feedback.submit`` (parsing included) and through
  ``Exporter.handle_feedback`` from JSON bytes (what one POST /feedback costs), batches of 1,000 labels
  for a store holding ``--pending`` predictions; out-of-order ids.
- ``join.early_mix``: the same labels when ``--early-share`` of them come BEFORE their prediction (the
  agent logs it asynchronously): they wait in the early-label store and join when the prediction is
  recorded. Labels/s over the label posts plus the extra cost of recording those predictions with labels
  waiting (recording them with none waiting is timed too and subtracted: it is ingest, paid anyway).
  Absent when the exporter has no early-label store (``--baseline``-style runs of an older tree).
- ``memory``: resident set size (RSS, from /proc) of a fresh process that imports the exporter and holds
  ``--pending`` pending predictions, and its growth over the process before the store existed; then with
  the early-label store full too (``early_rss_mb``).
- ``window``: milliseconds for every quality metric of one 10,000-row window: realised classification
  (AUC, accuracy, F1, log loss, Brier) + CBPE (accuracy, AUC, F1); realised regression (RMSE, MAE) + DLE.
  Side by side: scikit-learn's metric functions on the same rows (the exporter does not ship scikit-learn).
- ``nannyml``: with ``--nannyml-python`` (a throwaway venv's interpreter, see bench/quality_nannyml_ref.py),
  NannyML's CBPE on identical inputs: max |ours - NannyML| per metric and the speed ratio. NannyML is
  never a project dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


CLF_PROFILE: dict[str, Any] = {
    "task": "classification", "features": {},
    "prediction": {"type": "categorical", "categories": {"0": 0.5, "1": 0.5}},
    "calibration": {"kind": "classification", "method": "isotonic", "x": [0.0, 1.0], "y": [0.0, 1.0],
                    "positive_class": 1, "classes": [0, 1]},
}


def fill(fb: Any, pending: int, chunk: int = 10_000) -> None:
    rng = np.random.default_rng(0)
    for start in range(0, pending, chunk):
        n = min(chunk, pending - start)
        s = rng.random(n)
        fb.record(("ns", "m", "1"), CLF_PROFILE, None, (s > 0.5).astype(int).tolist(),
                  np.column_stack([1 - s, s]), ids=[f"req-{i}" for i in range(start, start + n)])


def memory_child(pending: int) -> dict[str, float]:
    from modelops.drift.feedback import Feedback
    from modelops.drift.service import Exporter  # noqa: F401  (what the exporter process imports)

    before = rss_mb()
    fb = Feedback(max_pending=pending)
    fill(fb, pending)
    assert fb.pending_gauges()[0] == pending
    out = {"pending": pending, "rss_mb": round(rss_mb(), 1), "rss_growth_mb": round(rss_mb() - before, 1),
           "store_bytes_mb": round(fb.store.nbytes / 2**20, 1)}
    early = getattr(fb, "early", None)
    if early is not None:  # and every early label slot taken (labels of ids never predicted)
        for start in range(0, early.capacity, 10_000):
            fb.submit("ns", [{"id": f"early-{i}", "label": i % 2}
                             for i in range(start, min(early.capacity, start + 10_000))])
        assert fb.early_gauges()[0] == early.capacity
        out.update(early_labels=early.capacity, early_rss_mb=round(rss_mb(), 1),
                   early_store_bytes_mb=round(early.nbytes / 2**20, 1))
    return out


def bench_early_mix(pending: int, labels: int, share: float) -> dict[str, Any]:
    """Labels/s when ``share`` of them come before their prediction (see the module doc)."""
    from modelops.drift.feedback import Feedback

    rng = np.random.default_rng(4)
    late_n = int(labels * share)
    fb = Feedback(max_pending=pending, max_early=max(late_n, 1))
    fill(fb, pending - late_n)  # the predictions logged before their labels: req-0 .. req-(pending-late_n-1)
    ids = np.concatenate([rng.permutation(pending - late_n)[:labels - late_n], np.arange(pending - late_n, pending)])
    ids = ids[rng.permutation(len(ids))]
    batches = [[{"id": f"req-{i}", "label": int(rng.random() < 0.5)} for i in ids[b:b + 1000]]
               for b in range(0, labels, 1000)]
    s = rng.random(late_n)
    chunks = [(lo, min(late_n, lo + 20)) for lo in range(0, late_n, 20)]  # the agent's responses, 20 rows each

    def record(f: Any, prefix: str) -> float:
        t0 = time.perf_counter()
        for lo, hi in chunks:
            f.record(("ns", "m", "1"), CLF_PROFILE, None, (s[lo:hi] > 0.5).astype(int).tolist(),
                     np.column_stack([1 - s[lo:hi], s[lo:hi]]),
                     ids=[f"{prefix}-{i}" for i in range(pending - late_n + lo, pending - late_n + hi)])
        return time.perf_counter() - t0

    base = record(fb, "other")  # the same predictions with no label waiting: ingest cost paid anyway
    t0 = time.perf_counter()
    answers = [fb.submit("ns", b) for b in batches]
    t_submit = time.perf_counter() - t0
    early = sum(a["early"] for a in answers)
    t_record = record(fb, "req")
    joined = fb.outcomes["joined"]
    assert early == late_n and joined == labels, (early, late_n, joined, labels)
    return {"labels": labels, "early_share": share, "early_labels": early,
            "labels_per_s": round(joined / (t_submit + max(t_record - base, 0.0))),
            "submit_seconds": round(t_submit, 3), "record_with_early_seconds": round(t_record, 3),
            "record_without_seconds": round(base, 3)}


def bench_join(pending: int, labels: int) -> dict[str, Any]:
    from modelops.drift.feedback import Feedback
    from modelops.drift.reference import ReferenceSpec, ReferenceStore
    from modelops.drift.service import Exporter, ExporterConfig

    rng = np.random.default_rng(1)
    out: dict[str, Any] = {"pending": pending, "labels": labels, "batch": 1000}
    fb = Feedback(max_pending=pending)
    fill(fb, pending)
    picks = rng.permutation(pending)[:labels]
    batches = [[{"id": f"req-{i}", "label": int(rng.random() < 0.5)} for i in picks[b:b + 1000]]
               for b in range(0, labels, 1000)]
    t0 = time.perf_counter()
    joined = sum(fb.submit("ns", b)["joined"] for b in batches)
    out["submit_labels_per_s"] = round(joined / (time.perf_counter() - t0))
    assert joined == labels
    # the HTTP handler's work (JSON decode + join), on a fresh store
    ex = Exporter(ReferenceStore([ReferenceSpec.parse("m=mem")], loader=lambda s, u: CLF_PROFILE),
                  ExporterConfig(feedback_max_pending=pending))
    fill(ex.feedback, pending)
    bodies = [json.dumps(b).encode() for b in batches]
    t0 = time.perf_counter()
    joined = sum(ex.handle_feedback({}, body, "ns")["joined"] for body in bodies)
    out["http_handler_labels_per_s"] = round(joined / (time.perf_counter() - t0))
    return out


def bench_window(reps: int = 50) -> dict[str, Any]:
    from sklearn import metrics as skm

    from modelops.drift import estimate, quality

    rng = np.random.default_rng(2)
    n = 10_000
    s = rng.random(n)
    y = (rng.random(n) < s).astype(float)
    pred = (s > 0.5).astype(float)
    cal = CLF_PROFILE["calibration"]
    X = rng.normal(size=(n, 10))
    yr, pr = rng.normal(size=n), rng.normal(size=n)
    import pandas as pd

    from modelops_pipelines import calibration

    names = [f"f{i}" for i in range(10)]
    hold = rng.normal(size=(5000, 10))
    dle_cal = calibration.fit_regression(pd.DataFrame(hold, columns=names), hold[:, 0] + rng.normal(size=5000)
                                         * (1 + np.abs(hold[:, 1])), hold[:, 0], names)  # what the trainer stores

    def timed(fn: Any) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return round((time.perf_counter() - t0) / reps * 1000, 3)

    ours_clf = timed(lambda: (quality.classification_metrics(y, pred, s), estimate.cbpe(cal, s, pred)))
    ours_reg = timed(lambda: (quality.regression_metrics(yr, pr), estimate.dle(dle_cal, X, pr)))
    sk_clf = timed(lambda: (skm.roc_auc_score(y, s), skm.accuracy_score(y, pred), skm.f1_score(y, pred),
                            skm.log_loss(y, s), skm.brier_score_loss(y, s)))
    sk_reg = timed(lambda: (skm.root_mean_squared_error(yr, pr), skm.mean_absolute_error(yr, pr)))
    return {"rows": n, "classification_all_ms": ours_clf, "regression_all_ms": ours_reg,
            "sklearn_realised_only_classification_ms": sk_clf, "sklearn_realised_only_regression_ms": sk_reg}


def bench_nannyml(python: str, windows: int = 20, rows: int = 5000) -> dict[str, Any]:
    from modelops.drift import estimate
    from modelops_pipelines import calibration

    rng = np.random.default_rng(3)

    def truth(n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(shift, 1, n)
        p = 1 / (1 + np.exp(-(1.5 * x)))
        score = 1 / (1 + np.exp(-(1.2 * x + 0.1)))  # a slightly miscalibrated model of it
        return score, (rng.random(n) < p).astype(int)

    ref_score, ref_y = truth(20_000, 0.0)
    wins = [truth(rows, 0.8 * w / windows) for w in range(windows)]
    cal = calibration.fit_classification(ref_y, np.column_stack([1 - ref_score, ref_score]), [0, 1])
    t0 = time.perf_counter()
    ours = [estimate.cbpe(cal, sc, (sc > 0.5).astype(float)) for sc, _ in wins]
    ours_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.npz"
        np.savez(path, ref_score=ref_score, ref_y=ref_y, windows=np.stack([sc for sc, _ in wins]))
        ref = Path(__file__).with_name("quality_nannyml_ref.py")
        done = subprocess.run([python, str(ref), str(path)], capture_output=True, text=True, check=False,
                              env={**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"})
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    diff = {m: round(max(abs(o[m] - t) for o, t in zip(ours, theirs[n], strict=True)), 5)
            for m, n in (("accuracy", "accuracy"), ("auc", "roc_auc"), ("f1", "f1"))}
    return {"nannyml": theirs["nannyml"], "windows": windows, "rows": rows, "max_abs_diff": diff,
            "ours_seconds": round(ours_s, 4), "nannyml_seconds": round(theirs["seconds"], 3),
            "speed_ratio": round(theirs["seconds"] / ours_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pending", type=int, default=1_000_000)
    ap.add_argument("--labels", type=int, default=200_000)
    ap.add_argument("--nannyml-python", default=None)
    ap.add_argument("--early-share", type=float, default=0.3, help="share of labels that come before their "
                    "prediction in join.early_mix")
    ap.add_argument("--only-join", action="store_true", help="the join figures only (no window, NannyML)")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.pending)))
        return
    child = subprocess.run([sys.executable, __file__, "--memory-child", "--pending", str(args.pending)],
                           capture_output=True, text=True, check=True)
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": [round(v, 2) for v in os.getloadavg()]},
        "memory": json.loads(child.stdout.strip().splitlines()[-1]),
        "join": bench_join(args.pending, args.labels),
    }
    from modelops.drift.feedback import Feedback

    if hasattr(Feedback(max_pending=1), "early"):
        out["join"]["early_mix"] = bench_early_mix(args.pending, args.labels, args.early_share)
    if not args.only_join:
        out["window"] = bench_window()
    if args.nannyml_python:
        out["nannyml"] = bench_nannyml(args.nannyml_python)
    out["machine"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
