"""Load-time compilation of the model to ONNX Runtime, with a parity check against the original.

The fast path is used only when the converted graph reproduces the original on a sample that includes the
awkward cases (missing values, unseen categories, values on tree split thresholds) within `tolerance`:
absolute for probabilities, relative to max(1, |y|) for regression values (float32 trees cannot do better
on large targets). Otherwise the original model serves and the reason is logged and reported in metadata.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelops.serving.loader import LoadedModel
from modelops.serving.predictors import MISSING_STRING, OnnxInputs, OnnxPredictor, Raw
from modelops.serving.schema import Batch, Feature, Limits, ModelSpec, column

log = logging.getLogger("modelops.serving")

TOLERANCE = 1e-5  # the parity bar: max abs difference of probabilities
_OPSET = {"": 15, "ai.onnx.ml": 3}


class Unsupported(Exception):
    """The model cannot be converted; the message says why."""


@dataclass
class FastPathResult:
    predictor: OnnxPredictor | None
    reason: str  # "ok" or why the original serves
    max_diff: float | None = None
    sample_rows: int = 0


# ---------------------------------------------------------------------------------------------- conversion

def _register_xgboost() -> None:
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    update_registered_converter(XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
                                convert_xgboost, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    update_registered_converter(XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes,
                                convert_xgboost)


def _walk(obj: Any) -> list[Any]:
    """Every estimator inside pipelines / column transformers (fitted ones)."""
    out = [obj]
    for _, step in getattr(obj, "steps", []) or []:
        out.extend(_walk(step))
    for item in getattr(obj, "transformers_", []) or []:
        if not isinstance(item[1], str):
            out.extend(_walk(item[1]))
    return out


def _string_imputers_to_sentinel(model: Any) -> Any:
    """skl2onnx converts string SimpleImputers only when the missing marker is a string: use ours."""
    from sklearn.impute import SimpleImputer

    model = copy.deepcopy(model)
    for est in _walk(model):
        if isinstance(est, SimpleImputer) and getattr(est, "statistics_", None) is not None \
                and est.statistics_.dtype == object:
            mv = est.missing_values
            if mv is None or (isinstance(mv, float) and np.isnan(mv)):
                est.missing_values = MISSING_STRING
    return model


def convert(loaded: LoadedModel, numeric: str = "float") -> tuple[bytes, OnnxInputs]:
    spec = loaded.spec
    model = loaded.model
    if numeric not in ("float", "double"):
        raise ValueError(numeric)
    try:
        if loaded.flavor == "xgboost":
            from onnxmltools.convert import convert_xgboost
            from onnxmltools.convert.common.data_types import FloatTensorType as OFloat

            if numeric != "float":
                raise Unsupported("XGBoost graphs are float32 only")
            plan = OnnxInputs(per_column=False, numeric_dtype=np.float32)
            onx = convert_xgboost(model, initial_types=[(plan.matrix, OFloat([None, len(spec.features)]))],
                                  target_opset=_OPSET[""])
            return onx.SerializeToString(), plan

        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

        _register_xgboost()
        num_type = FloatTensorType if numeric == "float" else DoubleTensorType
        np_type = np.float32 if numeric == "float" else np.float64
        model = _string_imputers_to_sentinel(model)
        final = model.steps[-1][1] if hasattr(model, "steps") else model
        options = {id(final): {"zipmap": False}} if spec.task == "classification" else None
        per_column = hasattr(model, "steps") and hasattr(model, "feature_names_in_")
        if per_column:
            initial = [(f.name, StringTensorType([None, 1]) if f.kind == "string" else num_type([None, 1]))
                       for f in spec.features]
            plan = OnnxInputs(per_column=True, numeric_dtype=np_type)
        else:
            if not spec.all_numeric:
                raise Unsupported("string inputs need a Pipeline that starts with named columns")
            plan = OnnxInputs(per_column=False, numeric_dtype=np_type)
            initial = [(plan.matrix, num_type([None, len(spec.features)]))]
        onx = convert_sklearn(model, initial_types=initial, options=options, target_opset=_OPSET)
        return onx.SerializeToString(), plan
    except Unsupported:
        raise
    except Exception as exc:  # converters raise anything from NotImplementedError to RuntimeError
        raise Unsupported(f"{type(exc).__name__}: {str(exc)[:300]}") from exc


# ---------------------------------------------------------------------------------------------- sample

def known_categories(model: Any) -> dict[str, list[Any]]:
    """Categories learnt by OneHot/Ordinal encoders, by input column (through ColumnTransformers)."""
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    out: dict[str, list[Any]] = {}
    for est in _walk(model):
        for _, trans, cols in getattr(est, "transformers_", []) or []:
            if isinstance(trans, str) or not isinstance(cols, list | tuple) or not all(
                    isinstance(c, str) for c in cols):
                continue
            for sub in _walk(trans):
                if isinstance(sub, OneHotEncoder | OrdinalEncoder) and len(sub.categories_) == len(cols):
                    for c, cats in zip(cols, sub.categories_, strict=True):
                        out[c] = [x for x in cats.tolist() if isinstance(x, str)]
    return out


def xgb_thresholds(loaded: LoadedModel) -> dict[int, np.ndarray]:
    """Split thresholds per feature index of an XGBoost model (values the fast path must get exactly right)."""
    model = loaded.model
    if hasattr(model, "steps"):
        return {}
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    if not hasattr(booster, "get_dump"):
        return {}
    found: dict[int, list[float]] = {}
    names = booster.feature_names
    index = {n: i for i, n in enumerate(names)} if names else {}
    for tree in booster.get_dump(dump_format="json"):
        stack = [json.loads(tree)]
        while stack:
            node = stack.pop()
            if "split" in node:
                key = node["split"]
                i = index.get(key) if index else int(str(key).lstrip("f"))
                if i is not None:
                    found.setdefault(i, []).append(float(node["split_condition"]))
                stack.extend(node.get("children", []))
    return {i: np.unique(np.asarray(v, dtype=np.float32)) for i, v in found.items()}


def parity_sample(loaded: LoadedModel, rows: int = 512, seed: int = 0) -> Batch:
    """Rows from the input example plus synthetic ones: scaled noise, integers, thresholds, NaN, unseen."""
    spec = loaded.spec
    rng = np.random.default_rng(seed)
    cats = known_categories(loaded.model) if loaded.flavor == "sklearn" else {}
    thresholds = xgb_thresholds(loaded) if loaded.flavor == "xgboost" else {}
    ex = loaded.example_rows
    cols: dict[str, Any] = {}
    for j, f in enumerate(spec.features):
        base = [r.get(f.name) for r in ex if r.get(f.name) is not None]
        if f.kind == "string":
            pool = list(cats.get(f.name, [])) + [str(b) for b in base]
            if not pool:
                pool = ["a", "b"]
            if f.categories is None:
                pool.append("__unseen_category__")
            vals: list[Any] = [pool[k] for k in rng.integers(0, len(pool), rows)]
        else:
            center = float(np.median(np.asarray(base, dtype=float))) if base else 0.0
            scale = float(np.std(np.asarray(base, dtype=float))) if len(base) > 1 else 1.0
            scale = scale or 1.0
            v = center + scale * rng.normal(size=rows) * rng.choice([0.1, 1.0, 3.0, 30.0], rows)
            th = thresholds.get(j)
            if th is not None and th.size:
                pick = rng.random(rows) < 0.5
                chosen = th[rng.integers(0, th.size, rows)].astype(np.float64)
                nudged = np.where(rng.random(rows) < 0.5, chosen,
                                  np.nextafter(chosen.astype(np.float32), np.float32(np.inf)).astype(np.float64))
                v = np.where(pick, nudged, v)
            if f.kind == "integer":
                v = np.round(v)
            if f.kind == "boolean":
                v = (rng.random(rows) < 0.5).astype(np.float64)
            vals = v.tolist()
        if f.nullable:
            vals = [None if rng.random() < 0.1 else x for x in vals]
        cols[f.name] = vals
    # the example rows themselves go first, verbatim
    for i, r in enumerate(ex[:rows]):
        for f in spec.features:
            if f.name in r:
                cols[f.name][i] = r[f.name]
    limits = Limits(max_rows=rows)
    return Batch({f.name: column(f, cols[f.name], limits) for f in spec.features}, rows)


# ---------------------------------------------------------------------------------------------- parity

def max_difference(spec: ModelSpec, ref: Raw, got: Raw) -> float:
    if spec.task == "regression":
        assert ref.values is not None and got.values is not None
        denom = np.maximum(1.0, np.abs(ref.values))
        return float(np.max(np.abs(ref.values - got.values) / denom))
    if ref.probabilities is not None:
        if got.probabilities is None or got.probabilities.shape != ref.probabilities.shape:
            return float("inf")
        return float(np.max(np.abs(ref.probabilities - got.probabilities)))
    assert ref.labels is not None and got.labels is not None
    return 0.0 if np.array_equal(ref.labels.astype(str), got.labels.astype(str)) else float("inf")


def build(loaded: LoadedModel, original: Any, sample: Batch, tolerance: float = TOLERANCE,
          threads: int = 1) -> FastPathResult:
    """Try float32 then float64 graphs; the first that matches the original on `sample` wins."""
    spec = loaded.spec
    sample = accepted_rows(original, sample)
    if sample.rows == 0:
        reason = "the original model rejects every row of the parity sample"
        log.warning("fast path not used, serving the original model: %s", reason)
        return FastPathResult(None, reason)
    ref = original.predict(sample)
    reasons = []
    for numeric in ("float", "double"):
        try:
            onnx_bytes, plan = convert(loaded, numeric)
            pred = OnnxPredictor(onnx_bytes, plan, spec, threads=threads)
            got = pred.predict(sample)
        except Unsupported as exc:
            reasons.append(f"{numeric}: unsupported ({exc})")
            if numeric == "float":
                break  # the converter refused the model itself, a wider dtype will not change that
            continue
        except Exception as exc:  # an ORT load/run failure is a conversion failure, never fatal
            reasons.append(f"{numeric}: onnxruntime failed ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        diff = max_difference(spec, ref, got)
        if diff <= tolerance:
            log.info("fast path: onnxruntime (%s inputs), parity max diff %.3g on %d rows", numeric, diff,
                     sample.rows)
            return FastPathResult(pred, "ok", diff, sample.rows)
        reasons.append(f"{numeric}: parity max diff {diff:.3g} > {tolerance:g}")
    reason = "; ".join(reasons)
    log.warning("fast path not used, serving the original model: %s", reason)
    return FastPathResult(None, reason, None, sample.rows)


def take(batch: Batch, index: Any) -> Batch:
    cols = {k: v[index] for k, v in batch.columns.items()}
    return Batch(cols, len(next(iter(cols.values()))))


def accepted_rows(original: Any, batch: Batch) -> Batch:
    """The rows the original model predicts without raising (e.g. a log transform fails below -1)."""
    try:
        original.predict(batch)
        return batch
    except Exception:
        pass
    keep = []
    for i in range(batch.rows):
        try:
            raw = original.predict(take(batch, slice(i, i + 1)))
            arr = raw.probabilities if raw.probabilities is not None else raw.values
            if arr is None or np.isfinite(arr).all():
                keep.append(i)
        except Exception:
            continue
    return take(batch, np.asarray(keep, dtype=np.int64))


def probe_features(loaded: LoadedModel, original: Any) -> ModelSpec:
    """Learn from the original model which features may be missing and whether unseen categories pass.

    A feature the model cannot handle as missing (no imputer, linear estimator) is marked not nullable, so
    that a null there is a 422 naming it instead of an exception inside the model.
    """
    spec = loaded.spec
    if loaded.flavor == "xgboost":
        return spec  # XGBoost routes NaN itself
    cats = known_categories(loaded.model)
    base: dict[str, Any] = {}
    ex = loaded.example_rows[0] if loaded.example_rows else {}
    for f in spec.features:
        v = ex.get(f.name)
        if v is None:
            v = (cats.get(f.name) or ["a"])[0] if f.kind == "string" else 0.0
        base[f.name] = v

    def ok(row: dict[str, Any], features: tuple[Feature, ...]) -> bool:
        limits = Limits(max_rows=1)
        try:
            batch = Batch({f.name: column(f, [row[f.name]], limits) for f in features}, 1)
            raw = original.predict(batch)
            arr = raw.probabilities if raw.probabilities is not None else raw.values
            return arr is None or bool(np.isfinite(arr).all())
        except Exception:
            return False

    if not ok(base, spec.features):
        log.warning("probe: the model rejects its own example row; no input probing")
        return spec
    out = []
    for f in spec.features:
        nullable = ok({**base, f.name: None}, spec.features)
        categories = None
        if f.kind == "string" and not ok({**base, f.name: "__unseen_category__"}, spec.features):
            known = cats.get(f.name)
            if known:
                categories = tuple(known)
        out.append(Feature(f.name, f.kind, nullable=nullable, categories=categories))
    return spec.with_features(out)
