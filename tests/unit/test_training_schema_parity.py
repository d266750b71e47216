"""The CRD's `spec.training` schema and the trainer's `TrainSpec` describe the same thing, field by field.

The operator hands `spec.training` to `modelops train` verbatim (a ConfigMap), after the API server has
applied the CRD's defaults and validation. So any difference is a bug a user meets: a field the trainer
knows but the API server prunes, a default that differs between the two (the CRD's wins), or a value the
API server accepts and the trainer then rejects in a failed Job. This test compares names (via aliases),
types, enums, defaults, bounds, lengths, patterns, item constraints and required fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from modelops_pipelines.spec import TrainSpec

pytestmark = pytest.mark.unit

CRD = Path(__file__).resolve().parents[2] / "manifests" / "crds" / "modelops.dev_retrainschedules.yaml"


def crd_training() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]["training"]  # type: ignore[no-any-return]


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the schema without $ref and without the `null` branch of an Optional, whether null is allowed)."""
    if "$ref" in node:
        node = {**defs[node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    nullable = False
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        nullable = len(branches) < len(node["anyOf"])
        assert len(branches) == 1, f"unsupported union {node['anyOf']}"
        inner, _ = _resolve(branches[0], defs)
        node = {**inner, **{k: v for k, v in node.items() if k != "anyOf"}}
    return node, nullable


def _bounds(node: dict[str, Any], openapi: bool) -> dict[str, Any]:
    """Numeric bounds as (value, exclusive); OpenAPI v3.0 (CRD) and JSON Schema 2020-12 (pydantic) differ."""
    out: dict[str, Any] = {}
    if openapi:
        if "minimum" in node:
            out["min"] = (float(node["minimum"]), bool(node.get("exclusiveMinimum", False)))
        if "maximum" in node:
            out["max"] = (float(node["maximum"]), bool(node.get("exclusiveMaximum", False)))
    else:
        if "minimum" in node:
            out["min"] = (float(node["minimum"]), False)
        if "exclusiveMinimum" in node:
            out["min"] = (float(node["exclusiveMinimum"]), True)
        if "maximum" in node:
            out["max"] = (float(node["maximum"]), False)
        if "exclusiveMaximum" in node:
            out["max"] = (float(node["exclusiveMaximum"]), True)
    return out


_SCALAR_KEYS = ("minLength", "maxLength", "pattern", "minItems", "maxItems")


def _leaf(node: dict[str, Any], openapi: bool, defs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": node.get("type")}
    if "enum" in node:
        out["enum"] = sorted(node["enum"])
    out.update(_bounds(node, openapi))
    for key in _SCALAR_KEYS:
        if key in node:
            out[key] = node[key]
    if node.get("type") == "array":
        items, _ = _resolve(node["items"], defs) if not openapi else (node["items"], False)
        out["items"] = _leaf(items, openapi, defs)
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        out["values"] = _leaf(node["additionalProperties"], openapi, defs)
    return out


def flatten_crd(node: dict[str, Any], path: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    required = set(node.get("required") or [])
    for name, sub in (node.get("properties") or {}).items():
        p = f"{path}.{name}" if path else name
        if sub.get("type") == "object" and "properties" in sub:
            out[p] = {"type": "object", "required": name in required, "defaulted": "default" in sub}
            out.update(flatten_crd(sub, p))
            continue
        leaf = _leaf(sub, True, {})
        leaf["required"] = name in required
        leaf["nullable"] = bool(sub.get("nullable"))
        if "default" in sub:
            leaf["default"] = sub["default"]
        out[p] = leaf
    return out


def flatten_model(model: type[BaseModel], schema: dict[str, Any], defs: dict[str, Any],
                  path: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    required = set(schema.get("required") or [])
    fields: dict[str, FieldInfo] = model.model_fields
    by_alias = {(f.alias or n): (n, f) for n, f in fields.items()}
    for alias, sub in (schema.get("properties") or {}).items():
        p = f"{path}.{alias}" if path else alias
        _, info = by_alias[alias]
        node, nullable = _resolve(sub, defs)
        sub_model = info.annotation if isinstance(info.annotation, type) and issubclass(info.annotation,
                                                                                         BaseModel) else None
        if sub_model is not None:
            out[p] = {"type": "object", "required": alias in required, "defaulted": alias not in required}
            out.update(flatten_model(sub_model, node, defs, p))
            continue
        leaf = _leaf(node, False, defs)
        leaf["required"] = alias in required
        # null is only meaningful to a user where it differs from leaving the field out (a non-null default)
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        if default == {}:
            default = None  # an empty map is the same as leaving the field out
        leaf["nullable"] = nullable and default is not None
        if default is not None:
            leaf["default"] = default
        out[p] = leaf
    return out


def _both() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    schema = TrainSpec.model_json_schema(by_alias=True)
    return flatten_crd(crd_training()), flatten_model(TrainSpec, schema, schema.get("$defs", {}))


def _normalise(leaf: dict[str, Any]) -> dict[str, Any]:
    # 600 and 600.0 are the same default; integer-valued bounds compare as floats already
    return {k: (float(v) if isinstance(v, int) and not isinstance(v, bool) and k == "default" else v)
            for k, v in leaf.items()}


def test_same_field_names() -> None:
    crd, model = _both()
    assert sorted(set(model) - set(crd)) == [], "trainer fields the API server would prune"
    assert sorted(set(crd) - set(model)) == [], "CRD fields the trainer rejects (extra='forbid')"


@pytest.mark.parametrize("path", sorted(_both()[1]))
def test_field_agrees(path: str) -> None:
    crd, model = _both()
    assert path in crd, f"{path} is missing from the CRD"
    assert _normalise(crd[path]) == _normalise(model[path])


def test_crd_defaults_validate_in_the_trainer() -> None:
    """What the API server stores for a minimal object (CRD defaults applied) is a valid TrainSpec with the
    trainer's own defaults."""
    crd = flatten_crd(crd_training())
    doc: dict[str, Any] = {"modelName": "churn", "dataset": {"uri": "/data/t.csv", "target": "y",
                                                             "task": "classification"}}
    for path, leaf in crd.items():
        if "default" in leaf:
            *parents, last = path.split(".")
            node = doc
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = leaf["default"]
    assert TrainSpec.model_validate(doc) == TrainSpec.model_validate(
        {"modelName": "churn", "dataset": doc["dataset"] | {"format": "auto", "storageOptions": {}}})
