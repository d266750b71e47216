"""Human-facing output: Evidently HTML reports and a drift PNG. Heavy imports happen inside functions.

The Evidently report compares the current window with the reference *sample* kept in the profile (raw
training rows; profiles without one get a sample drawn from the stored quantiles and category frequencies,
and the report says so). Each column uses the same test as the exporter's metrics, so the HTML verdicts
and the Prometheus gauges tell the same story.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelops.drift.stats import P_VALUE_METHODS, WindowDrift

# exporter method -> Evidently stattest name
EVIDENTLY_METHODS = {"wasserstein_norm": "wasserstein", "jensenshannon": "jensenshannon", "ks": "ks",
                     "chi2": "chisquare", "z": "z"}
SYNTHETIC_SAMPLE_ROWS = 2000


def reference_frame(profile: Mapping[str, Any], include_prediction: bool = False) -> Any:
    """Reference rows for a report: the profile's raw sample, or one synthesized from the profile."""
    import pandas as pd

    sample = profile.get("sample")
    feats = profile["features"]
    if sample and sample.get("features"):
        frame = pd.DataFrame({f: sample["features"].get(f, [None] * sample["rows"]) for f in feats})
        if include_prediction and sample.get("prediction") is not None:
            frame["prediction"] = sample["prediction"]
        frame.attrs["synthetic"] = False
    else:
        rng = np.random.default_rng(0)
        frame = pd.DataFrame({f: _synthesize(p, rng, SYNTHETIC_SAMPLE_ROWS) for f, p in feats.items()})
        if include_prediction and profile.get("prediction"):
            frame["prediction"] = _synthesize(profile["prediction"], rng, SYNTHETIC_SAMPLE_ROWS)
        frame.attrs["synthetic"] = True
    for f, p in feats.items():
        if p.get("type") != "categorical":
            frame[f] = pd.to_numeric(frame[f], errors="coerce")
    return frame


def _synthesize(p: Mapping[str, Any], rng: np.random.Generator, n: int) -> list[Any]:
    missing = rng.random(n) < float(p.get("missing_rate") or 0.0)
    if p.get("type") == "categorical":
        cats = list(p.get("categories", {}))
        probs = np.asarray([p["categories"][c] for c in cats] + [p.get("other_freq", 0.0)], dtype=float)
        draws = rng.choice(len(probs), n, p=probs / probs.sum()) if probs.sum() > 0 else np.zeros(n, int)
        return [None if m or d == len(cats) else cats[d] for m, d in zip(missing, draws, strict=True)]
    if p.get("values"):
        vals = np.asarray(p["values"], dtype=float)
        x = rng.choice(vals, n, p=np.asarray(p["value_probs"]) / np.sum(p["value_probs"]))
    elif p.get("quantiles"):
        q = np.asarray(p["quantiles"], dtype=float)
        x = np.interp(rng.random(n), np.linspace(0, 1, len(q)), q)
    else:
        x = np.full(n, np.nan)
    return [None if m else float(v) for m, v in zip(missing, x, strict=True)]


def evidently_html(current: Any, reference: Any, profile: Mapping[str, Any], drift: WindowDrift | None,
                   title: str) -> str:
    """Data drift + data summary (quality) report of the window against the reference, as HTML."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    feats = profile["features"]
    categorical = [f for f in current.columns if f in feats and feats[f].get("type") == "categorical"]
    numeric = [f for f in current.columns if f in feats and f not in categorical]
    if "prediction" in current.columns:
        pred = profile.get("prediction") or {}
        (categorical if pred.get("type") == "categorical" else numeric).append("prediction")
    methods: dict[str, Any] = {}
    if drift is not None:
        for fd in [*drift.features, *([drift.prediction] if drift.prediction else [])]:
            if fd.method is not None:
                methods[fd.name] = EVIDENTLY_METHODS[fd.method]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    cur = current.copy()
    ref = reference[[c for c in cur.columns if c in reference.columns]].copy()
    for c in categorical:  # Evidently wants one dtype per column on both sides
        cur[c] = cur[c].astype("object")
        ref[c] = ref[c].astype("object")
    report = Report([DataDriftPreset(per_column_method=methods or None), DataSummaryPreset()])
    snapshot = report.run(Dataset.from_pandas(cur, data_definition=definition),
                          Dataset.from_pandas(ref, data_definition=definition))
    html: str = snapshot.get_html_str(as_iframe=False)
    note = (f"<title>{_esc(title)}</title><div style='font-family:sans-serif;padding:8px'><h2>{_esc(title)}"
            f"</h2><p>current window: {len(current)} rows; reference: {len(reference)} rows"
            f"{' synthesized from the profile (no raw sample in it)' if reference.attrs.get('synthetic') else ''}"
            "</p></div>")
    return html.replace("<body>", "<body>" + note, 1) if "<body>" in html else note + html


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def relative_score(method: str, score: float, threshold: float) -> float:
    """Score on one scale for every test: 1 at the threshold, above 1 means drift."""
    if method in P_VALUE_METHODS:
        return math.log(max(score, 1e-300)) / math.log(threshold)
    return score / threshold if threshold else 0.0


def drift_png(drift: WindowDrift, profile: Mapping[str, Any], current: Any, title: str,
              top: int = 3) -> bytes:
    """Bar chart of every feature's drift score relative to its threshold, plus reference-vs-window
    histograms of the most drifted features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judged = [f for f in drift.features if f.status == "ok" and f.score is not None]
    if drift.prediction is not None and drift.prediction.score is not None:
        judged.append(drift.prediction)
    judged.sort(key=lambda f: relative_score(str(f.method), float(f.score or 0), float(f.threshold or 1)))
    worst = sorted(judged, key=lambda f: -relative_score(str(f.method), float(f.score or 0),
                                                         float(f.threshold or 1)))[:top]
    fig = plt.figure(figsize=(13, max(4.0, 0.28 * len(judged) + 1.5)), dpi=90)
    grid = fig.add_gridspec(max(1, len(worst)), 2, width_ratios=[1.2, 1])
    ax = fig.add_subplot(grid[:, 0])
    if not judged:
        ax.text(0.5, 0.5, f"insufficient data: {drift.rows} rows, need {drift.min_rows}", ha="center",
                va="center", fontsize=13)
        ax.set_axis_off()
    else:
        rel = [relative_score(str(f.method), float(f.score or 0), float(f.threshold or 1)) for f in judged]
        colors = ["#d62728" if f.drifted else "#2ca02c" for f in judged]
        ax.barh([f"{f.name} ({f.method})" for f in judged], rel, color=colors)
        ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_xlabel("drift score / threshold   (>= 1: drift; red = drifted)")
        share = f"{drift.drift_share:.0%}" if drift.drift_share is not None else "n/a"
        ax.set_title(f"{drift.drifted_features}/{drift.judged_features} features drifted ({share}), "
                     f"{drift.rows} rows")
    for i, fd in enumerate(worst):
        axh = fig.add_subplot(grid[i, 1])
        ref = profile["prediction"] if fd.name == "prediction" else profile["features"][fd.name]
        values = current[fd.name] if fd.name in current.columns else None
        _histogram(axh, fd.name, ref, values)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _histogram(ax: Any, name: str, ref: Mapping[str, Any], values: Any) -> None:
    if values is None:
        ax.set_axis_off()
        return
    if ref.get("type") == "categorical":
        cats = list(ref["categories"])[:12]
        cur = values.dropna().astype(str)
        n = max(1, len(cur))
        cur_p = [float((cur == c).sum()) / n for c in cats]
        x = np.arange(len(cats))
        ax.bar(x - 0.2, [ref["categories"][c] for c in cats], 0.4, label="reference")
        ax.bar(x + 0.2, cur_p, 0.4, label="window")
        ax.set_xticks(x, cats, rotation=30, fontsize=7)
    else:
        edges = np.asarray(ref.get("bin_edges") or [], dtype=float)
        lo, hi = float(ref.get("min") or 0), float(ref.get("max") or 1)
        bounds = np.concatenate([[lo], edges, [hi]])
        cur = np.asarray(values, dtype=float)
        cur = cur[np.isfinite(cur)]
        counts = np.diff(np.searchsorted(np.sort(cur), edges, side="right"), prepend=0, append=len(cur))
        widths = np.maximum(np.diff(bounds), 1e-12)  # density, so equal-mass bins look like a histogram
        ax.stairs(np.asarray(ref["bin_probs"]) / widths, bounds, label="reference", linewidth=2)
        ax.stairs(counts / max(1, len(cur)) / widths, bounds, label="window", linewidth=2)
        ax.set_ylabel("density", fontsize=7)
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=7)
