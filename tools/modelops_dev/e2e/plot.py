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
