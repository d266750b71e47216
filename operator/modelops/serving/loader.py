"""Reading an MLflow model directory written by `modelops train` (or any sklearn / xgboost MLflow model)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelops.formats.artifacts import ENV_MODEL_SHA256, TAG_ARTIFACT_SHA256, tree_digest
from modelops.serving.schema import Feature, ModelSpec, Task, features_from_contract

log = logging.getLogger("modelops.serving")


@dataclass
class LoadedModel:
    spec: ModelSpec
    flavor: str  # "sklearn" | "xgboost"
    model: Any  # sklearn estimator/pipeline, xgboost Booster or XGBModel
    example_rows: list[dict[str, Any]]


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "MLmodel"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: --model-dir must be an MLflow model directory")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "flavors" not in data:
        raise ValueError(f"{path} has no flavors")
    return data


def signature_inputs(mlmodel: dict[str, Any]) -> list[dict[str, Any]] | None:
    sig = mlmodel.get("signature") or {}
    raw = sig.get("inputs")
    if not raw:
        return None
    parsed = json.loads(raw) if isinstance(raw, str) else raw
    return list(parsed)


def read_example(model_dir: Path, mlmodel: dict[str, Any], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of the saved input example, if any; used to seed the parity sample and warm-up."""
    rows = _read_example_rows(model_dir, mlmodel, names)
    # JSON written by pandas carries NaN for missing values; the server's inputs say null
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]


def _read_example_rows(model_dir: Path, mlmodel: dict[str, Any], names: tuple[str, ...]) -> list[dict[str, Any]]:
    info = mlmodel.get("saved_input_example_info") or {}
    path = model_dir / str(info.get("artifact_path", "input_example.json"))
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "columns" in data and "data" in data:
            cols = data["columns"]
            return [dict(zip(cols, row, strict=True)) for row in data["data"]]
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return list(data)
        if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
            keys = list(data)
            return [dict(zip(keys, vals, strict=True)) for vals in zip(*data.values(), strict=True)]
        if isinstance(data, list) and data and isinstance(data[0], list) and len(data[0]) == len(names):
            return [dict(zip(names, row, strict=True)) for row in data]
    except (ValueError, TypeError) as exc:
        log.warning("input example %s unreadable (%s); parity sample uses synthetic rows only", path, exc)
    return []


def _task_of(model: Any, flavor: str) -> Task:
    if flavor == "xgboost":
        objective = _xgb_objective(model)
        return "classification" if objective.startswith(("binary:", "multi:")) else "regression"
    return "classification" if hasattr(model, "classes_") else "regression"


def _xgb_objective(model: Any) -> str:
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    cfg = json.loads(booster.save_config())
    return str(cfg["learner"]["objective"]["name"])


def _classes_of(model: Any, flavor: str) -> tuple[Any, ...] | None:
    if hasattr(model, "classes_"):
        return tuple(c.item() if hasattr(c, "item") else c for c in model.classes_)
    if flavor == "xgboost":
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        cfg = json.loads(booster.save_config())
        n = int(cfg["learner"]["learner_model_param"].get("num_class", "0"))
        return tuple(range(max(n, 2)))
    return None


class ArtifactRefused(RuntimeError):
    """The model directory is not the one registered (digest mismatch), or is an unverified pickle."""


def verify(model_dir: Path, flavors: dict[str, Any], expected_sha256: str | None,
           allow_unverified_pickle: bool) -> bool:
    """Check the artifacts before anything is deserialised (issue 16, H3); True when the digest matched.

    - a digest given (MODELOPS_MODEL_SHA256, from the version tag the trainer wrote): the directory must
      have exactly that digest, whatever its flavor;
    - no digest: a flavor that unpickles (sklearn) is refused unless MODELOPS_ALLOW_UNVERIFIED_PICKLE is set.
    """
    if expected_sha256:
        actual = tree_digest(model_dir)
        if actual != expected_sha256.strip().lower():
            raise ArtifactRefused(
                f"refusing to load {model_dir}: its artifacts have sha256 {actual}, but the registered version "
                f"says {expected_sha256} ({TAG_ARTIFACT_SHA256}); the files changed after registration or the "
                "version points at other files")
        return True
    if "sklearn" in flavors and not allow_unverified_pickle:
        raise ArtifactRefused(
            f"refusing to unpickle {model_dir}: no artifact digest to verify it against (the version has no "
            f"{TAG_ARTIFACT_SHA256} tag, so the operator set no {ENV_MODEL_SHA256}); register it with "
            "`modelops train`, or set MODELOPS_ALLOW_UNVERIFIED_PICKLE=true on the predictor if you trust "
            "everyone who can write to the registry")
    return False


def load(model_dir: Path, name: str | None = None, expected_sha256: str | None = None,
         allow_unverified_pickle: bool = False) -> LoadedModel:
    mlmodel = read_mlmodel(model_dir)
    flavors = mlmodel["flavors"]
    verified = verify(model_dir, flavors, expected_sha256, allow_unverified_pickle)
    contract_path = model_dir / "modelops.json"
    contract: dict[str, Any] = json.loads(contract_path.read_text()) if contract_path.exists() else {}

    # MLflow refuses sklearn deserialisation without this flag: on only for verified (or explicitly trusted)
    # artifacts, off otherwise (issue 16, H3: it defaulted to on).
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true" if verified or allow_unverified_pickle else "false"
    if "sklearn" in flavors:
        import mlflow.sklearn

        flavor, model = "sklearn", mlflow.sklearn.load_model(str(model_dir))
    elif "xgboost" in flavors:
        import mlflow.xgboost

        flavor, model = "xgboost", mlflow.xgboost.load_model(str(model_dir))
    else:
        raise ValueError(f"unsupported MLflow flavors {sorted(flavors)}: need sklearn or xgboost")

    sig = signature_inputs(mlmodel)
    if contract.get("features") or sig:
        features = features_from_contract(contract, sig)
    else:  # a bare booster saved without a signature: its own feature names or f0..fN
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        fnames = booster.feature_names or [f"f{i}" for i in range(booster.num_features())]
        features = tuple(Feature(n, "number") for n in fnames)

    task: Task = contract.get("task") or _task_of(model, flavor)
    classes = contract.get("classes")
    if task == "classification" and not classes:
        classes = _classes_of(model, flavor)
    spec = ModelSpec(
        name=name or str(contract.get("modelName") or "model"),
        task=task,
        features=features,
        classes=tuple(classes) if classes else None,
        version=str(contract.get("version", "")),
        run_id=str(contract.get("runId") or mlmodel.get("run_id") or ""),
        family=str(contract.get("family") or type(_final_estimator(model)).__name__),
        target=str(contract.get("target", "")),
        extra={k: v for k, v in contract.items() if k in ("metric",)},
    )
    examples = read_example(model_dir, mlmodel, spec.feature_names)
    return LoadedModel(spec=spec, flavor=flavor, model=model, example_rows=examples)


def _final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model
