"""The training spec: what `modelops train --spec FILE` reads and what RetrainSchedule's `spec.training` holds.

One pydantic model is the single source of truth: the CRD's `spec.training` schema is generated from (or
checked against) `TrainSpec.model_json_schema(by_alias=True)`. Field names are snake_case in Python and
camelCase on the wire (`populate_by_name=True`), unknown keys are rejected (`extra="forbid"`) so a typo in
a RetrainSchedule fails loudly instead of being ignored. Only JSON-schema-friendly types are used (strings,
numbers, booleans, enums, lists, string maps) so the generated CRD schema stays structural.

The MLflow tracking URI is deliberately not part of the spec: it comes from MLFLOW_TRACKING_URI, which the
operator injects into the training Job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

Task = Literal["classification", "regression"]
Family = Literal["xgboost", "hist_gradient_boosting", "random_forest", "linear"]
Metric = Literal["auc", "accuracy", "f1", "logloss", "rmse", "mae", "r2"]

#: every estimator family the search knows, in the order the default search space lists them
ALL_FAMILIES: tuple[Family, ...] = ("xgboost", "hist_gradient_boosting", "random_forest", "linear")
#: metrics that make sense for each task
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("auc", "accuracy", "f1", "logloss"),
    "regression": ("rmse", "mae", "r2"),
}
#: metrics where a larger value is better; all others are minimized
HIGHER_IS_BETTER: frozenset[str] = frozenset({"auc", "accuracy", "f1", "r2"})
#: the metric used when the spec names none
DEFAULT_METRIC: dict[str, str] = {"classification": "auc", "regression": "rmse"}
#: a column name (non-empty)
Column = Annotated[str, Field(min_length=1)]
#: dataset locations a training Job can read: a URL with a scheme the trainer supports, or an absolute path
URI_PATTERN = r"^((file|s3|https?)://.+|/.+)"
#: registered model names: usable in `models:/<name>@<alias>` URIs and in the experiment `modelops/<name>`
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _SpecModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)


class DatasetSpec(_SpecModel):
    """Where the training table is and how to read it."""

    uri: str = Field(min_length=1, pattern=URI_PATTERN, description=(
        "Location of the training table: an absolute local or mounted path, file://, s3:// (endpoint "
        "configurable), or http(s)://. Relative paths are rejected: they would depend on the working "
        "directory of the training container."))
    format: Literal["auto", "csv", "parquet"] = Field(
        "auto", description="File format; 'auto' decides from the file extension (.parquet/.pq, else CSV).")
    target: str = Field(min_length=1, description="Name of the column to predict.")
    features: list[Column] | None = Field(None, max_length=1000, description=(
        "Input columns, in model input order. Default: every column except the target and the time column."))
    categorical_features: list[Column] | None = Field(None, max_length=1000, description=(
        "Columns to treat as categorical even if numeric. Non-numeric columns are always categorical."))
    time_column: str | None = Field(None, description=(
        "Optional timestamp column: the split becomes time-ordered (latest rows are held out) and the "
        "column is not used as a feature."))
    task: Task = Field(description="'classification' (binary or multi-class) or 'regression'.")
    storage_options: dict[str, str] = Field(default_factory=dict, description=(
        "Extra fsspec storage options for remote URIs (e.g. s3 'anon': 'true'). Credentials belong in "
        "environment variables (AWS_ACCESS_KEY_ID, ...) from a Secret, not here."))
    s3_endpoint_url: str | None = Field(None, description=(
        "S3-compatible endpoint (MinIO, Ceph). Default: MLFLOW_S3_ENDPOINT_URL or AWS_ENDPOINT_URL from the "
        "environment, else AWS."))


class ValidationSpec(_SpecModel):
    """Checks the dataset must pass before any training starts."""

    min_rows: int = Field(100, ge=1, description=(
        "Fail if the table has fewer usable rows than this. 100 by default: with the default splits that "
        "leaves 20 test rows for the champion-vs-challenger gate; fewer make the gate a coin toss."))
    max_missing_rate: float = Field(0.5, ge=0.0, le=1.0, description=(
        "Fail if any feature, or the target, has a larger share of missing values than this. Rows with "
        "a missing target are dropped."))
    max_categories: int = Field(1000, ge=2, description=(
        "Fail if a categorical feature has more distinct values than this (usually an ID column)."))
    max_classes: int = Field(50, ge=2, description="Fail if a classification target has more classes.")
    min_class_rows: int = Field(5, ge=2, description=(
        "Fail if a class of a classification target has fewer rows than this (a stratified split needs "
        "examples of every class on both sides)."))


class SplitSpec(_SpecModel):
    """How rows are divided into training, validation (for the search) and held-out test data."""

    test_fraction: float = Field(0.2, gt=0.0, lt=0.9, description=(
        "Share of rows held out for the final evaluation and the champion-vs-challenger gate."))
    validation_fraction: float = Field(0.2, gt=0.0, lt=0.9, description=(
        "Share of the remaining training rows the search scores each trial on."))
    seed: int = Field(42, ge=0, description="Seed of the (stratified for classification) random split.")


class SearchSpec(_SpecModel):
    """The hyperparameter search."""

    trials: int = Field(20, ge=1, le=2000, description="Trial budget: at most this many trials.")
    timeout_seconds: float | None = Field(600, gt=0, le=604800, description=(
        "Time budget for the search: no new trial starts after this many seconds. Null for no limit. "
        "Results are reproducible only when the trial budget, not the time budget, ends the search."))
    families: list[Family] = Field(default=list(ALL_FAMILIES), min_length=1, max_length=4, description=(
        "Estimator families to search over: xgboost, hist_gradient_boosting, random_forest, linear."))
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler (seeded).")
    pruning: bool = Field(True, description=(
        "Stop unpromising trials early (median pruner over staged validation scores)."))
    seed: int = Field(42, ge=0, description="Seed of the sampler and of every estimator.")
    metric: Metric | None = Field(None, description=(
        "Metric the search optimizes on the validation split. Default: auc (classification), "
        "rmse (regression)."))

    @model_validator(mode="after")
    def _unique_families(self) -> SearchSpec:
        if len(set(self.families)) != len(self.families):
            raise ValueError(f"search.families lists a family twice: {self.families}")
        return self


class PromotionSpec(_SpecModel):
    """The champion-vs-challenger gate."""

    metric: Metric | None = Field(None, description=(
        "Metric compared on the held-out test split. Default: the search metric."))
    min_improvement: float = Field(0.0, ge=0.0, description=(
        "Absolute margin, in metric units, by which the new version must beat the current champion "
        "(direction-aware: higher auc/accuracy/f1/r2, lower rmse/mae/logloss). A tie never passes."))
    require_approval: bool = Field(False, description=(
        "Hold a passing version for manual approval (tag modelops.dev/approval=pending) instead of "
        "setting the 'challenger' alias."))


class MlflowSpec(_SpecModel):
    """Where runs are tracked (the server itself comes from MLFLOW_TRACKING_URI)."""

    experiment: str | None = Field(None, min_length=1, description=(
        "MLflow experiment for the training runs. Default: 'modelops/<modelName>'."))


class TrainSpec(_SpecModel):
    """Everything one training needs: the spec file of `modelops train` and RetrainSchedule `spec.training`."""

    model_name: str = Field(min_length=1, max_length=200, pattern=MODEL_NAME_PATTERN,
                            description="Registered model name in the MLflow model registry.")
    dataset: DatasetSpec = Field(description="The training table.")
    validation: ValidationSpec = Field(default_factory=lambda: ValidationSpec.model_validate({}),
                                       description="Dataset checks run before training.")
    split: SplitSpec = Field(default_factory=lambda: SplitSpec.model_validate({}), description="Train/validation/test split.")
    search: SearchSpec = Field(default_factory=lambda: SearchSpec.model_validate({}), description="Hyperparameter search budget and space.")
    promotion: PromotionSpec = Field(default_factory=lambda: PromotionSpec.model_validate({}), description="Champion-vs-challenger gate.")
    mlflow: MlflowSpec = Field(default_factory=lambda: MlflowSpec.model_validate({}), description="MLflow tracking settings.")

    @model_validator(mode="after")
    def _metrics_fit_task(self) -> TrainSpec:
        allowed = TASK_METRICS[self.dataset.task]
        for where, metric in (("search.metric", self.search.metric), ("promotion.metric", self.promotion.metric)):
            if metric is not None and metric not in allowed:
                raise ValueError(f"{where} {metric!r} does not fit task {self.dataset.task!r}; "
                                 f"use one of {', '.join(allowed)}")
        ds = self.dataset
        if ds.features is not None:
            if ds.target in ds.features:
                raise ValueError(f"dataset.features must not contain the target {ds.target!r}")
            if ds.time_column is not None and ds.time_column in ds.features:
                raise ValueError(f"dataset.features must not contain the time column {ds.time_column!r}")
            if len(set(ds.features)) != len(ds.features):
                raise ValueError("dataset.features lists a column twice")
            if ds.categorical_features and not set(ds.categorical_features) <= set(ds.features):
                extra = sorted(set(ds.categorical_features) - set(ds.features))
                raise ValueError(f"dataset.categoricalFeatures names columns not in dataset.features: {extra}")
        if ds.time_column is not None and ds.time_column == ds.target:
            raise ValueError("dataset.timeColumn must differ from dataset.target")
        return self

    @property
    def search_metric(self) -> str:
        """The metric the search optimizes (explicit or the task default)."""
        return self.search.metric or DEFAULT_METRIC[self.dataset.task]

    @property
    def promotion_metric(self) -> str:
        """The metric the gate compares (explicit or the search metric)."""
        return self.promotion.metric or self.search_metric

    @property
    def experiment_name(self) -> str:
        return self.mlflow.experiment or f"modelops/{self.model_name}"


def crd_schema() -> dict[str, Any]:
    """`TrainSpec` as a Kubernetes structural OpenAPI v3 schema (for RetrainSchedule `spec.training`).

    Differences from pydantic's JSON Schema: $refs inlined; `anyOf [X, null]` -> X + `nullable: true`;
    numeric `exclusiveMinimum` -> `minimum` + boolean `exclusiveMinimum`; no `title`, no
    `additionalProperties: false` (structural schemas prune unknown fields instead; `modelops train`
    still rejects them); null defaults dropped; sections whose fields all have defaults default to `{}`
    so the API server fills in the nested defaults.
    """
    raw = TrainSpec.model_json_schema(by_alias=True)
    defs: dict[str, Any] = raw.pop("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(x) for x in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            if target.get("type") == "object" and not target.get("required"):
                merged.setdefault("default", {})
            return convert(merged)
        if "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            if len(options) == 1:
                rest = {k: v for k, v in node.items() if k != "anyOf"}
                single: dict[str, Any] = convert({**options[0], **rest})
                if len(options) < len(node["anyOf"]):
                    single["nullable"] = True
                return single
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "title" or (key == "additionalProperties" and value is False):
                continue
            if key == "default" and value is None:
                continue
            if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
                continue
            out[key] = convert(value)
        return out

    result: dict[str, Any] = convert(raw)
    return result


def load_spec(path: str | Path) -> TrainSpec:
    """Read a spec from a YAML or JSON file (JSON is YAML, but `.json` files get JSON's error messages).

    A whole RetrainSchedule-like document is accepted too: if the file has `spec.training` (or just
    `training`), that section is the spec.
    """
    p = Path(path)
    text = p.read_text()
    data: Any
    if p.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    if isinstance(data.get("spec"), dict) and "training" in data["spec"]:
        data = data["spec"]["training"]
    elif "training" in data and "modelName" not in data and "model_name" not in data:
        data = data["training"]
    if isinstance(data, dict) and isinstance(data.get("dataset"), dict):
        uri = data["dataset"].get("uri")
        if isinstance(uri, str) and uri.strip():
            data = {**data, "dataset": {**data["dataset"], "uri": resolve_dataset_path(uri, p.parent)}}
    return TrainSpec.model_validate(data)


def resolve_dataset_path(uri: str, base: Path) -> str:
    """A relative path (or ``~/...``) in a spec file, made absolute against the spec file's directory.

    URLs (anything with ``scheme://``) and absolute paths are returned unchanged. Only spec files get this:
    a RetrainSchedule's `spec.training` still needs an absolute path (the Job's working directory is not
    the user's).
    """
    if "://" in uri or uri.startswith("/"):
        return uri
    path = Path(uri).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


#: what to write instead, for the fields whose pattern a user can get wrong (by error location)
_PATTERN_HINTS: dict[tuple[str | int, ...], str] = {
    ("dataset", "uri"): "must be a path (absolute, or relative to the spec file) or a file://, s3:// or "
                        "http(s):// URL",
    ("modelName",): "must start with a letter or digit and contain only letters, digits, '.', '_' and '-'",
}


def describe_validation_error(exc: Exception) -> str:
    """One `field: problem` line per error of a pydantic ValidationError (else `str(exc)`), joined by '; '."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        field = ".".join(str(x) for x in loc) or "spec"
        msg = str(err.get("msg", ""))
        if err.get("type") == "string_pattern_mismatch" and loc in _PATTERN_HINTS:
            msg = f"{err.get('input')!r} {_PATTERN_HINTS[loc]}"
        elif err.get("type") == "value_error":  # our model validators: the message names its fields
            parts.append(msg.removeprefix("Value error, "))
            continue
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)
