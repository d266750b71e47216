"""Charts people look at in the MLflow UI: ROC/PR curves, confusion matrix, residuals, feature importance.

matplotlib runs headless (Agg); every function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

_MAX_CURVE_CLASSES = 10


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def roc_pr_curves(y: np.ndarray, proba: np.ndarray, class_names: list[str], out: Path) -> Path:
    """ROC and precision-recall curves (one-vs-rest per class for multi-class, at most 10 classes)."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    plt = _plt()
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4.5))
    classes = [1] if proba.shape[1] == 2 else list(range(min(proba.shape[1], _MAX_CURVE_CLASSES)))
    for k in classes:
        positive = (y == k).astype(int)
        if positive.min() == positive.max():
            continue
        fpr, tpr, _ = roc_curve(positive, proba[:, k])
        prec, rec, _ = precision_recall_curve(positive, proba[:, k])
        label = class_names[k]
        ax_roc.plot(fpr, tpr, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
        ax_pr.plot(rec, prec, label=f"{label} (base rate {positive.mean():.2f})")
    ax_roc.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (held-out test)")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall (held-out test)", ylim=(0, 1.02))
    ax_roc.legend(fontsize=8, loc="lower right")
    ax_pr.legend(fontsize=8, loc="lower left")
    return _save(fig, out)


def confusion(y: np.ndarray, pred: np.ndarray, class_names: list[str], out: Path) -> Path:
    """Confusion matrix with counts and row-normalized shares."""
    from sklearn.metrics import confusion_matrix

    plt = _plt()
    k = len(class_names)
    cm = confusion_matrix(y, pred, labels=list(range(k)))
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = min(3 + 0.6 * k, 12)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = range(k)
    ax.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=class_names)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix (held-out test)")
    return _save(fig, out)


def residuals(y: np.ndarray, pred: np.ndarray, out: Path) -> Path:
    """Predicted vs actual, and residuals vs predicted, for regression."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
    ax1.scatter(y, pred, s=6, alpha=0.5)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax1.plot([lo, hi], [lo, hi], ls="--", c="grey", lw=0.8)
    ax1.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (held-out test)")
    ax2.scatter(pred, y - pred, s=6, alpha=0.5)
    ax2.axhline(0, ls="--", c="grey", lw=0.8)
    ax2.set(xlabel="predicted", ylabel="residual (actual - predicted)", title="Residuals")
    return _save(fig, out)


def feature_importance(importance: dict[str, float], out: Path, title: str, top: int = 25) -> Path:
    plt = _plt()
    items = sorted(importance.items(), key=lambda kv: kv[1])[-top:]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(items) + 1.5))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(xlabel="importance", title=title)
    return _save(fig, out)
