import hashlib

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_wine

from modelops_pipelines.data import DatasetError, load_table, validate_and_prepare
from modelops_pipelines.generate import generate_churn
from modelops_pipelines.spec import DatasetSpec, TrainSpec

pytestmark = pytest.mark.unit


def _spec(**dataset) -> TrainSpec:
    ds = {"uri": "/unused", "target": "y", "task": "classification", **dataset}
    return TrainSpec.model_validate({"modelName": "m", "dataset": ds, "validation": {"minRows": 10}})


def _frame(n=100, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "c": rng.choice(["x", "y", "z"], n),
                         "y": rng.integers(0, 2, n)})


def test_csv_and_parquet_load_with_content_hash(tmp_path):
    frame = generate_churn(300, seed=1, missing_rate=0.05)
    csv, pq = tmp_path / "d.csv", tmp_path / "d.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(pq, index=False)
    a = load_table(DatasetSpec(uri=str(csv), target="churn", task="classification"))
    b = load_table(DatasetSpec(uri=f"file://{pq}", target="churn", task="classification"))
    assert a.format == "csv" and b.format == "parquet"
    assert a.sha256 == hashlib.sha256(csv.read_bytes()).hexdigest()
    assert len(a.frame) == len(b.frame) == 300
    assert a.frame.isna().equals(b.frame.isna())
    pd.testing.assert_frame_equal(a.frame.fillna(0), b.frame.fillna(0), check_dtype=False)


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist"),
    (b"", "empty"),
    (b"\x00\x01PAR1garbage", "not readable as parquet"),
])
def test_unreadable_files_fail_clearly(tmp_path, content, fragment):
    path = tmp_path / "d.parquet"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=fragment):
        load_table(DatasetSpec(uri=str(path), target="y", task="classification"))


def test_unknown_scheme_is_rejected():
    # the spec (like the CRD) rejects it first; the reader still refuses it if it gets that far
    with pytest.raises(ValidationError, match="uri"):
        DatasetSpec(uri="ftp://host/x.csv", target="y", task="classification")
    with pytest.raises(DatasetError, match="scheme 'ftp'"):
        load_table(DatasetSpec.model_construct(uri="ftp://host/x.csv", target="y", task="classification",
                                               format="auto", storage_options={}, s3_endpoint_url=None))


@pytest.mark.parametrize("mutate, spec_kw, fragment", [
    (lambda f: f.drop(columns="y"), {}, "target column 'y' is not in the dataset"),
    (lambda f: f.assign(y=1), {}, "is constant"),
    (lambda f: f.head(5), {}, "fewer than minRows 10"),
    (lambda f: f, {"features": ["a", "nope"]}, r"\['nope'\] are not in the dataset"),
    (lambda f: f, {"timeColumn": "when"}, "time column 'when'"),
    (lambda f: f.assign(a=np.nan), {}, "no values"),
    (lambda f: f.assign(a=np.where(np.arange(len(f)) % 4 == 0, 1.0, np.nan)), {}, "missing in 75.0%"),
    (lambda f: f.assign(c=[f"id{i}" for i in range(len(f))]), {"features": ["a", "c"]}, None),
    (lambda f: f.assign(y=np.r_[np.zeros(len(f) - 2), [1, 1]]), {}, "fewer than minClassRows 5"),
    (lambda f: f.assign(y=np.arange(len(f))), {}, "100 distinct values"),
    (lambda f: f.assign(d=pd.Timestamp("2024-01-01")), {}, "cannot be used as a model input"),
])
def test_validation_names_the_problem(mutate, spec_kw, fragment):
    spec = _spec(**spec_kw)
    if fragment is None:  # the ID-like column: lower maxCategories to trip it
        spec = TrainSpec.model_validate({**spec.model_dump(by_alias=True),
                                         "validation": {"minRows": 10, "maxCategories": 50}})
        fragment = "100 distinct values .*ID column"
    with pytest.raises(DatasetError, match=fragment):
        validate_and_prepare(mutate(_frame()), spec)


def test_regression_target_must_be_numeric():
    f = _frame().assign(y=["a"] * 50 + ["b"] * 50)
    with pytest.raises(DatasetError, match="not numeric"):
        validate_and_prepare(f, _spec(task="regression"))


def test_prepared_typing_and_report():
    frame = generate_churn(500, seed=2, missing_rate=0.1)
    frame.loc[:4, "churn"] = np.nan  # rows without a target are dropped and reported
    spec = TrainSpec.model_validate({"modelName": "m", "dataset": {
        "uri": "/u", "target": "churn", "task": "classification", "categoricalFeatures": ["dependent_count"]}})
    data = validate_and_prepare(frame, spec)
    assert data.report["rows_dropped_missing_target"] == 5 and len(data.X) == 495
    assert "gender" in data.categorical and "dependent_count" in data.categorical
    assert data.X["credit_limit"].dtype == np.float64
    assert data.X["education_level"].isna().any()  # missing stays missing (the pipeline imputes)
    assert data.classes == [0, 1] and data.y.dtype == np.int64
    assert data.report["features"]["credit_limit"]["missing_rate"] > 0.05


def test_string_class_labels_are_encoded_in_sorted_order():
    wine = load_wine(as_frame=True).frame
    wine["target"] = wine["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    data = validate_and_prepare(wine, _spec(target="target"))
    assert data.classes == ["barbera", "barolo", "grignolino"]
    assert (data.y[wine["target"] == "barbera"] == 0).all()
