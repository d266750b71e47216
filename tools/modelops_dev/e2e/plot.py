"""The loop as a picture: drift share over time (with the trigger threshold) and the canary weight."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_timeline(timeline: dict[str, Any], out: Path, threshold: float = 0.3) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = timeline["samples"]
    t = [s["t"] for s in samples]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, constrained_layout=True)
    versions = sorted({v for s in samples for v in (s.get("drift_by_version") or {})})
    if versions:  # one line per served version: each is compared with its own training data
        for v in versions:
            ax1.plot(t, [(s.get("drift_by_version") or {}).get(v, float("nan")) for s in samples], marker=".",
                     label=f"drift share of v{v} traffic (modelops_drift_share)")
    else:
        ax1.plot(t, [s["drift_share"] if s["drift_share"] is not None else float("nan") for s in samples],
                 marker=".", label="drift share (Prometheus: max modelops_drift_share)")
    ax1.axhline(threshold, color="tab:red", linestyle="--", label=f"RetrainSchedule threshold {threshold}")
    ax1.set_ylabel("share of drifted features")
    ax1.set_ylim(-0.05, 1.05)
    ax2.step(t, [s["weight"] for s in samples], where="post", color="tab:green", label="canary weight %")
    ax2.set_ylabel("canary traffic %")
    ax2.set_ylim(-5, 105)
    ax2.set_xlabel("seconds since the loop started")
    for e in timeline["events"]:
        if e["stage"] in ("drift", "promote") and ("fired" in e["message"] or "trained" in e["message"]
                                                  or "promoted" in e["message"] or "shifted" in e["message"]):
            for ax in (ax1, ax2):
                ax.axvline(e["t"], color="grey", alpha=0.4)
            ax1.annotate(e["message"].split(":")[0].split("(")[0][:32], (e["t"], 1.0), rotation=90, fontsize=7,
                         va="top")
    ax1.legend(loc="center left", fontsize=8)
    ax2.legend(loc="upper left", fontsize=8)
    fig.suptitle("modelops loop: drift -> retrain -> canary -> promote")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


#: quality metrics drawn (higher is better for both), one panel each
QUALITY_PANELS = (("auc", "AUC"), ("accuracy", "accuracy"))


def quality_series(samples: list[dict[str, Any]], kind: str, metric: str) -> dict[str, tuple[list[float], list[float]]]:
    """{version: (times, values)} of one quality metric (`kind` "realised" or "estimated") in the samples;
    a version's line has a point only where Prometheus had the series (absent: below the minimum labels)."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for s in samples:
        for version, metrics in ((s.get("quality") or {}).get(kind) or {}).items():
            if metric in metrics:
                ts, vs = out.setdefault(str(version), ([], []))
                ts.append(float(s["t"]))
                vs.append(float(metrics[metric]))
    return out


def plot_quality(timeline: dict[str, Any], out: Path) -> Path:
    """Realised (solid, from the labels) and estimated (dashed, CBPE without labels) quality per version over
    time, and the joined labels per version: the exporter's quality series as Prometheus had them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = timeline["samples"]
    versions = sorted({str(v) for s in samples for kind in ("realised", "estimated", "joined")
                       for v in ((s.get("quality") or {}).get(kind) or {})}, key=lambda v: (len(v), v))
    colours = {v: f"C{i % 10}" for i, v in enumerate(versions)}
    fig, axes = plt.subplots(len(QUALITY_PANELS) + 1, 1, figsize=(10, 8), sharex=True, constrained_layout=True)
    for ax, (metric, title) in zip(axes, QUALITY_PANELS, strict=False):
        for kind, style in (("realised", "-"), ("estimated", "--")):
            for version, (t, v) in quality_series(samples, kind, metric).items():
                ax.plot(t, v, style, marker="." if kind == "realised" else None, color=colours.get(version),
                        label=f"v{version} {kind}")
        ax.set_ylabel(title)
        if ax.has_data():
            ax.legend(loc="lower left", fontsize=8, ncol=2)
    joined = axes[-1]
    for version in versions:
        pts = [(s["t"], ((s.get("quality") or {}).get("joined") or {})[version]) for s in samples
               if version in ((s.get("quality") or {}).get("joined") or {})]
        if pts:
            joined.step([p[0] for p in pts], [p[1] for p in pts], where="post", color=colours[version],
                        label=f"v{version} joined labels in the window")
    joined.set_ylabel("joined labels")
    joined.set_xlabel("seconds since the loop started")
    if joined.has_data():
        joined.legend(loc="upper left", fontsize=8)
    for e in timeline["events"]:
        if e["stage"] in ("drift", "promote") and ("shifted" in e["message"] or "promoted" in e["message"]):
            for ax in axes:
                ax.axvline(e["t"], color="grey", alpha=0.4)
            axes[0].annotate(e["message"].split(":")[0].split("(")[0][:32], (e["t"], axes[0].get_ylim()[1]),
                             rotation=90, fontsize=7, va="top")
    fig.suptitle("model quality per version: realised from delayed labels (solid) vs estimated without labels "
                 "(dashed)", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
