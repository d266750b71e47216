"""Which way is better for each model-quality metric: shared by the drift exporter and the operator."""

#: metric name (the `metric` label of modelops_quality_*) -> True when a higher value is better
QUALITY_HIGHER_IS_BETTER: dict[str, bool] = {
    "auc": True,
    "accuracy": True,
    "f1": True,
    "log_loss": False,
    "brier": False,
    "rmse": False,
    "mae": False,
}
