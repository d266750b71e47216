"""Load the training table from a URI, hash its bytes, and validate it before any training starts.

Everything here imports only pandas/numpy (plus fsspec for s3), so a bad dataset fails in seconds,
before MLflow or any estimator library is imported, and nothing is registered.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelops_pipelines.spec import DatasetSpec, TrainSpec

_CHUNK = 1 << 20


class DatasetError(ValueError):
    """The dataset cannot be used for training; the message names the problem and how to fix it."""


@dataclass(frozen=True)
class LoadedTable:
    frame: pd.DataFrame
    uri: str
    sha256: str
    size_bytes: int
    format: str


def _format_for(uri_path: str, declared: str) -> str:
    if declared != "auto":
        return declared
    lower = uri_path.lower()
    if lower.endswith((".parquet", ".pq", ".parq")):
        return "parquet"
    return "csv"


def _read_bytes(spec: DatasetSpec) -> tuple[bytes, str]:
    """All bytes of the dataset and the path part used to guess the format."""
    uri = spec.uri
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        path = Path(urllib.parse.unquote(parsed.path) if scheme == "file" else uri)
        try:
            return path.read_bytes(), str(path)
        except FileNotFoundError:
            raise DatasetError(f"dataset {uri!r} does not exist") from None
        except IsADirectoryError:
            raise DatasetError(f"dataset {uri!r} is a directory, not a file") from None
        except OSError as exc:
            raise DatasetError(f"dataset {uri!r} cannot be read: {exc.strerror or exc}") from None
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri, timeout=60) as resp:
                return resp.read(), parsed.path
        except OSError as exc:
            raise DatasetError(f"dataset {uri!r} cannot be downloaded: {exc}") from None
    if scheme in ("s3", "s3a", "gs", "gcs", "az", "abfs"):
        import fsspec

        options: dict[str, Any] = dict(spec.storage_options)
        if scheme in ("s3", "s3a"):
            endpoint = (spec.s3_endpoint_url or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
                        or os.environ.get("AWS_ENDPOINT_URL"))
            if endpoint:
                options.setdefault("endpoint_url", endpoint)
            for key in ("anon", "use_ssl"):
                if key in options:
                    options[key] = str(options[key]).lower() in ("1", "true", "yes")
        try:
            with fsspec.open(uri.replace("s3a://", "s3://", 1), "rb", **options) as fh:
                return fh.read(), parsed.path
        except Exception as exc:  # fsspec/botocore raise many types; all mean "cannot read"
            raise DatasetError(f"dataset {uri!r} cannot be read: {type(exc).__name__}: {exc}") from None
    raise DatasetError(f"dataset URI scheme {scheme!r} is not supported (use a path, file://, s3://, http(s)://)")


def load_table(spec: DatasetSpec) -> LoadedTable:
    """Read the dataset once, hash exactly the bytes that were parsed, and parse CSV or Parquet."""
    raw, path_part = _read_bytes(spec)
    fmt = _format_for(path_part, spec.format)
    digest = hashlib.sha256()
    view = memoryview(raw)
    for start in range(0, len(raw), _CHUNK):
        digest.update(view[start:start + _CHUNK])
    if not raw:
        raise DatasetError(f"dataset {spec.uri!r} is empty (0 bytes)")
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(io.BytesIO(raw))
        else:
            frame = pd.read_csv(io.BytesIO(raw), low_memory=False)
    except Exception as exc:  # parsers raise many types; all mean "unreadable"
        raise DatasetError(f"dataset {spec.uri!r} is not readable as {fmt}: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    return LoadedTable(frame=frame, uri=spec.uri, sha256=digest.hexdigest(), size_bytes=len(raw), format=fmt)


@dataclass
class PreparedData:
    """The validated table, reduced to features + target, with the typing the model will see."""

    X: pd.DataFrame
    y: pd.Series
    time: pd.Series | None
    features: list[str]
    categorical: list[str]
    numeric: list[str]
    classes: list[Any] | None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return "classification" if self.classes is not None else "regression"


def _missing_rate(series: pd.Series) -> float:
    return float(series.isna().mean()) if len(series) else 0.0


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def validate_and_prepare(frame: pd.DataFrame, spec: TrainSpec) -> PreparedData:
    """Check the table against the spec and return model-ready columns, or raise DatasetError.

    Numeric features become float64 (so a missing value never changes a column's type between training
    and serving) and categorical features become strings with NaN for missing values.
    """
    ds, rules = spec.dataset, spec.validation
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise DatasetError(f"dataset has duplicate column names: {dupes}")
    if ds.target not in columns:
        raise DatasetError(f"target column {ds.target!r} is not in the dataset; columns are: "
                           f"{_short_list(columns)}")
    if ds.time_column is not None and ds.time_column not in columns:
        raise DatasetError(f"time column {ds.time_column!r} is not in the dataset; columns are: "
                           f"{_short_list(columns)}")
    if ds.features is not None:
        missing = [c for c in ds.features if c not in columns]
        if missing:
            raise DatasetError(f"feature column(s) {missing} are not in the dataset; columns are: "
                               f"{_short_list(columns)}")
        features = list(ds.features)
    else:
        features = [c for c in columns if c not in (ds.target, ds.time_column)]
    if not features:
        raise DatasetError("dataset has no feature columns besides the target")
    if ds.categorical_features:
        unknown = [c for c in ds.categorical_features if c not in features]
        if unknown:
            raise DatasetError(f"categorical feature(s) {unknown} are not feature columns")

    n_total = len(frame)
    target = frame[ds.target]
    target_missing = _missing_rate(target)
    if target_missing > rules.max_missing_rate:
        raise DatasetError(f"target column {ds.target!r} is missing in {target_missing:.1%} of rows "
                           f"(maxMissingRate {rules.max_missing_rate:.1%})")
    keep = target.notna().to_numpy()
    frame = frame.loc[keep].reset_index(drop=True)
    target = frame[ds.target]
    if len(frame) < rules.min_rows:
        raise DatasetError(f"dataset has {len(frame)} usable rows (with a target value), fewer than "
                           f"minRows {rules.min_rows}")
    if target.nunique(dropna=True) < 2:
        value = target.iloc[0] if len(target) else None
        raise DatasetError(f"target column {ds.target!r} is constant (every row is {_json_scalar(value)!r}); "
                           "there is nothing to learn")

    report_cols: dict[str, Any] = {}
    forced_cat = set(ds.categorical_features or [])
    categorical: list[str] = []
    numeric: list[str] = []
    X = pd.DataFrame(index=frame.index)
    for name in features:
        col = frame[name]
        miss = _missing_rate(col)
        kind = _kind(col, name in forced_cat)
        n_unique = int(col.nunique(dropna=True))
        report_cols[name] = {"dtype": str(col.dtype), "kind": kind, "missing_rate": round(miss, 6),
                             "distinct": n_unique}
        if kind == "unsupported":
            raise DatasetError(f"feature {name!r} has type {col.dtype} that cannot be used as a model input; "
                               "convert it to a number or a category, or leave it out of dataset.features")
        if miss >= 1.0:
            raise DatasetError(f"feature {name!r} has no values (100% missing)")
        if miss > rules.max_missing_rate:
            raise DatasetError(f"feature {name!r} is missing in {miss:.1%} of rows "
                               f"(maxMissingRate {rules.max_missing_rate:.1%})")
        if kind == "categorical":
            if n_unique > rules.max_categories:
                raise DatasetError(f"categorical feature {name!r} has {n_unique} distinct values "
                                   f"(maxCategories {rules.max_categories}); is it an ID column?")
            categorical.append(name)
            X[name] = coerce_categorical(col)
        else:
            numeric.append(name)
            X[name] = coerce_numeric(col)

    constant = [n for n in features if report_cols[n]["distinct"] <= 1]
    report: dict[str, Any] = {
        "rows_total": n_total,
        "rows_used": len(frame),
        "rows_dropped_missing_target": n_total - len(frame),
        "target": ds.target,
        "target_missing_rate": round(target_missing, 6),
        "features": report_cols,
        "constant_features": constant,
    }

    classes: list[Any] | None = None
    if ds.task == "classification":
        counts = target.value_counts(dropna=True)
        if len(counts) > rules.max_classes:
            raise DatasetError(f"classification target {ds.target!r} has {len(counts)} distinct values "
                               f"(maxClasses {rules.max_classes}); is the task regression?")
        rare = {str(_json_scalar(k)): int(v) for k, v in counts.items() if v < rules.min_class_rows}
        if rare:
            raise DatasetError(f"classification target {ds.target!r} has classes with fewer than "
                               f"minClassRows {rules.min_class_rows} rows: {rare}")
        classes = sorted((_json_scalar(v) for v in counts.index), key=_class_sort_key)
        index = {c: i for i, c in enumerate(classes)}
        y = target.map(lambda v: index[_json_scalar(v)]).astype("int64")
        report["class_counts"] = {str(_json_scalar(k)): int(v) for k, v in counts.items()}
    else:
        if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
            converted = pd.to_numeric(target, errors="coerce")
            if converted.isna().any():
                bad = target[converted.isna()].iloc[0]
                raise DatasetError(f"regression target {ds.target!r} is not numeric (e.g. {bad!r})")
            target = converted
        y = target.astype("float64")
        if not np.isfinite(y.to_numpy()).all():
            raise DatasetError(f"regression target {ds.target!r} contains infinite values")
        report["target_summary"] = {"mean": float(y.mean()), "std": float(y.std()),
                                    "min": float(y.min()), "max": float(y.max())}

    time = None
    if ds.time_column is not None:
        raw_time = frame[ds.time_column]
        parsed = raw_time if pd.api.types.is_numeric_dtype(raw_time) else pd.to_datetime(raw_time, errors="coerce")
        if parsed.isna().any():
            raise DatasetError(f"time column {ds.time_column!r} has {int(parsed.isna().sum())} missing or "
                               "unparseable values")
        time = parsed.reset_index(drop=True)
    return PreparedData(X=X, y=y.rename(ds.target), time=time, features=features, categorical=categorical,
                        numeric=numeric, classes=classes, report=report)


def coerce_categorical(col: pd.Series) -> pd.Series:
    """A categorical feature as the model sees it: strings, NaN for missing."""
    return col.astype("string").astype(object).where(col.notna(), np.nan)


def coerce_numeric(col: pd.Series) -> pd.Series:
    """A numeric feature as the model sees it: float64, NaN for missing or unparseable."""
    return pd.to_numeric(col, errors="coerce").astype("float64")


def _class_sort_key(value: Any) -> tuple[int, Any]:
    # Numbers before strings, each in natural order, so labels 0/1 keep index 0/1.
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (0, value)
    return (1, str(value))


def _kind(col: pd.Series, forced_categorical: bool) -> str:
    if forced_categorical:
        return "categorical"
    if pd.api.types.is_bool_dtype(col):
        return "numeric"
    if pd.api.types.is_numeric_dtype(col):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col):
        return "unsupported"
    if isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(col) or col.dtype == object:
        return "categorical"
    return "unsupported"


def _short_list(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def describe_report(report: dict[str, Any]) -> str:
    """A short human summary of the validation report for the progress log."""
    feats = report.get("features", {})
    cats = sum(1 for f in feats.values() if f["kind"] == "categorical")
    worst = sorted(feats.items(), key=lambda kv: -kv[1]["missing_rate"])[:3]
    missing = ", ".join(f"{k} {v['missing_rate']:.1%}" for k, v in worst if v["missing_rate"] > 0) or "none"
    return (f"{report['rows_used']} rows ({report['rows_dropped_missing_target']} dropped: no target), "
            f"{len(feats)} features ({cats} categorical); most missing: {missing}")
