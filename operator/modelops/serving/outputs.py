"""PURE: model outputs -> V1 / V2 response bodies and the metadata that describes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelops.serving.schema import InputError, ModelSpec

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"


@dataclass
class Prediction:
    """`labels` for classifiers (class values), `probabilities` [N, C] float64, `values` [N] for regressors."""

    labels: npt.NDArray[Any] | None = None
    probabilities: npt.NDArray[np.float64] | None = None
    values: npt.NDArray[np.float64] | None = None

    @property
    def rows(self) -> int:
        for a in (self.labels, self.probabilities, self.values):
            if a is not None:
                return int(a.shape[0])
        return 0


def label_datatype(classes: tuple[Any, ...] | None) -> str:
    if classes and all(isinstance(c, str) for c in classes):
        return "BYTES"
    if classes and all(isinstance(c, bool) for c in classes):
        return "BOOL"
    return "INT64"


def class_array(classes: tuple[Any, ...]) -> npt.NDArray[Any]:
    """Classes as an array that fancy-indexes fast and serialises to the right JSON type."""
    if label_datatype(classes) == "INT64":
        return np.asarray([int(c) for c in classes], dtype=np.int64)
    if label_datatype(classes) == "BOOL":
        return np.asarray(classes, dtype=bool)
    return np.asarray(classes, dtype=object)


def labels_from_probabilities(proba: npt.NDArray[Any], classes: npt.NDArray[Any]) -> npt.NDArray[Any]:
    # argmax picks the first class on an exact tie, as scikit-learn's predict does.
    labels: npt.NDArray[Any] = classes[np.argmax(proba, axis=1)]
    return labels


def output_names(spec: ModelSpec, has_proba: bool) -> tuple[str, ...]:
    if spec.task == "classification":
        return (PREDICT, PREDICT_PROBA) if has_proba else (PREDICT,)
    return (PREDICT,)


def _json_labels(labels: npt.NDArray[Any] | None) -> Any:
    # orjson serialises numeric arrays natively but not object (string) arrays
    if labels is None:
        return None
    return labels.tolist() if labels.dtype == object else np.ascontiguousarray(labels)


def v1_body(pred: Prediction) -> dict[str, Any]:
    if pred.values is not None:
        return {"predictions": np.ascontiguousarray(pred.values)}
    out: dict[str, Any] = {"predictions": _json_labels(pred.labels)}
    if pred.probabilities is not None:
        out["probabilities"] = np.ascontiguousarray(pred.probabilities)
    return out


def _label_datatype_of(spec: ModelSpec) -> str:
    """label_datatype(spec.classes), once per spec (a frozen dataclass: kept in its __dict__, as
    functools.cached_property does)."""
    got: str | None = spec.__dict__.get("_label_datatype")
    if got is None:
        got = label_datatype(spec.classes)
        spec.__dict__["_label_datatype"] = got
    return got


def v2_outputs(pred: Prediction, spec: ModelSpec, requested: tuple[str, ...] | None) -> list[dict[str, Any]]:
    n = pred.rows
    labels, p = pred.labels, pred.probabilities
    available: dict[str, dict[str, Any]] = {}
    if labels is not None:
        available[PREDICT] = {"name": PREDICT, "datatype": _label_datatype_of(spec), "shape": [n],
                              "data": _json_labels(labels)}
    elif pred.values is not None:
        available[PREDICT] = {"name": PREDICT, "datatype": "FP64", "shape": [n], "data": pred.values}
    if p is not None:
        available[PREDICT_PROBA] = {"name": PREDICT_PROBA, "datatype": "FP64", "shape": [n, int(p.shape[1])],
                                    "data": np.ascontiguousarray(p).reshape(-1)}
    if requested is None:
        return list(available.values())
    out = []
    for name in requested:
        if name not in available:
            raise InputError(f"unknown output '{name[:80]}'; available: {sorted(available)}", field=name[:80])
        out.append(available[name])
    return out


def v2_body(pred: Prediction, spec: ModelSpec, model_name: str, request_id: str | None,
            requested: tuple[str, ...] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model_name": model_name, "model_version": spec.version,
                            "outputs": v2_outputs(pred, spec, requested)}
    if request_id is not None:
        body["id"] = request_id
    return body


_V2_INPUT_TYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}


def metadata_inputs(spec: ModelSpec) -> list[dict[str, Any]]:
    return [{"name": f.name, "datatype": _V2_INPUT_TYPES[f.kind], "shape": [-1]} for f in spec.features]


def metadata_outputs(spec: ModelSpec, has_proba: bool) -> list[dict[str, Any]]:
    if spec.task == "regression":
        return [{"name": PREDICT, "datatype": "FP64", "shape": [-1]}]
    out = [{"name": PREDICT, "datatype": label_datatype(spec.classes), "shape": [-1]}]
    if has_proba:
        out.append({"name": PREDICT_PROBA, "datatype": "FP64",
                    "shape": [-1, len(spec.classes) if spec.classes else -1]})
    return out
