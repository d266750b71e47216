"""Out-of-core training: the decision, the streamed split and sample, and the streamed refit."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from modelops_pipelines import outofcore
from modelops_pipelines.data import DatasetError, validate_and_prepare
from modelops_pipelines.generate import generate_churn
from modelops_pipelines.spec import TrainSpec

pytestmark = pytest.mark.unit


def _spec(path, **dataset):
    return TrainSpec.model_validate({"modelName": "m", "dataset": {"uri": str(path), "target": "churn",
                                                                   "task": "classification", **dataset},
                                     "search": {"families": ["xgboost"]}})


def _table(tmp_path, rows=3000, fmt="csv", seed=0):
    frame = generate_churn(rows, seed=seed, missing_rate=0.05)
    path = tmp_path / f"t.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path, frame


def test_row_hash_does_not_depend_on_the_chunking_and_is_uniform():
    whole = outofcore.uniform(np.arange(100_000), 5)
    parts = np.concatenate([outofcore.uniform(np.arange(a, a + 7_000), 5) for a in range(0, 100_000, 7_000)])
    np.testing.assert_array_equal(whole, parts[:100_000])
    assert ((whole >= 0) & (whole < 1)).all() and abs(whole.mean() - 0.5) < 0.01
    assert abs((whole < 0.2).mean() - 0.2) < 0.01
    assert not np.array_equal(whole, outofcore.uniform(np.arange(100_000), 6))  # the seed matters


def test_plan_streams_only_what_would_not_fit(tmp_path):
    path, _ = _table(tmp_path, rows=500)
    spec = _spec(path).dataset
    size = path.stat().st_size
    assert outofcore.plan(spec, memory_budget=size * 100, env={}).stream is False
    small = outofcore.plan(spec, memory_budget=size, env={})
    assert small.stream is True and "memory limit" in small.reason
    assert outofcore.plan(spec, memory_budget=1, env={outofcore.OUT_OF_CORE_ENV: "never"}).stream is False
    assert outofcore.plan(spec, memory_budget=size * 100, env={outofcore.OUT_OF_CORE_ENV: "always"}).stream
    with pytest.raises(ValueError, match="MODELOPS_OUT_OF_CORE"):
        outofcore.plan(spec, memory_budget=1, env={outofcore.OUT_OF_CORE_ENV: "sometimes"})
    http = _spec("http://example.invalid/t.csv").dataset
    assert outofcore.plan(http, memory_budget=1, env={}).stream is False  # size unknown: the in-memory path
    with pytest.raises(DatasetError, match="file path or an s3"):
        outofcore.plan(http, memory_budget=1, env={outofcore.OUT_OF_CORE_ENV: "always"})
    with pytest.raises(DatasetError, match="does not exist"):
        outofcore.plan(_spec(tmp_path / "nope.csv").dataset, memory_budget=1, env={})


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_scan_hashes_splits_and_samples_every_row_in_chunks(tmp_path, fmt):
    path, frame = _table(tmp_path, rows=3000, fmt=fmt)
    frame.loc[[5, 17, 2500], "churn"] = np.nan  # rows without a target are dropped and counted
    frame.to_parquet(path, index=False) if fmt == "parquet" else frame.to_csv(path, index=False)
    spec = _spec(path)
    source = outofcore.plan(spec.dataset, env={outofcore.OUT_OF_CORE_ENV: "always"}).source
    scanned = outofcore.scan(spec, source, search_rows=800, test_rows=300, chunk_rows=450)
    assert scanned.table.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert scanned.rows_total == 3000
    expected_test = outofcore.uniform(np.arange(3000), spec.split.seed) < spec.split.test_fraction
    has_target = frame["churn"].notna().to_numpy()
    assert scanned.rows_train == int((~expected_test & has_target).sum())
    report = scanned.data.report
    assert report["rows_total"] == 3000 and report["rows_dropped_missing_target"] == 3
    n_test, n_search = int(scanned.test_mask.sum()), int((~scanned.test_mask).sum())
    assert 200 < n_test < 400 and 650 < n_search < 950  # about the asked sizes, from every chunk
    assert report["out_of_core"]["test_sample_rows"] == n_test
    assert sum(int(v) for v in report["class_counts"].values()) == 2997  # full-table counts, not the sample's
    assert scanned.data.categorical and scanned.data.X[scanned.data.numeric].dtypes.eq("float64").all()


def test_prepare_chunk_types_rows_as_validation_does(tmp_path):
    frame = generate_churn(400, seed=2, missing_rate=0.1)
    spec = _spec(tmp_path / "x.csv")
    data = validate_and_prepare(frame, spec)
    X, y = outofcore.prepare_chunk(frame, data, "churn")
    pd.testing.assert_frame_equal(X.reset_index(drop=True), data.X.reset_index(drop=True))
    np.testing.assert_array_equal(y, data.y.to_numpy().astype(np.float32))
    odd = frame.head(3).copy()
    odd["churn"] = [0, 1, 7]
    with pytest.raises(DatasetError, match="class 7"):
        outofcore.prepare_chunk(odd, data, "churn")


def test_scan_rejects_what_it_cannot_stream_with_a_clear_message(tmp_path, monkeypatch):
    path, frame = _table(tmp_path, rows=2000)
    with pytest.raises(DatasetError, match="timeColumn"):
        spec = _spec(path, timeColumn="months_on_book")
        outofcore.scan(spec, outofcore.plan(spec.dataset, env={outofcore.OUT_OF_CORE_ENV: "always"}).source)
    rare = frame.copy()
    rare["churn"] = rare["churn"].astype(object)
    rare.loc[1999, "churn"] = "x"  # one row of a class the sample cannot contain
    rare.to_csv(path, index=False)
    spec = _spec(path)
    with pytest.raises(DatasetError, match="too rare"):
        outofcore.scan(spec, outofcore.plan(spec.dataset, env={outofcore.OUT_OF_CORE_ENV: "always"}).source,
                       search_rows=300, test_rows=100, chunk_rows=500)
    broken = frame.copy()
    broken["credit_limit"] = broken["credit_limit"].astype(object)
    broken.loc[1900, "credit_limit"] = "not a number"  # a type change after CSV's first block
    broken.to_csv(path, index=False)
    monkeypatch.setattr(outofcore, "CSV_BLOCK_BYTES", 64 << 10)
    with pytest.raises(DatasetError, match="after row"):
        outofcore.scan(spec, outofcore.plan(spec.dataset, env={outofcore.OUT_OF_CORE_ENV: "always"}).source,
                       chunk_rows=500)
    with pytest.raises(DatasetError, match="add xgboost"):
        outofcore.require_xgboost(TrainSpec.model_validate({
            "modelName": "m", "dataset": {"uri": str(path), "target": "churn", "task": "classification"},
            "search": {"families": ["linear"]}}))


@pytest.mark.parametrize("external", [False, True])
def test_streamed_refit_trains_on_every_training_row_like_the_in_memory_fit(tmp_path, external):
    from modelops_pipelines import families as fam

    path, _frame = _table(tmp_path, rows=4000, fmt="parquet", seed=4)
    spec = _spec(path)
    source = outofcore.plan(spec.dataset, env={outofcore.OUT_OF_CORE_ENV: "always"}).source
    # the sample holds every row here, so the streamed fit and an in-memory fit see the same training rows
    scanned = outofcore.scan(spec, source, search_rows=10**6, test_rows=10**6, chunk_rows=700)
    lines = []
    params = {"n_estimators": 30, "max_depth": 4, "learning_rate": 0.2}
    pipe = outofcore.refit_xgboost(scanned, spec, params, n_jobs=1, memory_budget=1 if external else 10**12,
                                   progress=lines.append)
    assert ("external-memory" in lines[0]) is external and f"streaming {scanned.rows_train} training rows" in lines[0]
    data = scanned.data
    train = ~scanned.test_mask
    ref = fam.build_pipeline("xgboost", "classification", params, numeric=data.numeric, categorical=data.categorical,
                             n_classes=2, n_jobs=1, seed=spec.search.seed)
    ref.fit(data.X.loc[train], data.y.to_numpy()[train])
    X_test = data.X.loc[scanned.test_mask]
    ours, theirs = pipe.predict_proba(X_test)[:, 1], ref.predict_proba(X_test)[:, 1]
    from sklearn.metrics import roc_auc_score

    y_test = data.y.to_numpy()[scanned.test_mask]
    assert abs(roc_auc_score(y_test, ours) - roc_auc_score(y_test, theirs)) < 0.01
    assert pipe.predict(X_test.head(5)).shape == (5,)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_chunk_encoder_equals_the_fitted_preprocessor_on_the_typed_chunk(tmp_path, fmt):
    """The Arrow-native encoding of a raw chunk is, cell for cell, what the saved pipeline's preprocessor makes
    of the chunk typed as validation types it, including missing values, a category absent from the fit,
    an integer column forced categorical and rows without a target."""
    import pyarrow as pa

    from modelops_pipelines import families as fam

    frame = generate_churn(3000, seed=7, missing_rate=0.08)
    frame.loc[[3, 40, 41], "churn"] = np.nan
    frame.loc[[10, 11], "card_category"] = "Unseen"  # not in the fitted categories
    path = tmp_path / f"t.{fmt}"
    frame.to_parquet(path, index=False) if fmt == "parquet" else frame.to_csv(path, index=False)
    spec = _spec(path, categoricalFeatures=["dependent_count"])
    source = outofcore.plan(spec.dataset, env={outofcore.OUT_OF_CORE_ENV: "always"}).source
    scanned = outofcore.scan(spec, source, search_rows=900, test_rows=300, chunk_rows=700)
    data = scanned.data
    assert "dependent_count" in data.categorical
    pre = fam.build_preprocessor("tree", data.numeric, data.categorical)
    pre.fit(data.X.loc[~scanned.test_mask & ~data.X["card_category"].eq("Unseen").to_numpy()])
    encoder = outofcore.ChunkEncoder(pre, data, "churn")
    seen = chunks = 0
    for start, batch in outofcore.batches(source, 700):
        chunks += 1
        rows = outofcore.uniform(np.arange(start, start + batch.num_rows), 3) < 0.6  # any row selection
        ours, y = encoder.encode(batch, rows)
        raw = batch.to_pandas()
        keep = rows & raw["churn"].notna().to_numpy()
        X, y_ref = outofcore.prepare_chunk(raw.loc[rows], data, "churn")
        expected = np.asarray(pre.transform(X), dtype=np.float32)
        np.testing.assert_array_equal(ours, expected)  # NaN in the same cells
        np.testing.assert_array_equal(y, y_ref)
        assert len(y) == int(keep.sum())
        seen += len(y)
    assert encoder.fast == chunks and encoder.slow == 0 and 1500 < seen < 2100
    assert chunks == (5 if fmt == "parquet" else 1)  # a CSV block holds 16 MiB
    # a numeric column stored as text takes the DataFrame path and still agrees
    odd = pa.RecordBatch.from_pandas(frame.head(500).astype({"credit_limit": str}), preserve_index=False)
    rows = np.ones(500, dtype=bool)
    ours, y = encoder.encode(odd, rows)
    X, y_ref = outofcore.prepare_chunk(frame.head(500).astype({"credit_limit": str}), data, "churn")
    np.testing.assert_array_equal(ours, np.asarray(pre.transform(X), dtype=np.float32))
    assert encoder.slow == 1
    with pytest.raises(DatasetError, match="columns changed"):
        encoder.encode(odd.drop_columns(["gender"]), rows)
    bad = frame.head(20).copy()
    bad["churn"] = bad["churn"].fillna(0).astype(int).replace({1: 9})
    with pytest.raises(DatasetError, match="class 9"):
        encoder.encode(pa.RecordBatch.from_pandas(bad, preserve_index=False), np.ones(20, dtype=bool))


def test_parquet_batches_walk_every_row_group_in_order_with_only_the_asked_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 10_000
    table = pa.table({"i": np.arange(n), "a": np.arange(n) * 0.5, "s": [f"k{v % 7}" for v in range(n)]})
    path = tmp_path / "groups.parquet"
    pq.write_table(table, path, row_group_size=1_300)  # 8 groups, the last one short
    spec = TrainSpec.model_validate({"modelName": "m", "dataset": {"uri": str(path), "target": "a",
                                                                   "task": "regression"}})
    source = outofcore.plan(spec.dataset, env={outofcore.OUT_OF_CORE_ENV: "always"}).source
    seen = []
    for start, batch in outofcore.batches(source, 500, columns=["i", "s"]):
        assert batch.schema.names == ["i", "s"] and batch.num_rows <= 500
        np.testing.assert_array_equal(batch.column(0).to_numpy(), np.arange(start, start + batch.num_rows))
        seen.append(batch.num_rows)
    assert sum(seen) == n and len(seen) == 7 * 3 + 2  # 500 + 500 + 300 per 1,300-row group, then 900
    frames = list(outofcore.chunks(source, 4_000))
    assert [s for s, _ in frames] == [0, 1_300, 2_600, 3_900, 5_200, 6_500, 7_800, 9_100]
    pd.testing.assert_frame_equal(pd.concat([f for _, f in frames], ignore_index=True), table.to_pandas())


def test_plan_streams_a_million_rows_under_two_gib_and_keeps_the_search_benchmark_table_in_memory(tmp_path):
    """The estimates are measured (bench/train_large.py): 1,000,000 x 31 cells in memory peaked at 1.8 GB, so under
    a 2 GiB limit that table streams; the 20,000-row churn table of bench/train_search.py stays in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    big = tmp_path / "big.parquet"
    pq.write_table(pa.table({f"x{i}": pa.nulls(1_000_000, pa.float64()) for i in range(31)}), big)
    two_gib = 2 << 30
    assert outofcore.plan(_spec(big).dataset, memory_budget=two_gib, env={}).stream is True
    path = tmp_path / "churn.parquet"
    generate_churn(20_000, seed=0).to_parquet(path, index=False)
    assert outofcore.plan(_spec(path).dataset, memory_budget=two_gib, env={}).stream is False
    assert outofcore.plan(_spec(path).dataset, memory_budget=None, env={}).stream is False
