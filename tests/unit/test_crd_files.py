"""Static checks of the CRD sources: every field documented and typed (so `kubectl explain` is useful)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

CRDS = sorted((Path(__file__).resolve().parents[2] / "manifests" / "crds").glob("*.yaml"))


def _fields(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, sub in (schema.get("properties") or {}).items():
        out.append((f"{path}.{name}", sub))
        out += _fields(sub, f"{path}.{name}")
    items = schema.get("items")
    if isinstance(items, dict):
        out += _fields(items, f"{path}[]")
    return out


@pytest.mark.parametrize("crd_file", CRDS, ids=[p.name for p in CRDS])
def test_every_field_is_typed_and_documented(crd_file: Path) -> None:
    crd = yaml.safe_load(crd_file.read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undocumented, untyped = [], []
    for path, sub in _fields(root, ""):
        if path in (".metadata",):
            continue
        assert isinstance(sub, dict), f"{path}: schema is {sub!r} (a YAML flow mapping split on a comma?)"
        if "description" not in sub:
            undocumented.append(path)
        if "type" not in sub and not sub.get("x-kubernetes-int-or-string"):
            untyped.append(path)
    assert not undocumented, f"fields without description: {undocumented}"
    assert not untyped, f"fields without type: {untyped}"
    for col in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
        assert set(col) <= {"name", "type", "jsonPath", "description", "priority", "format"}, col


def test_group_names_and_categories() -> None:
    kinds = {}
    for f in CRDS:
        crd = yaml.safe_load(f.read_text())
        assert crd["spec"]["group"] == "modelops.dev" and crd["spec"]["scope"] == "Namespaced"
        assert "modelops" in crd["spec"]["names"]["categories"]
        assert "rs" not in crd["spec"]["names"].get("shortNames", [])  # ReplicaSet's
        kinds[crd["spec"]["names"]["kind"]] = crd
    assert set(kinds) == {"ModelDeployment", "RetrainSchedule"}
