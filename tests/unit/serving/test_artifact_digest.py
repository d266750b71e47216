"""The artifact digest the trainer records and the model server verifies (issue 16, H3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops.formats.artifacts import tree_digest
from modelops.serving.loader import ArtifactRefused, verify

pytestmark = pytest.mark.unit


def model_dir(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {sklearn: {}}\n")
    (root / "model.pkl").write_bytes(b"\x80\x04pickle")
    (root / "sub" / "extra.json").write_text("{}")
    return root


def test_digest_covers_names_and_bytes(tmp_path: Path) -> None:
    d = model_dir(tmp_path / "m")
    first = tree_digest(d)
    assert first == tree_digest(d) and len(first) == 64
    (d / "model.pkl").write_bytes(b"\x80\x04evil")
    second = tree_digest(d)
    assert second != first
    (d / "model.pkl").rename(d / "model2.pkl")
    assert tree_digest(d) != second
    (d / "new").write_text("")
    (d / "model2.pkl").rename(d / "model.pkl")
    assert tree_digest(d) != second  # an added (even empty) file counts


def test_the_metadata_mlflow_adds_to_registry_downloads_is_not_part_of_the_digest(tmp_path: Path) -> None:
    """`models:/NAME/VERSION` downloads carry MLflow's `registered_model_meta` (name and version), a logged
    model's `models:/m-...` download carries one with nulls, and KServe's storage initializer has none: the
    trainer, `modelops serve models:/...` and the predictor must agree on one digest."""
    stored = tree_digest(model_dir(tmp_path / "stored"))
    by_version = model_dir(tmp_path / "by-version")
    (by_version / "registered_model_meta").write_text("model_name: churn\nmodel_version: '2'\n")
    by_logged_model = model_dir(tmp_path / "by-logged-model")
    (by_logged_model / "registered_model_meta").write_text("model_name: null\nmodel_version: null\n")
    assert tree_digest(by_version) == tree_digest(by_logged_model) == stored
    nested = model_dir(tmp_path / "nested")
    (nested / "sub" / "registered_model_meta").write_text("x")
    assert tree_digest(nested) != stored  # only MLflow's file at the root is skipped


def test_symlinks_are_refused(tmp_path: Path) -> None:
    d = model_dir(tmp_path / "m")
    (d / "link").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="symbolic links"):
        tree_digest(d)


def test_verify_refuses_changed_artifacts_and_unverified_pickles(tmp_path: Path) -> None:
    d = model_dir(tmp_path / "m")
    digest = tree_digest(d)
    flavors = {"sklearn": {}}
    assert verify(d, flavors, digest, allow_unverified_pickle=False) is True
    (d / "model.pkl").write_bytes(b"\x80\x04evil")
    with pytest.raises(ArtifactRefused, match="changed after registration"):
        verify(d, flavors, digest, allow_unverified_pickle=False)
    with pytest.raises(ArtifactRefused, match="refusing to unpickle"):
        verify(d, flavors, None, allow_unverified_pickle=False)  # the default: no digest, no pickle
    assert verify(d, flavors, None, allow_unverified_pickle=True) is False
    assert verify(d, {"xgboost": {}}, None, allow_unverified_pickle=False) is False  # no pickle involved
