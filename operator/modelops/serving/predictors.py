"""Predictors: the original model (scikit-learn / XGBoost) and the ONNX Runtime fast path.

Each takes a validated `Batch` and returns `Raw`: class probabilities [N, C] (float64) for classifiers that
have them, otherwise labels, or values [N] (float64) for regressors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelops.serving.schema import FORBIDDEN_STRING_CHAR, Batch, ModelSpec

# Stands for a missing string inside ONNX graphs (string tensors cannot hold NaN). Clients cannot send it:
# schema rejects NUL characters.
MISSING_STRING = FORBIDDEN_STRING_CHAR + "missing"


@dataclass
class Raw:
    probabilities: npt.NDArray[np.float64] | None = None
    labels: npt.NDArray[Any] | None = None
    values: npt.NDArray[np.float64] | None = None


def _matrix(batch: Batch, spec: ModelSpec, dtype: Any) -> npt.NDArray[Any]:
    if batch.matrix is not None:
        return batch.matrix.astype(dtype)
    cols = [batch.columns[f.name] for f in spec.features]
    if len(cols) == 1:
        return cols[0].astype(dtype).reshape(-1, 1)
    return np.column_stack(cols).astype(dtype, copy=False)


class SklearnPredictor:
    """The scikit-learn pipeline as trained (pandas in, as in training)."""

    backend = "sklearn"

    def __init__(self, model: Any, spec: ModelSpec) -> None:
        import pandas as pd

        self._pd = pd
        self.model = model
        self.spec = spec
        self.has_proba = spec.task == "classification" and hasattr(model, "predict_proba")
        # A pipeline that starts with named-column transformers needs a frame; a bare estimator a matrix.
        self._needs_frame = hasattr(model, "feature_names_in_") or not spec.all_numeric
        _single_thread(model)

    def frame(self, batch: Batch) -> Any:
        data = {}
        for f in self.spec.features:
            col = batch.columns[f.name]
            if f.kind == "string":
                col = np.where(col == None, np.nan, col)  # noqa: E711 - elementwise None test
            elif f.kind == "integer" and not np.isnan(col).any():
                col = col.astype(np.int64)
            elif f.kind == "boolean" and not np.isnan(col).any():
                col = col.astype(bool)
            data[f.name] = col
        return self._pd.DataFrame(data, columns=list(self.spec.feature_names))

    def predict(self, batch: Batch) -> Raw:
        x = self.frame(batch) if self._needs_frame else _matrix(batch, self.spec, np.float64)
        if self.has_proba:
            return Raw(probabilities=np.asarray(self.model.predict_proba(x), dtype=np.float64))
        out = np.asarray(self.model.predict(x))
        if self.spec.task == "regression":
            return Raw(values=out.astype(np.float64).reshape(-1))
        return Raw(labels=out)


class XGBoostPredictor:
    """A bare XGBoost booster (mlflow.xgboost flavor), called the way KServe's xgbserver calls it."""

    backend = "xgboost"

    def __init__(self, model: Any, spec: ModelSpec) -> None:
        import xgboost as xgb

        self._xgb = xgb
        self.booster = model.get_booster() if hasattr(model, "get_booster") else model
        self.booster.set_param({"nthread": 1})
        self.spec = spec
        self.objective = json.loads(self.booster.save_config())["learner"]["objective"]["name"]
        self.has_proba = self.objective.startswith("binary:logistic") or self.objective == "multi:softprob"

    def predict(self, batch: Batch) -> Raw:
        x = _matrix(batch, self.spec, np.float32)
        out = self.booster.inplace_predict(x, validate_features=False)
        if self.spec.task == "regression":
            return Raw(values=np.asarray(out, dtype=np.float64).reshape(-1))
        if self.objective.startswith("binary:logistic"):
            p = np.asarray(out, dtype=np.float64).reshape(-1)
            return Raw(probabilities=np.column_stack([1.0 - p, p]))
        if self.objective == "multi:softprob":
            return Raw(probabilities=np.asarray(out, dtype=np.float64).reshape(batch.rows, -1))
        return Raw(labels=np.asarray(out).astype(np.int64).reshape(-1))


@dataclass(frozen=True)
class OnnxInputs:
    """How a Batch becomes ONNX feeds: one [N,1] input per feature, or one [N,F] matrix named `matrix`."""

    per_column: bool
    numeric_dtype: Any = np.float32
    matrix: str = "input"


class OnnxPredictor:
    backend = "onnxruntime"

    def __init__(self, onnx_bytes: bytes, plan: OnnxInputs, spec: ModelSpec, threads: int = 1) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
        self.plan = plan
        self.spec = spec
        self.onnx_bytes = onnx_bytes
        outs = [o.name for o in self.session.get_outputs()]
        if spec.task == "classification":
            prob = [n for n in outs if "prob" in n.lower()]
            self.has_proba = bool(prob)
            self._out = prob[0] if prob else outs[0]
        else:
            self.has_proba = False
            self._out = outs[0]
        self._outs = [self._out]
        self._string = {f.name for f in spec.features if f.kind == "string"}

    def feeds(self, batch: Batch) -> dict[str, npt.NDArray[Any]]:
        if not self.plan.per_column:
            return {self.plan.matrix: _matrix(batch, self.spec, self.plan.numeric_dtype)}
        feeds = {}
        dt = self.plan.numeric_dtype
        for name, col in batch.columns.items():
            if name in self._string:
                arr = col.copy()
                arr[arr == None] = MISSING_STRING  # noqa: E711 - elementwise None test
                feeds[name] = arr.reshape(-1, 1)
            else:
                feeds[name] = col.astype(dt).reshape(-1, 1)
        return feeds

    def predict(self, batch: Batch) -> Raw:
        out = self.session.run(self._outs, self.feeds(batch))[0]
        if self.spec.task == "regression":
            return Raw(values=np.asarray(out, dtype=np.float64).reshape(-1))
        if self.has_proba:
            return Raw(probabilities=np.asarray(out, dtype=np.float64))
        return Raw(labels=np.asarray(out).reshape(-1))


def _single_thread(model: Any) -> None:
    """One thread per request: the pod's CPUs are shared by concurrent requests, not by one."""
    est = model.steps[-1][1] if hasattr(model, "steps") else model
    params = est.get_params() if hasattr(est, "get_params") else {}
    if "n_jobs" in params:
        est.set_params(n_jobs=1)
    if hasattr(est, "get_booster"):
        est.get_booster().set_param({"nthread": 1})
