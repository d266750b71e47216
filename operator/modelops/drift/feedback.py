"""Ground truth by inference id: pending predictions, the label join, and live quality per model version.

Predictions enter when the exporter sees a response (or an /ingest batch with ``ids``): one row per
prediction with its id, model version, positive-class score (classifiers), served class or value, and
time. Row ``i`` of a multi-row inference ``ID`` has the id ``ID`` when the inference has one row, else
``ID#i``. Labels (``POST /feedback``) are looked up by id; a label joins its prediction at most once.

Memory is bounded by construction (issue 17): the pending store is a preallocated ring of ``max_pending``
rows (37 bytes each) plus an open-addressing hash index of ids (12 bytes a slot, at most half full), so
1,000,000 pending predictions cost about 60 MB whatever the ids look like (ids are kept as 64-bit hashes
of namespace and id, never as strings). The oldest rows are overwritten when the ring is full. Rows older
than ``max_age`` stay until overwritten but no longer join: their labels count as ``expired``.

Labels may come before their prediction (issue 17, found on the node): KServe's agent logs a response
to the exporter asynchronously, in batches, so a client that sends the label right after the answer can
beat the logged event. A label whose id is not (yet) a pending prediction is kept in the early-label store
(``EarlyLabels``: a ring of ``max_early`` labels, 41 bytes each, and an id index of the same kind; labels
older than ``max_early_age`` seconds on the exporter's clock give up) and joins when its prediction is
recorded, exactly as it would have joined had it come second: the joined rows, and so every realised
metric, are the same for both arrival orders. Labels are kept there as their number and the 64-bit hash
of their class key (modelops.drift.stats.category_key), since whether they must be numbers or classes is
only known when the prediction's version is.

Label outcomes (counter ``modelops_feedback_labels_total{outcome}``, counted when the outcome is known:
at once, or for an early label when its prediction comes or it gives up): ``joined``; ``unmatched`` (no
prediction with that id came within ``max_early_age``, or its version is no longer tracked);
``expired`` (the prediction is older than ``max_age`` at the label's time); ``duplicate`` (the
prediction already has a label, an early label with that id is already waiting, or the same id appears
twice in one batch: the first wins); ``invalid`` (no id, or a label of the wrong type for the model: not
a number for a regressor, not one of the classes for a classifier; the prediction stays pending, so a
corrected label can still join). The answer to a POST also says how many of its labels are ``early``
(waiting for their prediction; their outcome comes later). Early labels have their own series: waiting
(gauge), joined late, and given up by reason (``age``, ``capacity``; these are also ``unmatched``).

Everything per row is numpy over the batch (hashing the id strings is the one per-item step, in the
parser); the quality windows keep the newest ``window_rows`` joined rows within ``window_age`` seconds of
their join and compute metrics with modelops.drift.quality (realised) and modelops.drift.estimate (CBPE).
A multi-class classifier whose profile carries the trainer's ``isotonic_ovr`` calibrator also keeps the
served class probabilities of its estimation window, and gets multi-class CBPE (accuracy, macro F1, macro
one-vs-rest AUC).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from modelops.drift import estimate, quality
from modelops.drift.stats import category_key
from modelops.formats.quality import (
    CALIBRATION_KEY,
    FEEDBACK_EARLY_REASONS,
    FEEDBACK_EVENT_TYPE,
    FEEDBACK_OUTCOMES,
)

__all__ = ["FEEDBACK_EVENT_TYPE", "Feedback", "FeedbackError", "Quality", "served_labels"]

F = npt.NDArray[np.float64]
U = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

# label delay histogram buckets (seconds): 1 s .. 7 days
DELAY_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 3 * 3600.0, 6 * 3600.0, 12 * 3600.0, 86400.0,
                 2 * 86400.0, 7 * 86400.0)
_MIX = np.uint64(0x9E3779B97F4A7C15)
ROW_BYTES = 8 + 4 + 8 + 8 + 8 + 1  # key, version code, score, prediction, time, state
EARLY_ROW_BYTES = 8 + 8 + 8 + 8 + 8 + 1  # key, number, class-key hash, label time, arrival time, state
EMPTY, PENDING, LABELLED = 0, 1, 2
WAITING = 1  # an early label's state
LOAD = 2  # the id index is at most half full


class FeedbackError(ValueError):
    """A feedback body that is not JSON of the documented shape (HTTP 400)."""


def id_keys(namespace: str, ids: Sequence[str]) -> U:
    """64-bit keys of ids in one namespace (0 and 1 are reserved by the index)."""
    keys = np.fromiter((hash((namespace, i)) for i in ids), dtype=np.int64, count=len(ids)).view(np.uint64)
    return np.where(keys < 2, keys + np.uint64(2), keys)


class IdIndex:
    """uint64 key -> int32 value; open addressing with linear probing, every operation over a whole batch."""

    def __init__(self, capacity: int) -> None:
        bits = max(4, math.ceil(math.log2(max(capacity, 8) * LOAD)))
        self.bits = bits
        self.mask = np.uint64((1 << bits) - 1)
        self.keys = np.zeros(1 << bits, dtype=np.uint64)  # 0 empty, 1 deleted
        self.vals = np.full(1 << bits, -1, dtype=np.int32)
        self.used = 0
        self.deleted = 0

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.vals.nbytes)

    def _home(self, keys: U) -> U:
        with np.errstate(over="ignore"):
            out: U = (keys * _MIX) >> np.uint64(64 - self.bits)
        return out

    def find(self, keys: U) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(values, table positions) of the keys; -1 where absent."""
        n = len(keys)
        vals = np.full(n, -1, dtype=np.int64)
        where = np.full(n, -1, dtype=np.int64)
        pos = self._home(keys)
        active = np.arange(n)
        while active.size:
            p = pos[active]
            k = self.keys[p]
            hit = k == keys[active]
            vals[active[hit]] = self.vals[p[hit]]
            where[active[hit]] = p[hit].astype(np.int64)
            more = ~hit & (k != 0)
            active = active[more]
            pos[active] = (p[more] + np.uint64(1)) & self.mask
        return vals, where

    def remove_at(self, where: npt.NDArray[np.int64]) -> None:
        where = where[where >= 0]
        self.keys[where] = 1
        self.vals[where] = -1
        self.used -= len(where)
        self.deleted += len(where)

    def insert(self, keys: U, vals: npt.NDArray[np.int64]) -> None:
        """Insert keys that are not in the index (the caller removed them first), distinct among themselves."""
        if (self.used + self.deleted + len(keys)) * LOAD > len(self.keys):
            self._rebuild(len(keys))
        pos = self._home(keys)
        active = np.arange(len(keys))
        placed = np.zeros(len(keys), dtype=bool)
        while active.size:
            p = pos[active]
            free = self.keys[p] <= 1
            if free.any():
                slots, first = np.unique(p[free], return_index=True)
                winners = active[free][first]
                self.deleted -= int(np.count_nonzero(self.keys[slots] == 1))
                self.keys[slots] = keys[winners]
                self.vals[slots] = vals[winners]
                placed[winners] = True
                active = active[~placed[active]]
            pos[active] = (pos[active] + np.uint64(1)) & self.mask
        self.used += len(keys)

    def _rebuild(self, incoming: int) -> None:
        live = self.keys > 1
        keys, vals = self.keys[live], self.vals[live].astype(np.int64)
        while (len(keys) + incoming) * LOAD > (1 << self.bits):  # grow (the ring bounds how far)
            self.bits += 1
        self.mask = np.uint64((1 << self.bits) - 1)
        self.keys = np.zeros(1 << self.bits, dtype=np.uint64)
        self.vals = np.full(1 << self.bits, -1, dtype=np.int32)
        self.used = self.deleted = 0
        self.insert(keys, vals)


class PendingStore:
    """Ring of predictions waiting for labels (see the module doc)."""

    def __init__(self, capacity: int, max_age: float) -> None:
        self.capacity = capacity
        self.max_age = max_age
        self.key = np.zeros(capacity, dtype=np.uint64)
        self.version = np.full(capacity, -1, dtype=np.int32)
        self.score = np.full(capacity, np.nan)
        self.pred = np.full(capacity, np.nan)
        self.ts = np.zeros(capacity)
        self.state = np.zeros(capacity, dtype=np.uint8)
        self.index = IdIndex(capacity)  # full size up front: no rebuild to grow
        self.head = 0
        self.evicted = 0  # pending rows overwritten before a label came

    @property
    def nbytes(self) -> int:
        return self.capacity * ROW_BYTES + self.index.nbytes

    def pending(self, now: float) -> int:
        return int(np.count_nonzero((self.state == PENDING) & (self.ts >= now - self.max_age)))

    def add(self, keys: U, version: int, score: F, pred: F, ts: F) -> None:
        """Predictions waiting for their labels; ``ts``: each one's time."""
        if len(keys) > self.capacity:
            keys, score, pred, ts = (keys[-self.capacity:], score[-self.capacity:], pred[-self.capacity:],
                                     ts[-self.capacity:])
        # one row per id: the last of the batch wins, and a repeated id replaces its earlier prediction
        _, last = np.unique(keys[::-1], return_index=True) if len(keys) > 1 else (None, keys)
        if len(last) != len(keys):
            keep = np.sort(len(keys) - 1 - last)
            keys, score, pred, ts = keys[keep], score[keep], pred[keep], ts[keep]
        slots, where = self.index.find(keys)
        old = slots >= 0
        self.state[slots[old]] = EMPTY
        self.index.remove_at(where[old])
        n = len(keys)
        idx = (self.head + np.arange(n)) % self.capacity
        live = self.state[idx] != EMPTY
        if live.any():  # overwrite the oldest rows
            self.evicted += int(np.count_nonzero(self.state[idx] == PENDING))
            _, w = self.index.find(self.key[idx[live]])
            self.index.remove_at(w)
        self.key[idx] = keys
        self.version[idx] = version
        self.score[idx] = score
        self.pred[idx] = pred
        self.ts[idx] = ts
        self.state[idx] = PENDING
        self.index.insert(keys, idx.astype(np.int64))
        self.head = int((self.head + n) % self.capacity)


class EarlyLabels:
    """Labels whose prediction was not seen yet, in arrival order (see the module doc).

    A ring of ``capacity`` labels with an id index, preallocated like the pending store: the oldest label
    is overwritten when the ring is full (reason ``capacity``), and labels that arrived more than
    ``max_age`` seconds ago give up (reason ``age``; checked from the oldest end, so in arrival order).
    Capacity 0 keeps no early label: a label without its prediction is unmatched at once.
    """

    CHUNK = 4096  # labels looked at per step when expiring from the oldest end

    def __init__(self, capacity: int, max_age: float) -> None:
        self.capacity = max(0, capacity)
        self.max_age = max_age
        n = max(1, self.capacity)
        self.key = np.zeros(n, dtype=np.uint64)
        self.num = np.full(n, np.nan)  # the label as a number (NaN: not an int or a float)
        self.cat = np.zeros(n, dtype=np.uint64)  # hash of its class key
        self.ts = np.zeros(n)  # the label's time
        self.arrived = np.zeros(n)  # when it came (the exporter's clock)
        self.state = np.zeros(n, dtype=np.uint8)
        self.index = IdIndex(n)
        self.head = 0  # next slot written
        self.size = 0  # slots from the oldest live one up to head (holes of taken labels included)
        self.waiting = 0
        self.joined = 0  # joined when their prediction came
        self.given_up = dict.fromkeys(FEEDBACK_EARLY_REASONS, 0)

    @property
    def nbytes(self) -> int:
        return len(self.key) * EARLY_ROW_BYTES + self.index.nbytes

    def find(self, keys: U) -> npt.NDArray[np.bool_]:
        """Which keys have a label waiting."""
        if not self.waiting:
            return np.zeros(len(keys), dtype=bool)
        slots, _ = self.index.find(keys)
        out: npt.NDArray[np.bool_] = slots >= 0
        return out

    def add(self, keys: U, num: F, cat: U, ts: F, now: float) -> int:
        """Keep labels (distinct keys, none waiting already); returns how many were dropped for room."""
        n = len(keys)
        dropped = 0
        if n > self.capacity:
            dropped = n - self.capacity
            keys, num, cat, ts = keys[dropped:], num[dropped:], cat[dropped:], ts[dropped:]
            n = self.capacity
        if n:
            idx = (self.head + np.arange(n)) % self.capacity
            live = idx[self.state[idx] == WAITING]
            if len(live):  # overwrite the oldest labels
                _, where = self.index.find(self.key[live])
                self.index.remove_at(where)
                dropped += len(live)
                self.waiting -= len(live)
            self.key[idx], self.num[idx], self.cat[idx], self.ts[idx] = keys, num, cat, ts
            self.arrived[idx] = now
            self.state[idx] = WAITING
            self.index.insert(keys, idx.astype(np.int64))
            self.head = int((self.head + n) % self.capacity)
            self.size = min(self.capacity, self.size + n)
            self.waiting += n
        self.given_up["capacity"] += dropped
        return dropped

    def expire(self, now: float) -> int:
        """Gives up the labels that arrived before ``now - max_age``; returns how many."""
        cutoff = now - self.max_age
        gone = 0
        while self.size:
            tail = (self.head - self.size) % self.capacity
            if self.state[tail] == WAITING and self.arrived[tail] >= cutoff:
                break
            idx = (tail + np.arange(min(self.size, self.CHUNK))) % self.capacity
            keep = (self.state[idx] == WAITING) & (self.arrived[idx] >= cutoff)
            stop = int(np.argmax(keep)) if keep.any() else len(idx)
            old = idx[:stop][self.state[idx[:stop]] == WAITING]
            if len(old):
                _, where = self.index.find(self.key[old])
                self.index.remove_at(where)
                self.state[old] = EMPTY
                gone += len(old)
            self.size -= stop
        self.waiting -= gone
        self.given_up["age"] += gone
        return gone

    def take(self, keys: U) -> tuple[I64, F, U, F]:
        """(positions in ``keys``, numbers, class-key hashes, times) of the waiting labels of distinct
        ``keys``; those labels leave the store."""
        slots, where = self.index.find(keys)
        hit = np.flatnonzero(slots >= 0)
        s = slots[hit]
        out = (hit, self.num[s], self.cat[s], self.ts[s])
        self.state[s] = EMPTY
        self.index.remove_at(where[hit])
        self.waiting -= len(hit)
        return out


def label_hashes(labels: Sequence[Any]) -> U:
    """64-bit hashes of the labels' class keys (modelops.drift.stats.category_key; "" for missing)."""
    keys = category_keys(labels)
    uniq, inverse = np.unique(keys, return_inverse=True)
    hashes = np.fromiter((hash(str(k)) for k in uniq.tolist()), dtype=np.int64, count=len(uniq)).view(np.uint64)
    out: U = hashes[inverse.reshape(-1)]
    return out


class Ring:
    """Newest rows of float columns, each with a time; the live rows are the newest ``rows`` within ``age``."""

    def __init__(self, rows: int, age: float, columns: int) -> None:
        self.rows, self.age = rows, age
        self.data = np.full((rows, columns), np.nan)
        self.ts = np.zeros(rows)
        self.head = 0
        self.count = 0
        self.generation = 0

    def add(self, block: F, ts: F) -> None:
        n = len(block)
        if n == 0:
            return
        if n > self.rows:
            block, ts, n = block[-self.rows:], ts[-self.rows:], self.rows
        idx = (self.head + np.arange(n)) % self.rows
        self.data[idx] = block
        self.ts[idx] = ts
        self.head = int((self.head + n) % self.rows)
        self.count = min(self.rows, self.count + n)
        self.generation += 1

    def live(self, now: float) -> F:
        first = (self.head - self.count) % self.rows
        order = (first + np.arange(self.count)) % self.rows
        keep = self.ts[order] >= now - self.age
        out: F = self.data[order[keep]]
        return out


@dataclass
class VersionQuality:
    """Labels and predictions of one model version."""

    key: tuple[str, str, str]  # (namespace, model, version)
    task: str
    classes: list[str]  # class keys (category_key), positive last for binary
    positive: str | None
    calibration: dict[str, Any] | None
    joined: Ring  # columns: score, prediction, label
    served: Ring  # columns: score, prediction (the estimation window of a classifier)
    #: a multi-class classifier with a calibrator (``isotonic_ovr``): the served class probabilities, one column
    #: per class in the order of ``classes``, rows as in ``served`` (its multi-class CBPE window)
    proba: Ring | None = None
    numeric: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def binary(self) -> bool:
        return self.task == "classification" and len(self.classes) == 2


def _class_sort(key: str) -> tuple[int, float, str]:
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def version_quality(key: tuple[str, str, str], profile: Mapping[str, Any], rows: int, age: float) -> VersionQuality:
    task = str(profile.get("task", "regression"))
    cal = estimate.check(profile.get(CALIBRATION_KEY))
    classes: list[str] = []
    positive = None
    multiclass = False
    if task == "classification":
        if cal is not None and cal.get("kind") == "classification":
            classes = [k for k in (category_key(c) for c in cal.get("classes", [])) if k is not None]
            positive = category_key(cal.get("positive_class"))
        if not classes:
            pred = profile.get("prediction") or {}
            classes = sorted((str(c) for c in (pred.get("categories") or {})), key=_class_sort)
        if len(classes) == 2 and positive is None:
            positive = classes[1]
        # multi-class CBPE: one calibrator per class, in the order of the model's probability columns
        multiclass = cal is not None and cal.get("method") == estimate.MULTICLASS_METHOD and len(classes) >= 3 \
            and len(classes) == len(cal.get("per_class") or [])
        if cal is not None and not multiclass and (cal.get("kind") != "classification" or positive not in classes):
            cal = None
    elif cal is not None and cal.get("kind") != "regression":
        cal = None
    return VersionQuality(key, task, classes, positive, cal, Ring(rows, age, 3), Ring(rows, age, 2),
                          numeric=list(cal.get("features", [])) if cal and task == "regression" else [],
                          proba=Ring(rows, age, len(classes)) if multiclass else None)


def parse_time(value: Any) -> float | None:
    """Unix seconds or RFC 3339; None when absent; ValueError when unreadable."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("ts must be unix seconds or RFC 3339, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("ts must be finite")
        return float(value)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    raise ValueError("ts must be unix seconds or RFC 3339")


@dataclass
class Labels:
    """A parsed feedback batch: ids, raw labels and label times (NaN: none given)."""

    ids: list[str]
    labels: list[Any]
    ts: F
    invalid: int = 0  # items refused while parsing (no id, bad ts, label not a scalar)


def parse_items(items: Sequence[Any]) -> Labels:
    ids: list[str] = []
    labels: list[Any] = []
    times: list[float] = []
    invalid = 0
    for item in items:
        if not isinstance(item, dict):
            invalid += 1
            continue
        ident, label = item.get("id"), item.get("label")
        if not isinstance(ident, str | int) or isinstance(ident, bool) or str(ident) == "" or (
                not isinstance(label, str | int | float | bool)):
            invalid += 1
            continue
        try:
            ts = parse_time(item.get("ts"))
        except (ValueError, TypeError, OverflowError):
            invalid += 1
            continue
        ids.append(str(ident))
        labels.append(label)
        times.append(math.nan if ts is None else ts)
    return Labels(ids, labels, np.asarray(times, dtype=float), invalid)


def feedback_items(body: Any) -> list[Any]:
    """The label items of a JSON body: one item, a list of them, or a structured CloudEvent of them."""
    if isinstance(body, dict) and "specversion" in body:
        return feedback_items(body.get("data"))
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list):
        return body
    raise FeedbackError('the feedback body must be {"id", "label", "ts"?}, a list of them, or a CloudEvent '
                        "whose data is one of those")


def _one_type(values: Sequence[Any], allowed: tuple[type, ...]) -> bool:
    """True when every value has the same type, one of ``allowed`` (numpy converts such lists faithfully)."""
    types = set(map(type, values))
    return len(types) == 1 and types.pop() in allowed


def numbers(values: Sequence[Any]) -> F:
    """Values as floats; NaN for anything that is not an int or a float (booleans and strings included)."""
    if _one_type(values, (int, float)):  # numpy would turn True into 1 in a mixed list: not here
        arr = np.asarray(values)
        if arr.ndim == 1 and arr.dtype.kind in "iuf":
            out: F = arr.astype(float)
            return out
    return np.fromiter((float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
                        for v in values), dtype=float, count=len(values))


def category_keys(values: Sequence[Any]) -> npt.NDArray[np.str_]:
    """modelops.drift.stats.category_key of every value ("" for missing), computed once per distinct value."""
    if _one_type(values, (int, float, str, bool)):
        arr = np.asarray(values)
        if arr.ndim == 1 and arr.dtype.kind in "iufbU":
            uniq, inverse = np.unique(arr, return_inverse=True)
            keys = np.asarray([category_key(v) or "" for v in uniq.tolist()] or [""], dtype=str)
            out: npt.NDArray[np.str_] = keys[inverse]
            return out
    return np.asarray([category_key(v) or "" for v in values], dtype=str)


def _label_codes(vq: VersionQuality, labels: Sequence[Any]) -> F:
    """Labels as floats: class code (binary: 1 positive) or value; NaN where of the wrong type."""
    if vq.task == "regression":
        return numbers(labels)
    return _class_codes(vq, category_keys(labels))


def _hashed_label_codes(vq: VersionQuality, num: F, cat: U) -> F:
    """``_label_codes`` of labels kept as (number, class-key hash): the same codes for the same labels."""
    if vq.task == "regression":
        return num
    out = np.full(len(cat), np.nan)
    if vq.binary:
        negative = vq.classes[0] if vq.positive == vq.classes[1] else vq.classes[1]
        out[cat == _key_hash(negative)] = 0.0
        out[cat == _key_hash(str(vq.positive))] = 1.0
        return out
    for i, c in enumerate(vq.classes):
        out[cat == _key_hash(c)] = float(i)
    return out


def _key_hash(key: str) -> np.uint64:
    """label_hashes' hash of one class key."""
    out: np.uint64 = np.array([hash(key)], dtype=np.int64).view(np.uint64)[0]
    return out


def _class_codes(vq: VersionQuality, keys: npt.NDArray[np.str_]) -> F:
    out = np.full(len(keys), np.nan)
    if vq.binary:
        negative = vq.classes[0] if vq.positive == vq.classes[1] else vq.classes[1]
        out[keys == negative] = 0.0
        out[keys == vq.positive] = 1.0
        return out
    for i, c in enumerate(vq.classes):
        out[keys == c] = float(i)
    return out


class Feedback:
    """Pending predictions, label join and quality windows of every model version (thread-safe)."""

    def __init__(self, *, max_pending: int = 1_000_000, max_age: float = 3 * 86400.0, window_rows: int = 10_000,
                 window_age: float = 86400.0, min_labels: int = 100, min_rows: int = 200, max_versions: int = 1000,
                 max_early: int = 100_000, max_early_age: float = 600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = PendingStore(max_pending, max_age)
        self.early = EarlyLabels(max_early, max_early_age)
        self.window_rows, self.window_age = window_rows, window_age
        self.min_labels, self.min_rows = min_labels, min_rows
        self.max_versions = max_versions
        self.clock = clock
        self.lock = threading.Lock()
        self.codes: dict[tuple[str, str, str], int] = {}
        self.versions: OrderedDict[int, VersionQuality] = OrderedDict()
        self.next_code = 0
        self.outcomes = dict.fromkeys(FEEDBACK_OUTCOMES, 0)
        self.delay_buckets = [0] * (len(DELAY_BUCKETS) + 1)
        self.delay_sum = 0.0

    # --- predictions in -----------------------------------------------------------------------------

    def _version(self, key: tuple[str, str, str], profile: Mapping[str, Any]) -> tuple[int, VersionQuality]:
        code = self.codes.get(key)
        if code is not None and code in self.versions:
            self.versions.move_to_end(code)
            return code, self.versions[code]
        code = self.next_code
        self.next_code += 1
        self.codes[key] = code
        self.versions[code] = vq = version_quality(key, profile, self.window_rows, self.window_age)
        while len(self.versions) > self.max_versions:
            _, old = self.versions.popitem(last=False)
            self.codes.pop(old.key, None)
        return code, vq

    def served_codes(self, key: tuple[str, str, str], profile: Mapping[str, Any], predictions: Sequence[Any],
                     ) -> tuple[VersionQuality, F]:
        with self.lock:
            _, vq = self._version(key, profile)
        if vq.task == "regression":
            return vq, numbers(predictions)
        return vq, _class_codes(vq, category_keys(predictions))

    def record(self, key: tuple[str, str, str], profile: Mapping[str, Any], event_id: str | None,
               predictions: Sequence[Any], probabilities: Any = None, ids: Sequence[str] | None = None,
               ts: float | F | None = None) -> None:
        """Predictions of one response: ``event_id`` names them (``ID`` or ``ID#i``), or ``ids`` one each.

        ``probabilities``: the response's [N, C] class probabilities when it carried them. ``ts``: when the
        inference happened (the logged event's ``ce-time``), one for all rows or one per row (NaN: unknown);
        None or unknown: now. It is clamped to ``[now - max_age, now]`` (a sender's clock may run ahead), and
        a label's delay is measured from it: a label that came before the exporter received its prediction
        still gets the delay it had in the world, not 0.
        """
        n = len(predictions)
        if n == 0:
            return
        vq, pred = self.served_codes(key, profile, predictions)
        score = np.full(n, np.nan)
        proba = None
        if vq.task == "classification" and vq.proba is not None:
            proba = class_probabilities(probabilities, n, len(vq.classes))
            # predictions that are not class values (e.g. argmax indices): the most probable class
            fill = np.isnan(pred) & np.isfinite(proba).all(axis=1)
            pred[fill] = proba[fill].argmax(axis=1)
        elif vq.task == "classification":
            score = positive_scores(vq, probabilities, n, pred)
            # predictions that are not class values (e.g. argmax indices): the class of the higher probability
            fill = np.isnan(pred) & np.isfinite(score)
            pred[fill] = (score[fill] > 0.5) if vq.positive == vq.classes[1] else (score[fill] >= 0.5)
        elif vq.task == "regression":
            score = pred
        now = self.clock()
        when = np.full(n, now) if ts is None else np.broadcast_to(np.asarray(ts, dtype=float), (n,)).copy()
        when[~np.isfinite(when)] = now
        np.clip(when, now - self.store.max_age, now, out=when)
        if ids is None and event_id:
            ids = [event_id] if n == 1 else [f"{event_id}#{i}" for i in range(n)]
        ns = key[0]
        with self.lock:
            code, vq = self._version(key, profile)
            vq.served.add(np.column_stack([score, pred]), when)
            if vq.proba is not None:
                vq.proba.add(proba if proba is not None else np.full((n, len(vq.classes)), np.nan), when)
            if ids is not None and len(ids) == n:
                ok = ~np.isnan(pred)
                keys = id_keys(ns, ids)
                self.store.add(keys[ok], code, score[ok], pred[ok], when[ok])
                if self.early.waiting:
                    self._expire_early(now)
                    waiting = self.early.find(keys[ok])
                    if waiting.any():
                        self._join_early(keys[ok][waiting], now)

    def _join_early(self, keys: U, now: float) -> None:
        """Labels that came before these just-recorded predictions join them now. Caller holds the lock."""
        keys = np.unique(keys)
        slots, _ = self.store.index.find(keys)
        keys, slots = keys[slots >= 0], slots[slots >= 0]
        hit, num, cat, label_ts = self.early.take(keys)
        if not len(hit):
            return
        counts = dict.fromkeys(FEEDBACK_OUTCOMES, 0)
        slots = slots[hit]
        self._label(slots, self.store.version[slots].astype(np.int64),
                    lambda vq, rows: _hashed_label_codes(vq, num[rows], cat[rows]), label_ts, counts, now)
        self.early.joined += counts["joined"]
        for k, v in counts.items():
            self.outcomes[k] += v

    def _expire_early(self, now: float) -> None:
        self.outcomes["unmatched"] += self.early.expire(now)

    # --- labels in ----------------------------------------------------------------------------------

    def submit(self, namespace: str, body: Any) -> dict[str, int]:
        """Labels of one POST body (already JSON-decoded). FeedbackError for a body of the wrong shape."""
        parsed = parse_items(feedback_items(body))
        return self.join(namespace, parsed)

    def join(self, namespace: str, batch: Labels) -> dict[str, int]:
        """Labels in: the answer counts each outcome known now, and the labels kept ``early``."""
        counts = dict.fromkeys(FEEDBACK_OUTCOMES, 0)
        counts["invalid"] = batch.invalid
        counts["early"] = 0
        n = len(batch.ids)
        now = self.clock()
        if n:
            keys = id_keys(namespace, batch.ids)
            label_ts = np.where(np.isnan(batch.ts), now, batch.ts)
        with self.lock:
            self._expire_early(now)
            if n:
                self._join(keys, batch.labels, label_ts, counts, now)
            for k in FEEDBACK_OUTCOMES:
                self.outcomes[k] += counts[k]
        return counts

    def _join(self, keys: U, labels: Sequence[Any], label_ts: F, counts: dict[str, int], now: float) -> None:
        st = self.store
        n = len(keys)
        # the first of repeated ids in one batch wins; the rest are duplicates
        _, first = np.unique(keys, return_index=True)
        repeat = np.ones(n, dtype=bool)
        repeat[first] = False
        slots, _ = st.index.find(keys)
        found = (slots >= 0) & ~repeat
        s = np.where(found, slots, 0)
        state = np.where(found, st.state[s], EMPTY)
        version = np.where(found, st.version[s], -1)
        known = found & np.isin(version, np.fromiter(self.versions, dtype=np.int64, count=len(self.versions)))
        counts["duplicate"] += int(np.count_nonzero(repeat)) + int(np.count_nonzero(known & (state == LABELLED)))
        counts["unmatched"] += int(np.count_nonzero(found & ~known))
        self._keep_early(np.flatnonzero(~repeat & ~found), keys, labels, label_ts, counts, now)
        rows = np.flatnonzero(known & (state == PENDING))
        if len(rows):
            self._label(slots[rows], version[rows], lambda vq, r: _label_codes(vq, [labels[i] for i in rows[r]]),
                        label_ts[rows], counts, now)

    def _keep_early(self, rows: I64, keys: U, labels: Sequence[Any], label_ts: F, counts: dict[str, int],
                    now: float) -> None:
        """Labels of ids without a prediction (yet) wait in the early store; one already waiting: duplicate."""
        if not len(rows):
            return
        if not self.early.capacity:
            counts["unmatched"] += len(rows)
            return
        waiting = self.early.find(keys[rows])
        counts["duplicate"] += int(np.count_nonzero(waiting))
        rows = rows[~waiting]
        if not len(rows):
            return
        kept = [labels[i] for i in rows]
        # labels overwritten to make room (the oldest, usually of earlier batches) are unmatched now
        self.outcomes["unmatched"] += self.early.add(keys[rows], numbers(kept), label_hashes(kept), label_ts[rows],
                                                     now)
        counts["early"] += len(rows)

    def _label(self, slots: I64, version: I64, codes: Callable[[VersionQuality, I64], F], label_ts: F,
               counts: dict[str, int], now: float) -> None:
        """Labels join their pending predictions (``slots``; ``version`` tracked). ``codes(vq, r)``: the codes of
        labels ``r`` (positions in these arrays) for version ``vq``; NaN where of the wrong type."""
        st = self.store
        delay = label_ts - st.ts[slots]
        expired = delay > st.max_age
        counts["expired"] += int(np.count_nonzero(expired))
        rows = np.flatnonzero(~expired)
        for code in np.unique(version[rows]):
            vq = self.versions[int(code)]
            mine = rows[version[rows] == code]
            y = codes(vq, mine)
            bad = np.isnan(y)
            counts["invalid"] += int(np.count_nonzero(bad))
            mine, y = mine[~bad], y[~bad]
            if not len(mine):
                continue
            slot = slots[mine]
            st.state[slot] = LABELLED
            vq.joined.add(np.column_stack([st.score[slot], st.pred[slot], y]), np.full(len(mine), now))
            counts["joined"] += len(mine)
            d = np.maximum(delay[mine], 0.0)
            self.delay_sum += float(d.sum())
            hist = np.bincount(np.searchsorted(DELAY_BUCKETS, d, side="left"), minlength=len(DELAY_BUCKETS) + 1)
            self.delay_buckets = [a + int(b) for a, b in zip(self.delay_buckets, hist, strict=True)]

    # --- quality out --------------------------------------------------------------------------------

    def state(self, key: tuple[str, str, str]) -> VersionQuality | None:
        with self.lock:
            code = self.codes.get(key)
            return self.versions.get(code) if code is not None else None

    def joined_rows(self, key: tuple[str, str, str], now: float | None = None) -> F:
        """The live joined rows (score, prediction, label) of a version: what the realised metrics use."""
        vq = self.state(key)
        if vq is None:
            return np.empty((0, 3))
        with self.lock:
            return vq.joined.live(self.clock() if now is None else now)

    def quality(self, key: tuple[str, str, str], numeric: F | None = None, predictions: F | None = None,
                now: float | None = None) -> Quality | None:
        """Realised and estimated quality of a version now; None when it has no quality state.

        For a regressor the estimation window is the drift window's ``numeric`` block (rows x the
        calibrator's features) and its ``predictions``, given by the caller.
        """
        vq = self.state(key)
        if vq is None:
            return None
        now = self.clock() if now is None else now
        with self.lock:
            joined = vq.joined.live(now)
            served = vq.served.live(now) if vq.task == "classification" else None
            proba = vq.proba.live(now) if vq.proba is not None else None
        q = Quality(joined=len(joined))
        if vq.task == "classification":
            y, pred, score = joined[:, 2], joined[:, 1], joined[:, 0]
            if len(joined) >= self.min_labels:
                q.realised = quality.classification_metrics(
                    y, pred, score if np.isfinite(score).all() else None, binary=vq.binary)
            assert served is not None
            q.window_rows = len(served)
            if vq.calibration is not None and vq.binary and len(served) >= self.min_rows:
                ok = np.isfinite(served[:, 0]) & np.isfinite(served[:, 1])
                if ok.all():
                    q.estimated = estimate.cbpe(vq.calibration, served[:, 0], served[:, 1])
            elif vq.calibration is not None and proba is not None and len(served) >= self.min_rows:
                # multi-class CBPE on the rows that carried every class probability and a served class
                ok = np.isfinite(proba).all(axis=1) & np.isfinite(served[:, 1])
                if np.count_nonzero(ok) >= self.min_rows:
                    q.estimated = estimate.cbpe_multiclass(vq.calibration, proba[ok],
                                                           served[ok, 1].astype(np.int64))
        else:
            if len(joined) >= self.min_labels:
                q.realised = quality.regression_metrics(joined[:, 2], joined[:, 1])
            if predictions is not None and numeric is not None:
                ok = np.isfinite(predictions)
                q.window_rows = int(np.count_nonzero(ok))
                if vq.calibration is not None and q.window_rows >= self.min_rows:
                    q.estimated = estimate.dle(vq.calibration, numeric[ok], predictions[ok])
        q.abs_error = {m: abs(v - q.realised[m]) for m, v in q.estimated.items() if m in q.realised}
        return q

    def pending_gauges(self) -> tuple[int, int]:
        now = self.clock()
        with self.lock:
            return self.store.pending(now), self.store.nbytes

    def early_gauges(self) -> tuple[int, int, int, dict[str, int]]:
        """(early labels waiting, their store's bytes, joined late so far, given up so far by reason)."""
        now = self.clock()
        with self.lock:
            self._expire_early(now)
            e = self.early
            return e.waiting, e.nbytes, e.joined, dict(e.given_up)


@dataclass
class Quality:
    joined: int
    window_rows: int = 0
    realised: dict[str, float] = field(default_factory=dict)
    estimated: dict[str, float] = field(default_factory=dict)
    abs_error: dict[str, float] = field(default_factory=dict)


def positive_scores(vq: VersionQuality, probabilities: Any, n: int, pred: F) -> F:
    """Positive-class probability per row from a response's [N, C] probabilities (NaN when absent)."""
    out = np.full(n, np.nan)
    if probabilities is None or not vq.binary:
        return out
    try:
        p = np.asarray(probabilities, dtype=float)
    except (TypeError, ValueError):
        return out
    if p.ndim == 2 and p.shape == (n, 2):
        return np.ascontiguousarray(p[:, 1 if vq.positive == vq.classes[1] else 0])
    return out


def class_probabilities(probabilities: Any, n: int, classes: int) -> F:
    """A response's [N, C] class probabilities as floats (NaN rows when absent or of another shape)."""
    out = np.full((n, classes), np.nan)
    if probabilities is None:
        return out
    try:
        p = np.asarray(probabilities, dtype=float)
    except (TypeError, ValueError):
        return out
    if p.shape == (n, classes):
        return p
    return out


def response_probabilities(payload: Any) -> Any:
    """The [N, C] class probabilities a response carries, if any (V1 ``probabilities`` or rows of
    probabilities in ``predictions``; V2 output ``predict_proba``); else None."""
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("probabilities"), list):
        return payload["probabilities"]
    preds = payload.get("predictions")
    if isinstance(preds, list) and preds and isinstance(preds[0], list):
        return preds
    outputs = payload.get("outputs")
    if isinstance(outputs, list):
        for t in outputs:
            if isinstance(t, dict) and t.get("name") == "predict_proba" and isinstance(t.get("shape"), list) \
                    and len(t["shape"]) == 2 and isinstance(t.get("data"), list):
                try:
                    return np.asarray(t["data"], dtype=float).reshape(t["shape"])
                except (TypeError, ValueError):
                    return None
    return None


def served_labels(payload: Any, predictions: Sequence[Any]) -> tuple[Sequence[Any], Any]:
    """(served classes or values, [N, C] probabilities or None) of a response or an /ingest body.

    When the predictions themselves are probability rows, the decoded predictions are argmax indices, not
    classes: the classes then come from the probabilities (see ``Feedback.record``).
    """
    proba = response_probabilities(payload)
    preds = payload.get("predictions") if isinstance(payload, dict) else None
    if isinstance(preds, list) and preds and isinstance(preds[0], list):
        return [None] * len(predictions), proba
    return predictions, proba
