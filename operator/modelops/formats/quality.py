"""Model-quality vocabulary shared by the drift exporter (which exports it) and the operator (which acts on it).

Standard library only, so every runtime may import it (see QUALITY_CONTRACT in the design notes): the
series names and the ``metric`` label values of ``modelops_quality_*``, which direction is better, the
reference-profile key of the calibrator the trainer stores, and the feedback CloudEvent type.
"""

from __future__ import annotations

# metric label -> True when a higher value is better
QUALITY_HIGHER_IS_BETTER: dict[str, bool] = {
    "auc": True,
    "accuracy": True,
    "f1": True,
    "log_loss": False,
    "brier": False,
    "rmse": False,
    "mae": False,
}

# realised metrics per task (labels joined to predictions)
REALISED_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("auc", "accuracy", "f1", "log_loss", "brier"),
    "regression": ("rmse", "mae"),
}
# label-free estimates per task: CBPE for classifiers, DLE for regressors
ESTIMATED_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "auc", "f1"),
    "regression": ("mae", "rmse"),
}

# Prometheus series of the drift exporter
REALISED_SERIES = "modelops_quality_realised"
ESTIMATED_SERIES = "modelops_quality_estimated"
ESTIMATE_ERROR_SERIES = "modelops_quality_estimate_abs_error"
JOINED_LABELS_SERIES = "modelops_quality_joined_labels"
WINDOW_ROWS_SERIES = "modelops_quality_window_rows"
FEEDBACK_LABELS_SERIES = "modelops_feedback_labels_total"
FEEDBACK_DELAY_SERIES = "modelops_feedback_label_delay_seconds"
FEEDBACK_PENDING_SERIES = "modelops_feedback_pending_predictions"
FEEDBACK_PENDING_BYTES_SERIES = "modelops_feedback_pending_bytes"
# outcome label values of modelops_feedback_labels_total
FEEDBACK_OUTCOMES = ("joined", "unmatched", "expired", "duplicate", "invalid")
# labels that came before their prediction (the logger's events lag the client's label): waiting now, joined
# when the prediction came, or given up (then also counted as outcome "unmatched") for a reason
FEEDBACK_EARLY_SERIES = "modelops_feedback_early_labels"
FEEDBACK_EARLY_JOINED_SERIES = "modelops_feedback_early_joined"  # a counter (_total)
FEEDBACK_EARLY_UNMATCHED_SERIES = "modelops_feedback_early_unmatched"  # a counter (_total), label reason
# reason label values: waited longer than --feedback-max-early-age; overwritten in the full store
# (--feedback-max-early)
FEEDBACK_EARLY_REASONS = ("age", "capacity")

# reference-profile key of the calibrator fitted by the training Job on its held-out split
CALIBRATION_KEY = "calibration"
# CloudEvent type of a label sent to POST /feedback
FEEDBACK_EVENT_TYPE = "org.kubeflow.serving.feedback"
# default minimum joined labels before realised quality is exported (--quality-min-labels)
DEFAULT_QUALITY_MIN_LABELS = 100
