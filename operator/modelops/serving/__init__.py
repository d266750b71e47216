"""The model server (`modelops serve`): a KServe predictor for MLflow models with a compiled fast path."""
