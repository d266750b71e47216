"""Bounded state: a sliding window of rows per model version and the request/response join table.

Both are fixed-size by construction, so a flood of events costs CPU, never unbounded memory: the window is
a preallocated ring buffer (rows beyond ``max_rows`` overwrite the oldest; rows older than ``max_age``
are left out of every evaluation), the join table evicts its oldest entries beyond ``max_entries`` or
``max_bytes``. Not thread-safe; the service holds one lock around them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from modelops.drift.stats import category_key

# Categorical values longer than this are cut: a bound on memory per cell.
MAX_CATEGORY_CHARS = 128


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def to_category(value: Any) -> str | None:
    key = category_key(value)
    return key[:MAX_CATEGORY_CHARS] if key is not None else None


# Below this many values a plain loop beats numpy's and pandas' per-call overhead (single-row events).
VECTOR_MIN = 16


def floats(values: Sequence[Any] | npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """`to_float` of every value, in C when the values allow it (numbers, None, numeric strings)."""
    n = len(values)
    if n >= VECTOR_MIN or isinstance(values, np.ndarray):
        try:
            out = np.asarray(values, dtype=np.float64)
            if out.shape == (n,):
                return out
        except (TypeError, ValueError, OverflowError):
            pass  # a non-numeric string, a list or an object somewhere: value by value below
    return np.fromiter((to_float(v) for v in values), dtype=np.float64, count=n)


def _bool_like(value: Any) -> bool:
    """True, False, 0 and 1 hash alike in Python but are different categories ("True" is not "1")."""
    return isinstance(value, bool | np.bool_) or (isinstance(value, int | float | np.number) and value in (0, 1))


def categories(values: Sequence[Any] | npt.NDArray[Any]) -> npt.NDArray[np.object_]:
    """`to_category` of every value; computed once per distinct value, not per row."""
    return category_block([values], len(values))[:, 0]


def category_block(columns: Sequence[Sequence[Any] | npt.NDArray[Any]], rows: int) -> npt.NDArray[np.object_]:
    """`to_category` of every value of several columns of ``rows`` values: a rows x columns object block.

    The distinct values of all columns are collected in one dict (issue 19: one pass in C instead of a
    hash table per column) and converted once each; when every distinct value is its own key (plain
    category strings, the usual case) the values are copied as they are, without a lookup per value.
    """
    out = np.empty((rows, len(columns)), dtype=object)
    if rows * len(columns) >= VECTOR_MIN and all(len(c) == rows for c in columns):
        everything = chain.from_iterable(columns)
        try:
            distinct = dict.fromkeys(everything)
        except TypeError:  # unhashable values (lists, dicts): value by value below
            distinct = None
        if distinct is not None and not any(_bool_like(u) for u in distinct):
            keys = {u: to_category(u) for u in distinct}
            flat = chain.from_iterable(columns)
            if all(k is u for u, k in keys.items()):  # canonical already: the values themselves
                block = np.fromiter(flat, dtype=object, count=rows * len(columns))
            else:
                block = np.fromiter(map(keys.__getitem__, flat), dtype=object, count=rows * len(columns))
            out[:] = block.reshape(len(columns), rows).T
            return out
    for j, column in enumerate(columns):
        out[:, j] = [to_category(v) for v in column]
    return out


@dataclass
class Batch:
    """Rows decoded from one inference: numeric block, categorical block, optional predictions."""

    rows: int
    numeric: npt.NDArray[np.float64]  # rows x numeric features, NaN = missing
    categorical: npt.NDArray[np.object_]  # rows x categorical features, None = missing
    predictions: npt.NDArray[Any] | None = None

    @property
    def nbytes(self) -> int:
        return int(self.numeric.nbytes + self.categorical.nbytes * 8 + 64 * self.rows)


class Layout:
    """How a reference profile's features map onto the window's numeric and categorical blocks."""

    def __init__(self, profile: Mapping[str, Any]) -> None:
        feats = profile["features"]
        self.features: list[str] = list(feats)
        self.numeric = [f for f in self.features if feats[f].get("type") != "categorical"]
        self.categorical = [f for f in self.features if feats[f].get("type") == "categorical"]
        pred = profile.get("prediction")
        self.prediction_kind: str | None = pred.get("type") if pred else None
        self.classification = profile.get("task") == "classification"

    def batch(self, rows: int, columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]],
              predictions: Sequence[Any] | npt.NDArray[Any] | None = None) -> Batch:
        num: npt.NDArray[np.float64] | None = None
        if self.numeric:
            try:  # every numeric column in one C call (numbers, None -> NaN, numeric strings)
                block = np.array([columns[f] for f in self.numeric], dtype=np.float64)
                if block.shape == (len(self.numeric), rows):
                    num = block.T
            except (TypeError, ValueError, OverflowError):
                pass  # a column needs to_float's leniency: column by column
        if num is None:
            num = np.empty((rows, len(self.numeric)), dtype=np.float64)
            for j, f in enumerate(self.numeric):
                num[:, j] = floats(columns[f])
        if rows < VECTOR_MIN and self.categorical:
            cat = np.empty((rows, len(self.categorical)), dtype=object)
            cat[:] = [[to_category(columns[f][i]) for f in self.categorical] for i in range(rows)]
        else:
            cat = category_block([columns[f] for f in self.categorical], rows)
        return Batch(rows, num, cat, self.predictions(predictions) if predictions is not None else None)

    def predictions(self, values: Sequence[Any] | npt.NDArray[Any]) -> npt.NDArray[Any]:
        if self.prediction_kind == "categorical":
            return categories(values)
        return floats(values)


class Window:
    """Ring buffer of the newest ``max_rows`` rows of one model version."""

    def __init__(self, layout: Layout, max_rows: int, max_age: float) -> None:
        self.layout = layout
        self.max_rows = max_rows
        self.max_age = max_age
        self.numeric = np.full((max_rows, len(layout.numeric)), np.nan)
        self.categorical = np.full((max_rows, len(layout.categorical)), None, dtype=object)
        pred_cat = layout.prediction_kind == "categorical"
        self.preds: npt.NDArray[Any] = (np.full(max_rows, None, dtype=object) if pred_cat
                                        else np.full(max_rows, np.nan))
        self.has_pred = np.zeros(max_rows, dtype=bool)
        self.ts = np.zeros(max_rows)
        self.head = 0  # next slot to write
        self.count = 0
        self.generation = 0  # bumps on every change: the evaluation cache key
        self.rows_total = 0
        self.last_update = 0.0

    def add(self, batch: Batch, now: float) -> None:
        n = batch.rows
        start = 0
        if n > self.max_rows:  # only the newest rows can stay
            start = n - self.max_rows
            n = self.max_rows
        # contiguous slices (one or two, across the wrap), not fancy indexing: a single-row event costs
        # a few slice assignments
        first = min(n, self.max_rows - self.head)
        idx: slice | npt.NDArray[np.int64] = slice(self.head, self.head + n) if first == n else \
            (self.head + np.arange(n)) % self.max_rows
        self.numeric[idx] = batch.numeric[start:]
        self.categorical[idx] = batch.categorical[start:]
        if batch.predictions is not None and len(batch.predictions) == batch.rows:
            self.preds[idx] = batch.predictions[start:]
            self.has_pred[idx] = True
        else:
            self.has_pred[idx] = False
        self.ts[idx] = now
        self.head = int((self.head + n) % self.max_rows)
        self.count = min(self.max_rows, self.count + n)
        self.generation += 1
        self.rows_total += batch.rows
        self.last_update = now

    def _order(self, now: float) -> npt.NDArray[np.int64]:
        """Slots of the live rows, oldest first (rows older than max_age are out)."""
        first = (self.head - self.count) % self.max_rows
        order = (first + np.arange(self.count)) % self.max_rows
        cutoff = now - self.max_age
        keep_from = int(np.searchsorted(self.ts[order], cutoff, side="left"))
        return order[keep_from:]

    def expire(self, now: float) -> int:
        """Forget rows older than max_age; returns how many."""
        order = self._order(now)
        dropped = self.count - len(order)
        if dropped:
            self.count = len(order)
            self.generation += 1
        return dropped

    def rows(self, now: float) -> int:
        return len(self._order(now))

    def oldest_age(self, now: float) -> float | None:
        order = self._order(now)
        return float(now - self.ts[order[0]]) if len(order) else None

    def columns(self, now: float) -> tuple[int, dict[str, Any], npt.NDArray[Any] | None]:
        """(rows, feature name -> values oldest first, predictions of the rows that have one)."""
        order = self._order(now)
        cols: dict[str, Any] = {}
        num = self.numeric[order]
        for j, f in enumerate(self.layout.numeric):
            cols[f] = num[:, j]
        cat = self.categorical[order]
        for j, f in enumerate(self.layout.categorical):
            cols[f] = cat[:, j]
        has = self.has_pred[order]
        preds = self.preds[order][has] if has.any() else None
        return len(order), cols, preds


@dataclass
class Pending:
    """One side (or both) of an inference waiting for its partner."""

    model: str
    arrived: float
    request: Any = None  # whatever the service decoded from the request
    response: Any = None
    version: str | None = None
    nbytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    namespace: str = ""


class JoinTable:
    """Requests and responses by event id, until both arrived or ``timeout`` passed.

    ``on_expire(pending, reason)`` receives every entry that leaves without a partner: reason ``timeout``
    or ``evicted`` (the table was full). What to do with a lone request (keep its features) or a lone
    response (drop it) is the caller's decision.
    """

    def __init__(self, timeout: float, max_entries: int, max_bytes: int,
                 on_expire: Callable[[Pending, str], None]) -> None:
        self.timeout = timeout
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.on_expire = on_expire
        self.entries: OrderedDict[str, Pending] = OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.entries)

    def pop(self, key: str) -> Pending | None:
        p = self.entries.pop(key, None)
        if p is not None:
            self.nbytes -= p.nbytes
        return p

    def put(self, key: str, pending: Pending) -> None:
        old = self.pop(key)
        if old is not None:  # a reused id: the earlier inference will never be completed
            self.on_expire(old, "evicted")
        self.entries[key] = pending
        self.nbytes += pending.nbytes
        while self.entries and (len(self.entries) > self.max_entries or self.nbytes > self.max_bytes):
            _, oldest = self.entries.popitem(last=False)
            self.nbytes -= oldest.nbytes
            self.on_expire(oldest, "evicted")

    def expire(self, now: float) -> None:
        while self.entries:
            key, oldest = next(iter(self.entries.items()))
            if now - oldest.arrived < self.timeout:
                break
            self.pop(key)
            self.on_expire(oldest, "timeout")
