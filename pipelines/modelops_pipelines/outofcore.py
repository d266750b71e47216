"""Training on a dataset larger than the Pod's memory: streamed in chunks, the final model through XGBoost's
quantile DMatrix iterator path.

When the table would not fit in memory as a DataFrame (`plan`: its estimated in-memory size against the
cgroup memory limit), training streams it instead of loading it:

1. One pass hashes the file's bytes (the same sha256 as an in-memory load) and counts its rows.
2. One pass over Parquet row groups / CSV blocks assigns every row by a seeded hash of its row number to
   the test split (test_fraction of the rows) or the training split, and keeps a bounded sample of each
   (SEARCH_ROWS training rows, TEST_ROWS test rows) while counting, over all rows, the target's missing
   values and classes. The sample goes through the usual validation, so its typing and checks are the
   in-memory ones; the full-table counts replace the sample's in the validation report.
3. The hyperparameter search runs on the training sample (XGBoost only: it is the family that trains out
   of core), exactly as for an in-memory table.
4. The refit streams every training row again through a `xgb.DataIter` into a QuantileDMatrix (rows
   quantised chunk by chunk; the float table never exists) or, when even the quantised rows would not fit
   the memory budget, an ExtMemQuantileDMatrix whose pages live in a temporary directory. Each chunk goes
   from Arrow straight to a float32 matrix (`ChunkEncoder`: no DataFrame, no float64 copy).

Parquet is read one row group at a time and only the sampled rows of a chunk become a DataFrame, so the
memory the streaming takes does not grow with the table (bench/train_large.py measures it under a cgroup).
5. Evaluation, charts, the reference profile, the gate against the champion and registration use the test
   sample and the training sample, as the in-memory path uses its splits: the same gate and artefacts.

MODELOPS_OUT_OF_CORE=always|never|auto (default auto) overrides the decision.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelops_pipelines.data import (
    DatasetError,
    LoadedTable,
    PreparedData,
    coerce_categorical,
    coerce_numeric,
    validate_and_prepare,
)
from modelops_pipelines.spec import DatasetSpec, TrainSpec

#: environment override: always | never | auto
OUT_OF_CORE_ENV = "MODELOPS_OUT_OF_CORE"
#: training rows kept in memory for the hyperparameter search
SEARCH_ROWS = 200_000
#: held-out rows kept in memory for evaluation, charts and the gate
TEST_ROWS = 100_000
#: rows per streamed chunk
CHUNK_ROWS = 200_000
#: bytes per CSV block read (a CSV's column types are inferred from its first block)
CSV_BLOCK_BYTES = 16 << 20
#: a DataFrame takes about this many times the CSV's bytes (parse buffers, object columns, typed copies)
CSV_EXPANSION = 4.0
#: bytes per cell of a loaded table (float64, plus the validated and preprocessed copies training makes):
#: training a 1,000,000 x 31 Parquet table in memory peaked at 1.8 GB RSS during the search (~58 B a cell)
CELL_BYTES = 64
#: stream when the estimated in-memory size exceeds this share of the memory budget
STREAM_SHARE = 0.5
#: an ExtMemQuantileDMatrix (pages on disk) instead of a QuantileDMatrix when the quantised rows, at
#: QUANTISED_CELL_BYTES a cell, would take more than this share of the memory budget. Measured with
#: XGBoost 3.2: an in-memory QuantileDMatrix of 4,000,000 x 30 rows (1% missing) built from chunks and trained
#: added ~900 MB to the process (~7.5 B a cell: the row-wise index, the column-wise copy hist training builds,
#: the sketch); the external-memory one ~350 MB whatever the rows.
QUANTISED_SHARE = 0.25
QUANTISED_CELL_BYTES = 8

ProgressFn = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- source

@dataclass(frozen=True)
class Source:
    """Where the table is and how to open it as a binary stream (a local path or an fsspec URL)."""

    uri: str
    fmt: str
    local: Path | None
    size_bytes: int
    options: dict[str, Any] = field(default_factory=dict)

    def open(self) -> Any:
        if self.local is not None:
            return self.local.open("rb")
        import fsspec

        return fsspec.open(self.uri.replace("s3a://", "s3://", 1), "rb", **self.options).open()


def _source(spec: DatasetSpec) -> Source | None:
    """The dataset as a streamable source, or None when its size cannot be known up front (http)."""
    from modelops_pipelines.data import _format_for

    parsed = urllib.parse.urlparse(spec.uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file"):
        path = Path(urllib.parse.unquote(parsed.path) if scheme == "file" else spec.uri)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DatasetError(f"dataset {spec.uri!r} does not exist") from None
        except OSError as exc:
            raise DatasetError(f"dataset {spec.uri!r} cannot be read: {exc.strerror or exc}") from None
        if path.is_dir():
            raise DatasetError(f"dataset {spec.uri!r} is a directory, not a file")
        return Source(spec.uri, _format_for(str(path), spec.format), path, size)
    if scheme in ("s3", "s3a"):
        import fsspec

        options: dict[str, Any] = dict(spec.storage_options)
        endpoint = (spec.s3_endpoint_url or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
                    or os.environ.get("AWS_ENDPOINT_URL"))
        if endpoint:
            options.setdefault("endpoint_url", endpoint)
        for key in ("anon", "use_ssl"):
            if key in options:
                options[key] = str(options[key]).lower() in ("1", "true", "yes")
        try:
            fs, path_str = fsspec.core.url_to_fs(spec.uri.replace("s3a://", "s3://", 1), **options)
            size = int(fs.info(path_str)["size"])
        except Exception as exc:  # fsspec/botocore raise many types; all mean "cannot read"
            raise DatasetError(f"dataset {spec.uri!r} cannot be read: {type(exc).__name__}: {exc}") from None
        return Source(spec.uri, _format_for(parsed.path, spec.format), None, size, options)
    return None


# ---------------------------------------------------------------------------------------------- decision

@dataclass(frozen=True)
class Plan:
    stream: bool
    reason: str
    source: Source | None
    memory_budget: int | None
    estimated_bytes: int | None


def _parquet_cells(source: Source) -> int | None:
    import pyarrow.parquet as pq

    try:
        with source.open() as fh:
            meta = pq.ParquetFile(fh).metadata
            return int(meta.num_rows) * int(meta.num_columns)
    except Exception:
        return None


def estimate_bytes(source: Source) -> int:
    """About how much memory loading and training on the table in memory takes."""
    if source.fmt == "parquet":
        cells = _parquet_cells(source)
        if cells is not None:
            return cells * CELL_BYTES
        return int(source.size_bytes * CSV_EXPANSION * 2)
    return int(source.size_bytes * CSV_EXPANSION)


def plan(spec: DatasetSpec, *, memory_budget: int | None = None, env: dict[str, str] | None = None) -> Plan:
    """Whether to train out of core, and why (in words for the progress log)."""
    from modelops_pipelines.resources import memory_budget as budget_of

    environ = os.environ if env is None else env
    mode = environ.get(OUT_OF_CORE_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"{OUT_OF_CORE_ENV} must be auto, always or never, not {mode!r}")
    if mode == "never":
        return Plan(False, f"{OUT_OF_CORE_ENV}=never", None, None, None)
    source = _source(spec)
    if source is None:
        if mode == "always":
            raise DatasetError(f"out-of-core training reads a file path or an s3:// URL, not {spec.uri!r}")
        return Plan(False, "the dataset's size is not known before download", None, None, None)
    budget = memory_budget if memory_budget is not None else budget_of()
    estimated = estimate_bytes(source)
    if mode == "always":
        return Plan(True, f"{OUT_OF_CORE_ENV}=always", source, budget, estimated)
    if budget is not None and estimated > budget * STREAM_SHARE:
        return Plan(True, f"loading it would take about {estimated / 2**30:.1f} GiB of the "
                          f"{budget / 2**30:.1f} GiB memory limit", source, budget, estimated)
    return Plan(False, "it fits in memory", source, budget, estimated)


# ---------------------------------------------------------------------------------------------- reading

def uniform(index: np.ndarray, salt: int) -> np.ndarray:
    """A uniform number in [0, 1) per row number, the same for a row whatever the chunking (splitmix64)."""
    with np.errstate(over="ignore"):
        z = index.astype(np.uint64) + np.uint64((salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def hash_and_count(source: Source, chunk: int = 8 << 20) -> tuple[str, int]:
    """sha256 of the file's bytes and its number of newlines (an estimate of a CSV's rows)."""
    digest = hashlib.sha256()
    newlines = 0
    with source.open() as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            digest.update(block)
            newlines += block.count(b"\n")
    return digest.hexdigest(), newlines


def batches(source: Source, rows: int = CHUNK_ROWS, columns: list[str] | None = None) -> Iterator[tuple[int, Any]]:
    """(first row number, Arrow record batch) for consecutive chunks of about `rows` rows; `columns` reads only
    those columns of a Parquet file (a CSV is parsed whole)."""
    start = 0
    with source.open() as fh:
        try:
            if source.fmt == "parquet":
                import pyarrow.parquet as pq

                parquet = pq.ParquetFile(fh)
                # One reader per row group: pyarrow's reader over the whole file keeps what it has read until
                # the end (its memory grew by the file's size, 1.2 GB for 5M x 30 rows, in pyarrow 25); per row
                # group it stays at one row group's column chunks.
                reader: Iterator[Any] = (batch for group in range(parquet.metadata.num_row_groups)
                                         for batch in parquet.iter_batches(batch_size=rows, row_groups=[group],
                                                                           columns=columns))
            else:
                import pyarrow.csv as pacsv

                reader = iter(pacsv.open_csv(fh, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES)))
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                yield start, batch
                start += batch.num_rows
        except DatasetError:
            raise
        except Exception as exc:  # pyarrow raises many types; all mean "unreadable from here on"
            raise DatasetError(f"dataset {source.uri!r} is not readable as {source.fmt} after row {start}: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                               + (" (a CSV column's type is inferred from its first block; Parquet keeps "
                                  "types exact)" if source.fmt == "csv" else "")) from None


def chunks(source: Source, rows: int = CHUNK_ROWS) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first row number, DataFrame) for consecutive chunks of about `rows` rows."""
    for start, batch in batches(source, rows):
        yield start, _frame(batch)


def _frame(batch: Any) -> pd.DataFrame:
    frame = batch.to_pandas()
    return frame.set_axis([str(c) for c in frame.columns], axis=1)


def _release_arrow_memory() -> None:
    """Hand the Arrow allocator's freed pages back to the system (mimalloc/jemalloc keep them for reuse)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


# ---------------------------------------------------------------------------------------------- scan

@dataclass
class Scanned:
    """The streamed table: its identity, the in-memory sample, and how to stream the training rows again."""

    table: LoadedTable
    data: PreparedData
    test_mask: np.ndarray  # per sample row: held out
    source: Source
    seed: int
    test_fraction: float
    rows_total: int
    rows_train: int
    chunk_rows: int


def _is_test(start: int, n: int, seed: int, test_fraction: float) -> np.ndarray:
    return uniform(np.arange(start, start + n, dtype=np.int64), seed) < test_fraction


def scan(spec: TrainSpec, source: Source, progress: ProgressFn | None = None, *,
         search_rows: int | None = None, test_rows: int | None = None, chunk_rows: int | None = None) -> Scanned:
    """Hash, count, split and sample the table in two streaming passes; validate the sample."""
    say = progress or (lambda _m: None)
    search_rows = SEARCH_ROWS if search_rows is None else search_rows
    test_rows = TEST_ROWS if test_rows is None else test_rows
    chunk_rows = CHUNK_ROWS if chunk_rows is None else chunk_rows
    ds = spec.dataset
    if ds.time_column is not None:
        raise DatasetError("dataset.timeColumn is not supported for a dataset trained out of core (larger than "
                           "memory): its rows are split at random; leave timeColumn out or give the Pod the "
                           "memory to load the table")
    sha, newlines = hash_and_count(source)
    if source.size_bytes == 0:
        raise DatasetError(f"dataset {source.uri!r} is empty (0 bytes)")
    if source.fmt == "parquet":
        cells = _parquet_cells(source)
        import pyarrow.parquet as pq

        with source.open() as fh:
            estimate = int(pq.ParquetFile(fh).metadata.num_rows) if cells is not None else 0
    else:
        estimate = max(1, newlines - 1)
    seed, test_fraction = spec.split.seed, spec.split.test_fraction
    search_rate = min(1.0, search_rows / max(1.0, estimate * (1 - test_fraction)))
    test_rate = min(1.0, test_rows / max(1.0, estimate * test_fraction))
    say(f"streaming {source.uri} ({source.size_bytes / 2**20:.0f} MiB, ~{estimate} rows) in chunks of "
        f"{chunk_rows} rows: sampling {search_rate:.1%} of training rows for the search, {test_rate:.1%} of "
        f"the held-out rows for evaluation")
    parts: list[pd.DataFrame] = []
    marks: list[np.ndarray] = []
    total = missing_target = train_rows = 0
    class_counts: dict[Any, int] = {}
    columns: list[str] | None = None
    for start, batch in batches(source, chunk_rows):
        if columns is None:
            columns = [str(c) for c in batch.schema.names]
            if ds.target not in columns:
                raise DatasetError(f"target column {ds.target!r} is not in the dataset; columns are: "
                                   f"{columns[:20]}")
        n = batch.num_rows
        test = _is_test(start, n, seed, test_fraction)
        pick = uniform(np.arange(start, start + n, dtype=np.int64), seed + 7)
        target = batch.column(columns.index(ds.target)).to_pandas()  # only the target column as pandas
        has_target = target.notna().to_numpy()
        total += n
        missing_target += int((~has_target).sum())
        train_rows += int((has_target & ~test).sum())
        if ds.task == "classification":
            for value, count in target.value_counts(dropna=True).items():
                key = value.item() if isinstance(value, np.generic) else value
                class_counts[key] = class_counts.get(key, 0) + int(count)
        keep = has_target & np.where(test, pick < test_rate, pick < search_rate)
        if keep.any():  # only the sampled rows become a DataFrame
            import pyarrow as pa

            parts.append(_frame(batch.filter(pa.array(keep))))
            marks.append(test[keep])
        del batch, target
        _release_arrow_memory()
    if not parts:
        raise DatasetError(f"dataset {source.uri!r} has no rows with a target value")
    sample = pd.concat(parts, ignore_index=True)
    test_mask = np.concatenate(marks)
    rules = spec.validation
    if total and missing_target / total > rules.max_missing_rate:
        raise DatasetError(f"target column {ds.target!r} is missing in {missing_target / total:.1%} of rows "
                           f"(maxMissingRate {rules.max_missing_rate:.1%})")
    data = validate_and_prepare(sample, spec)
    if data.classes is not None:
        absent = {str(k): v for k, v in class_counts.items() if k not in data.classes}
        if absent:
            raise DatasetError(f"classification target {ds.target!r} has classes too rare to appear in the "
                               f"{len(sample)}-row sample of a table trained out of core: {absent} rows")
        data.report["class_counts"] = {str(k): int(v) for k, v in class_counts.items()}
    if test_mask.all() or not test_mask.any():
        raise DatasetError(f"too few rows ({total}) to hold out a test split of {test_fraction:.0%}")
    data.report.update(rows_total=total, rows_used=total - missing_target,
                       rows_dropped_missing_target=missing_target,
                       out_of_core={"rows_train": train_rows, "search_sample_rows": int((~test_mask).sum()),
                                    "test_sample_rows": int(test_mask.sum()), "chunk_rows": chunk_rows})
    table = LoadedTable(frame=sample, uri=source.uri, sha256=sha, size_bytes=source.size_bytes, format=source.fmt)
    return Scanned(table=table, data=data, test_mask=test_mask, source=source, seed=seed,
                   test_fraction=test_fraction, rows_total=total, rows_train=train_rows,
                   chunk_rows=chunk_rows)


def prepare_chunk(frame: pd.DataFrame, data: PreparedData, target: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A raw chunk typed as validate_and_prepare types the sample: (features, encoded target)."""
    frame = frame.loc[frame[target].notna().to_numpy()]
    X = pd.DataFrame(index=frame.index)
    cats = set(data.categorical)
    for name in data.features:
        X[name] = coerce_categorical(frame[name]) if name in cats else coerce_numeric(frame[name])
    if data.classes is not None:
        index = {c: i for i, c in enumerate(data.classes)}
        raw = frame[target]
        codes = raw.map(lambda v: index.get(v.item() if isinstance(v, np.generic) else v, -1))
        if (codes < 0).any():
            bad = raw[(codes < 0).to_numpy()].iloc[0]
            bad = bad.item() if isinstance(bad, np.generic) else bad
            raise DatasetError(f"classification target {target!r} has a class {bad!r} not seen while scanning")
        y = codes.to_numpy(dtype=np.float32)
    else:
        y = pd.to_numeric(frame[target], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(y).all():
            raise DatasetError(f"regression target {target!r} has a non-numeric or infinite value")
    return X, y


# ---------------------------------------------------------------------------------------------- refit

class ChunkEncoder:
    """A raw Arrow chunk straight to the float32 matrix the fitted tree preprocessor makes of it.

    Equal, cell for cell, to `pre.transform(prepare_chunk(frame, ...))` without the DataFrame, the float64
    copies and the per-row Python objects: a numeric column is cast by Arrow to float64 then float32 (NaN for
    missing), a categorical column is dictionary-encoded and only its distinct values go through the fitted
    OrdinalEncoder (after the same `coerce_categorical`), and the target's distinct values are mapped to
    class indices once per chunk. A chunk with a column of another Arrow type (a number stored as text...)
    takes the DataFrame path.
    """

    def __init__(self, pre: Any, data: PreparedData, target: str) -> None:
        self.pre, self.data, self.target = pre, data, target
        self.numeric = list(data.numeric)
        self.categorical = list(data.categorical)
        self.columns = [*self.numeric, *self.categorical]  # the preprocessor's output order
        transformers = {name: (how, cols) for name, how, cols in pre.transformers}  # as built, not as fitted
        if self.numeric and (transformers.get("num", (None, []))[0] != "passthrough"
                             or list(transformers["num"][1]) != self.numeric):
            raise ValueError("ChunkEncoder needs the tree preprocessor (numeric columns passed through)")
        self.encoder = pre.named_transformers_["cat"] if self.categorical else None
        self.fast = 0
        self.slow = 0

    @staticmethod
    def _numeric_type(t: Any) -> bool:
        import pyarrow as pa

        return bool(pa.types.is_integer(t) or pa.types.is_floating(t))

    def _categorical_codes(self, column: Any, j: int) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.compute as pc

        encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
        uniques = pd.concat([encoded.dictionary.to_pandas(), pd.Series([None], dtype=object)],
                            ignore_index=True)  # the last entry: a missing value
        probe = pd.DataFrame({name: (coerce_categorical(uniques) if k == j
                                     else pd.Series(np.nan, index=uniques.index, dtype=object))
                              for k, name in enumerate(self.categorical)})
        assert self.encoder is not None
        mapped = np.asarray(self.encoder.transform(probe)[:, j], dtype=np.float64)
        indices = np.asarray(pc.fill_null(encoded.indices, len(uniques) - 1).to_numpy(zero_copy_only=False))
        out: np.ndarray = mapped[indices]
        return out

    def _labels(self, raw: pd.Series) -> np.ndarray:
        if self.data.classes is None:
            y: np.ndarray = np.asarray(pd.to_numeric(raw, errors="coerce"), dtype=np.float64)
            if not np.isfinite(y).all():
                raise DatasetError(f"regression target {self.target!r} has a non-numeric or infinite value")
            return y
        index = {c: i for i, c in enumerate(self.data.classes)}
        uniques = pd.unique(raw)
        codes = np.array([index.get(v.item() if isinstance(v, np.generic) else v, -1) for v in uniques],
                         dtype=np.int64)
        if (codes < 0).any():
            bad = uniques[int(np.argmax(codes < 0))]
            bad = bad.item() if isinstance(bad, np.generic) else bad
            raise DatasetError(f"classification target {self.target!r} has a class {bad!r} not seen while "
                               "scanning")
        labels: np.ndarray = codes[pd.Index(uniques).get_indexer(raw)].astype(np.float32)
        return labels

    def encode(self, batch: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(float32 features, encoded target) of the chunk's rows where `rows` is true and the target is set."""
        import pyarrow as pa
        import pyarrow.compute as pc

        names = [str(c) for c in batch.schema.names]
        missing = [c for c in [*self.columns, self.target] if c not in names]
        if missing:
            raise DatasetError(f"the dataset's columns changed while training: {missing} are gone")
        raw_target = batch.column(names.index(self.target)).to_pandas()
        keep = rows & raw_target.notna().to_numpy()
        types = {name: batch.schema.field(name).type for name in names}
        if not all(self._numeric_type(types[c]) for c in self.numeric) or not all(
                pa.types.is_string(types[c]) or pa.types.is_large_string(types[c])
                or pa.types.is_dictionary(types[c]) or self._numeric_type(types[c]) for c in self.categorical):
            self.slow += 1
            frame = _frame(batch.filter(pa.array(keep)))
            X, y = prepare_chunk(frame, self.data, self.target)
            return np.asarray(self.pre.transform(X), dtype=np.float32), y
        self.fast += 1
        out = np.empty((int(keep.sum()), len(self.columns)), dtype=np.float32)
        for j, name in enumerate(self.numeric):
            values = pc.cast(batch.column(names.index(name)), pa.float64(), safe=False)
            out[:, j] = values.to_numpy(zero_copy_only=False)[keep]
        for j, name in enumerate(self.categorical):
            out[:, len(self.numeric) + j] = self._categorical_codes(batch.column(names.index(name)), j)[keep]
        return out, self._labels(raw_target[keep])


def _train_iterator(scanned: Scanned, pre: Any, target: str, chunk_rows: int, cache_prefix: str | None) -> Any:
    import xgboost as xgb

    encoder = ChunkEncoder(pre, scanned.data, target)
    columns = [*encoder.columns, target] if scanned.source.fmt == "parquet" else None

    class TrainRows(xgb.DataIter):
        """Every training row (not held out), chunk by chunk, preprocessed as the saved pipeline does."""

        def __init__(self) -> None:
            self._batches: Iterator[tuple[int, Any]] | None = None
            self.rows = 0
            self.encoder = encoder
            super().__init__(cache_prefix=cache_prefix, release_data=True)

        def next(self, input_data: Callable[..., None]) -> bool:
            if self._batches is None:
                self._batches = batches(scanned.source, chunk_rows, columns)
                self.rows = 0
            for start, batch in self._batches:
                train = ~_is_test(start, batch.num_rows, scanned.seed, scanned.test_fraction)
                matrix, y = encoder.encode(batch, train)
                del batch
                _release_arrow_memory()
                if len(y) == 0:
                    continue
                self.rows += len(y)
                input_data(data=matrix, label=y)
                return True
            return False

        def reset(self) -> None:
            self._batches = None

    return TrainRows()


def refit_xgboost(scanned: Scanned, spec: TrainSpec, params: dict[str, Any], *, n_jobs: int,
                  memory_budget: int | None, progress: ProgressFn | None = None) -> Any:
    """The serving pipeline (preprocess -> XGBoost) fitted on every training row, streamed."""
    import xgboost as xgb
    from sklearn.pipeline import Pipeline

    from modelops_pipelines import families as fam

    say = progress or (lambda _m: None)
    data = scanned.data
    n_classes = len(data.classes) if data.classes is not None else None
    pre = fam.build_preprocessor("tree", data.numeric, data.categorical)
    pre.fit(data.X.loc[~scanned.test_mask])
    quantised = scanned.rows_train * len(data.features) * QUANTISED_CELL_BYTES
    external = memory_budget is not None and quantised > memory_budget * QUANTISED_SHARE
    native, rounds = fam.xgb_native_params(data.task, params, n_classes=n_classes, n_jobs=n_jobs,
                                           seed=spec.search.seed)
    with tempfile.TemporaryDirectory(prefix="modelops-xgb-pages-") as pages:
        rows = _train_iterator(scanned, pre, spec.dataset.target, scanned.chunk_rows,
                               os.path.join(pages, "cache") if external else None)
        how = "external-memory pages on disk" if external else "a quantised in-memory matrix"
        say(f"refit: streaming {scanned.rows_train} training rows into {how} "
            f"(~{quantised / 2**20:.0f} MiB quantised), {rounds} rounds")
        matrix: Any
        if external:
            matrix = xgb.ExtMemQuantileDMatrix(rows, max_bin=fam.XGB_MAX_BIN, nthread=n_jobs)
        else:
            matrix = xgb.QuantileDMatrix(rows, max_bin=fam.XGB_MAX_BIN, nthread=n_jobs)
        say(f"refit: {matrix.num_row()} rows quantised; training")
        if matrix.num_row() != scanned.rows_train:
            raise DatasetError(f"streamed {matrix.num_row()} training rows, the scan counted {scanned.rows_train}; "
                               "did the dataset change during training?")
        booster = xgb.train(native, matrix, num_boost_round=rounds)
        del matrix
    est = fam.xgb_estimator_from_booster(booster, data.task, params, n_classes=n_classes, n_jobs=n_jobs,
                                         seed=spec.search.seed)
    return Pipeline([("preprocess", pre), ("model", est)])


def require_xgboost(spec: TrainSpec) -> None:
    if "xgboost" not in spec.search.families:
        raise DatasetError(f"the dataset is trained out of core (larger than memory), where only the xgboost "
                           f"family trains; search.families is {list(spec.search.families)}: add xgboost")
