"""The exporter's state and behaviour, without the web framework: events in, drift evaluations out.

One lock guards windows, join table and counters; handlers hold it for microseconds (decoding and
reference downloads happen outside it), evaluations hold it only to copy the window's live rows.

Windows are keyed by (namespace, model) (issue 16, M7): two teams' InferenceServices named `churn` are two
windows and two sets of series (label `model_namespace`). The namespace of an event is the one its sender
authenticated for (see `modelops.drift.auth`), else its `ce-namespace` attribute.

Sharding (issue 19): with ``shards`` > 1 this process owns only the (namespace, model) keys that
`modelops.formats.drift_url.shard_of` assigns to ``shard_id`` (the operator writes each InferenceService's
logger URL to that shard) and refuses others with 421 ``misdirected``, so no model is counted by two shards.
With ``shards_file`` the count is re-read while running: when it changes, the windows this shard no longer
owns are dropped at once (their new owner starts filling its window when the agent gets its new URL).

Sender-chosen names cannot evict or lock out real ones (issue 16, M6): each namespace may track at most
`max_models_per_namespace` models, so a flood from one namespace only ever competes with itself; when a
cap is reached, the least recently updated model (or version) is dropped only if it has been idle for
`idle_seconds`, otherwise the newcomer is refused. A model or version that is receiving traffic is never
evicted by names that merely appear.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from modelops.drift import events as ev
from modelops.drift import feedback as fb
from modelops.drift.reference import ReferenceStore
from modelops.drift.stats import DriftConfig, WindowDrift, window_drift
from modelops.drift.window import Batch, JoinTable, Layout, Pending, Window
from modelops.formats.drift_url import shard_of

log = logging.getLogger(__name__)

# Upper bounds (seconds) of the evaluation-duration histogram buckets.
EVALUATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class ExporterConfig:
    window_rows: int = 10_000  # rows per model version (the ring buffer size)
    window_age: float = 3600.0  # seconds; older rows leave the window
    join_timeout: float = 5.0  # seconds a request waits for its response (0: do not wait)
    max_pending: int = 10_000  # join table entries
    max_pending_bytes: int = 64 << 20
    max_models: int = 50  # distinct (namespace, model) tracked in all; more are refused (too_many_models)
    max_models_per_namespace: int = 10  # (namespace, model) per namespace
    max_versions: int = 5  # versions per model; the least recently updated idle one is dropped
    idle_seconds: float = 600.0  # a model or version without rows for this long may give way to a new one
    max_features: int = 100  # per-feature metric series per model version; more are counted, not exported
    max_event_rows: int = 10_000  # rows in one event
    max_body_bytes: int = 16 << 20
    drift: DriftConfig = field(default_factory=DriftConfig)
    # sharding (issue 19): this exporter owns the (namespace, model) keys that
    # modelops.formats.drift_url.shard_of gives `shard_id` among `shards`, and refuses the rest (misdirected).
    shard_id: int = 0
    shards: int = 1
    shards_file: str | None = None  # when set, the shard count is read from it (re-read every 5 s)
    # label feedback and live quality (issue 17; modelops.drift.feedback)
    feedback_max_pending: int = 1_000_000  # predictions waiting for a label (a ring: the oldest go first)
    feedback_max_age: float = 3 * 86400.0  # seconds a prediction waits for its label; later labels: expired
    # labels that come before their prediction (the agent logs it asynchronously) wait for it: at most this
    # many (the oldest give way), at most this many seconds; then they count as unmatched
    feedback_max_early: int = 100_000
    feedback_max_early_age: float = 600.0
    quality_window_rows: int = 10_000  # joined rows per model version in the realised-quality window
    quality_window_age: float = 86400.0  # seconds a joined row stays in that window (from its join)
    quality_min_labels: int = 100  # joined rows before realised quality is exported


Key = tuple[str, str]  # (namespace, model); namespace "" when the sender named none


@dataclass
class Evaluation:
    model: str
    version: str
    reference: str
    result: WindowDrift
    seconds: float
    evaluated_at: float  # wall clock
    namespace: str = ""


class Tracked:
    """One model version: its reference, its window, its latest evaluation."""

    def __init__(self, model: str, version: str, profile: dict[str, Any], source: str,
                 cfg: ExporterConfig, namespace: str = "") -> None:
        self.namespace = namespace
        self.model = model
        self.version = version
        self.profile = profile
        self.source = source
        self.layout = Layout(profile)
        self.window = Window(self.layout, cfg.window_rows, cfg.window_age)
        self.evaluation: Evaluation | None = None
        self.evaluated_generation = -1


class Exporter:
    def __init__(self, references: ReferenceStore, cfg: ExporterConfig | None = None) -> None:
        self.cfg = cfg or ExporterConfig()
        self.references = references
        self.lock = threading.RLock()
        self.models: OrderedDict[Key, OrderedDict[str, Tracked]] = OrderedDict()
        self._layouts: dict[str, Layout] = {}
        self.join = JoinTable(self.cfg.join_timeout, self.cfg.max_pending, self.cfg.max_pending_bytes,
                              self._unmatched)
        self.feedback = fb.Feedback(max_pending=self.cfg.feedback_max_pending, max_age=self.cfg.feedback_max_age,
                                    window_rows=self.cfg.quality_window_rows,
                                    window_age=self.cfg.quality_window_age, min_labels=self.cfg.quality_min_labels,
                                    min_rows=self.cfg.drift.min_rows,
                                    max_versions=self.cfg.max_models * self.cfg.max_versions,
                                    max_early=self.cfg.feedback_max_early,
                                    max_early_age=self.cfg.feedback_max_early_age)
        # counters (exported by the metrics collector; label values come from closed sets)
        self.events_received: Counter[str] = Counter()  # kind: request, response, batch
        self.events_rejected: Counter[str] = Counter()  # reason: events.REASONS
        self.unmatched: Counter[str] = Counter()  # side: request, response
        self.truncated: Counter[str] = Counter()  # what: features, versions, pending
        self.rows_ingested: Counter[tuple[str, str, str]] = Counter()  # (namespace, model, version)
        self.evaluation_buckets = [0] * (len(EVALUATION_BUCKETS) + 1)  # last: +Inf
        self.evaluation_sum = 0.0
        self.shards = self.cfg.shards
        self.resharded_models = 0  # windows dropped because another shard owns them now
        self._shards_read_at = float("-inf")
        self._owner: dict[Key, bool] = {}  # ownership cache for the current shard count
        if self.cfg.shards_file:
            self.refresh_shards(time.monotonic(), force=True)

    # --- sharding ---------------------------------------------------------------------------------------

    SHARDS_FILE_PERIOD = 5.0

    def refresh_shards(self, now: float, force: bool = False) -> None:
        """Re-read the shard count from cfg.shards_file (at most every 5 s); drop windows owned elsewhere."""
        path = self.cfg.shards_file
        if path is None or (not force and now - self._shards_read_at < self.SHARDS_FILE_PERIOD):
            return
        self._shards_read_at = now
        try:
            with open(path) as f:
                shards = int(f.read().strip())
            if shards < 1:
                raise ValueError(shards)
        except (OSError, ValueError) as exc:
            log.warning("shards file %s unreadable (%s): keeping %d shards", path, exc, self.shards)
            return
        if shards == self.shards:
            return
        with self.lock:
            log.info("shard %d: %d shards now (was %d)", self.cfg.shard_id, shards, self.shards)
            self.shards = shards
            self._owner.clear()
            for key in [k for k in self.models if not self.owns(k)]:
                for version in self.models.pop(key):
                    self.rows_ingested.pop((*key, version), None)
                self.resharded_models += 1
                log.info("model %s/%s: window dropped, shard %d owns it now", key[0], key[1],
                         shard_of(key[0], key[1], shards))

    def owns(self, key: Key) -> bool:
        if self.shards <= 1:
            return True
        owned = self._owner.get(key)
        if owned is None:
            if len(self._owner) > 4 * self.cfg.max_models + 1000:  # sender-chosen names: keep it bounded
                self._owner.clear()
            owned = self._owner[key] = shard_of(key[0], key[1], self.shards) == self.cfg.shard_id
        return owned

    #: a model this shard does not own re-reads the shards file first (at most this often): right after a
    #: reshard the new count may be younger than the periodic read, and the event is then this shard's
    MISDIRECTED_RECHECK = 0.25

    def _check_owner(self, key: Key, now: float) -> None:
        self.refresh_shards(now)
        if not self.owns(key) and now - self._shards_read_at >= self.MISDIRECTED_RECHECK:
            self.refresh_shards(now, force=True)
        if not self.owns(key):
            raise ev.EventError("misdirected", f"model {key[1]!r} of namespace {key[0]!r} belongs to drift exporter "
                                f"shard {shard_of(key[0], key[1], self.shards)} of {self.shards}, this is shard "
                                f"{self.cfg.shard_id}: the logger URL is stale (the operator rewrites it)")

    # --- reference and tracking -------------------------------------------------------------------------

    @staticmethod
    def _last_update(versions: Mapping[str, Tracked]) -> float:
        return max((t.window.last_update for t in versions.values()), default=float("-inf"))

    def _make_room(self, key: Key, now: float) -> None:
        """Room for a new (namespace, model), or EventError too_many_models. Caller holds the lock."""
        namespace, model = key
        for scope, cap in (([k for k in self.models if k[0] == namespace], self.cfg.max_models_per_namespace),
                           (list(self.models), self.cfg.max_models)):
            if len(scope) < cap:
                continue
            victim = min(scope, key=lambda k: self._last_update(self.models[k]))
            idle = now - self._last_update(self.models[victim])
            if idle < self.cfg.idle_seconds:
                where = f"namespace {namespace!r}" if cap == self.cfg.max_models_per_namespace else "all namespaces"
                raise ev.EventError("too_many_models", f"already tracking {len(scope)} models in {where} and "
                                    f"none has been idle for {self.cfg.idle_seconds:.0f}s; {model!r} is not tracked")
            self._drop_model(victim, f"idle for {idle:.0f}s, making room for {namespace}/{model}")

    def _drop_model(self, key: Key, why: str) -> None:
        for version in self.models.pop(key, {}):
            self.rows_ingested.pop((*key, version), None)
        self.truncated["models"] += 1
        log.info("model %s/%s: window dropped (%s)", key[0], key[1], why)

    def _reference(self, key: Key, version: str, now: float) -> tuple[dict[str, Any], str, Layout]:
        """(profile, source, layout) for events of this model version; raises EventError.

        Called without the lock: a reference may be downloaded from MLflow (issue 16, M6 A).
        """
        model = key[1]
        if not self.references.knows(model):
            raise ev.EventError("unknown_model", f"no reference profile for model {model!r}; start the "
                                f"exporter with --reference {model}=SOURCE (or a default --reference)")
        with self.lock:
            if key not in self.models:
                self._make_room(key, now)
        try:
            profile, source = self.references.get(model, version)
        except RuntimeError as exc:
            raise ev.EventError("reference_unavailable", str(exc)) from None
        with self.lock:
            layout = self._layouts.get(source)
            if layout is None:
                layout = self._layouts[source] = Layout(profile)
        return profile, source, layout

    def _layout_for(self, key: Key, version: str, now: float) -> Layout:
        return self._reference(key, version, now)[2]

    def _tracked(self, key: Key, version: str, now: float) -> Tracked:
        """The window of this model version. Caller holds the lock; the reference is already cached."""
        versions = self.models.get(key)
        if versions is not None and version in versions:
            versions.move_to_end(version)
            return versions[version]
        if key not in self.models:
            self._make_room(key, now)
        try:
            profile, source = self.references.get(key[1], version)
        except RuntimeError as exc:
            raise ev.EventError("reference_unavailable", str(exc)) from None
        versions = self.models.setdefault(key, OrderedDict())
        if len(versions) >= self.cfg.max_versions:
            old_version = min(versions, key=lambda v: versions[v].window.last_update)
            idle = now - versions[old_version].window.last_update
            self.truncated["versions"] += 1
            if idle < self.cfg.idle_seconds:
                raise ev.EventError("too_many_versions", f"model {key[1]!r} already has {len(versions)} versions "
                                    f"with recent rows (--max-versions); version {version!r} is not tracked")
            versions.pop(old_version)
            self.rows_ingested.pop((*key, old_version), None)
            log.info("model %s/%s: dropped the window of version %s (--max-versions %d)", key[0], key[1],
                     old_version, self.cfg.max_versions)
        tracked = Tracked(key[1], version, profile, source, self.cfg, namespace=key[0])
        self.truncated["features"] += max(0, len(tracked.layout.features) - self.cfg.max_features)
        versions[version] = tracked
        return tracked

    # --- ingestion --------------------------------------------------------------------------------------

    def reject(self, reason: str) -> None:
        with self.lock:
            self.events_rejected[reason] += 1

    def handle_http(self, headers: Mapping[str, str], body: bytes, namespace: str | None = None) -> dict[str, Any]:
        """One POST of CloudEvents. Raises EventError (already counted).

        `namespace`: the namespace the sender authenticated for; it overrides the events' ce-namespace.
        """
        try:
            if len(body) > self.cfg.max_body_bytes:
                raise ev.EventError("body_too_large", f"{len(body)} bytes; the limit is "
                                    f"{self.cfg.max_body_bytes} (--max-body-bytes)")
            events = ev.parse_http(headers, body)
            if namespace is not None:
                for event in events:
                    event.namespace = namespace
            if len(events) == 1:
                self.handle_event(events[0])
            else:
                self.handle_events(events)
            return {"accepted": len(events)}
        except ev.EventError as exc:
            self.reject(exc.reason)
            raise

    def handle_event(self, event: ev.LoggedEvent, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        key: Key = (event.namespace or "", event.model)
        with self.lock:
            self.events_received[event.kind] += 1
        self._check_owner(key, now)
        profile, _, layout = self._reference(key, event.version or ev.UNKNOWN_VERSION, now)
        # decode outside the lock: the expensive part
        if event.kind == "request":
            rows, cols = ev.request_arrays(event.payload, layout.features, self.cfg.max_event_rows)
            decoded: Any = layout.batch(rows, cols)
            nbytes = decoded.nbytes
        else:
            # the served predictions of this response, one per row, as an array (numeric, or object for
            # labels); with event.id, the version and `now` this is the join point's output for per-prediction
            # consumers (issue 17's label feedback hooks in here)
            served = ev.prediction_array(event.payload, layout.classification)
            decoded = layout.predictions(served)
            nbytes = int(decoded.nbytes) + 64
            # the prediction is known: it waits for its label by id (issue 17)
            self.feedback.record((key[0], key[1], event.version or ev.UNKNOWN_VERSION), profile, event.id,
                                 *fb.served_labels(event.payload, served.tolist()), ts=event.time)
        with self.lock:
            self.join.expire(now)
            self._join_decoded(key, event, decoded, nbytes, now)

    def _join_decoded(self, key: Key, event: ev.LoggedEvent, decoded: Any, nbytes: int, now: float) -> None:
        """One decoded side of an inference meets its partner (then both enter the window) or waits for it.
        Caller holds the lock."""
        if self.cfg.join_timeout <= 0 and event.kind == "request":
            self._ingest(key, event.version, decoded, now)
            return
        join_id = f"{key[0]}/{event.id}"  # ids of different namespaces never pair
        partner = self.join.pop(join_id)
        if partner is None or partner.model != event.model or partner.namespace != key[0] or (
                partner.request is not None if event.kind == "request" else partner.response is not None):
            if partner is not None:
                self._unmatched(partner, "evicted")
            side = Pending(model=event.model, arrived=now, version=event.version, nbytes=nbytes,
                           namespace=key[0])
            if event.kind == "request":
                side.request = decoded
            else:
                side.response = decoded
            self.join.put(join_id, side)
            return
        request = decoded if event.kind == "request" else partner.request
        response = decoded if event.kind == "response" else partner.response
        version = (event.version if event.kind == "response" else partner.version) or (
            partner.version if event.kind == "response" else event.version)
        request.predictions = response if len(response) == request.rows else None
        self._ingest(key, version, request, now)

    def handle_events(self, events: Sequence[ev.LoggedEvent], now: float | None = None) -> None:
        """The events of one POST (KServe's batched logger output, a CloudEvents batch), column-wise (issue 19).

        The same outcome as `handle_event` for each in turn, for a fraction of the work: the events of one
        model version and kind are decoded together (one block of rows, one array of predictions, one
        feedback record), a request and its response in the same batch pair without the join table, and
        each model version's joined rows enter its window with one append. A batch with an event that
        `handle_event` would refuse goes event by event, so that the events before it count as they would
        and the error names that event.
        """
        now = time.monotonic() if now is None else now
        groups = None
        if self.cfg.join_timeout > 0:  # without a join every event expires the one before: one by one
            with contextlib.suppress(ev.EventError):  # a bad event: one by one below, which names it
                groups = self._decode_groups(events, now)
        if groups is None:
            for event in events:
                self.handle_event(event, now)
            return
        for group in groups:
            for args in group.feedback:
                self.feedback.record(*args)
        with self.lock:
            for event in events:
                self.events_received[event.kind] += 1
            self.join.expire(now)
            self._join_batch(events, groups, now)

    def _decode_groups(self, events: Sequence[ev.LoggedEvent], now: float) -> list[_Group]:
        """Decode the events by (namespace, model, version, kind); raises EventError like handle_event."""
        by_group: dict[tuple[Key, str, str], list[int]] = {}
        for i, event in enumerate(events):
            key: Key = (event.namespace or "", event.model)
            by_group.setdefault((key, event.version or ev.UNKNOWN_VERSION, event.kind), []).append(i)
        for key in dict.fromkeys(k for k, _, _ in by_group):
            self._check_owner(key, now)
        groups = []
        for (key, version, kind), members in by_group.items():
            profile, _, layout = self._reference(key, version, now)
            payloads = [events[i].payload for i in members]
            if kind == "request":
                counts, batch = _decode_requests(payloads, layout, self.cfg.max_event_rows)
                groups.append(_Group(key, kind, members, counts, batch=batch))
            else:
                served = [ev.prediction_array(p, layout.classification) for p in payloads]
                counts = [len(s) for s in served]
                everything = _concat(served)
                feedback = _feedback_records((key[0], key[1], version), profile, [events[i].id for i in members],
                                             payloads, served, counts, [events[i].time for i in members])
                groups.append(_Group(key, kind, members, counts, predictions=layout.predictions(everything),
                                     feedback=feedback))
        return groups

    def _join_batch(self, events: Sequence[ev.LoggedEvent], groups: list[_Group], now: float) -> None:
        """Pair the batch's requests and responses, window the pairs per model version, the rest through
        the join table. Caller holds the lock."""
        where: dict[int, tuple[_Group, int, int]] = {}  # event index -> (its group, first row, rows)
        for group in groups:
            starts = np.concatenate([[0], np.cumsum(group.counts)[:-1]]).astype(int).tolist()
            for i, start, rows in zip(group.members, starts, group.counts, strict=True):
                where[i] = (group, start, rows)
        sides: dict[tuple[str, str, str, str], list[int]] = {}
        for i, event in enumerate(events):
            sides.setdefault((event.namespace or "", event.model, event.id, event.kind), []).append(i)
        paired: dict[int, int] = {}  # request index -> response index
        for (namespace, model, event_id, kind), found in sides.items():
            responses = sides.get((namespace, model, event_id, "response"))
            # one request and one response, and no earlier side waiting in the join table: a pair here;
            # anything else goes through the join table in arrival order, as handle_event would
            if kind == "request" and len(found) == 1 and responses is not None and len(responses) == 1 \
                    and f"{namespace}/{event_id}" not in self.join.entries:
                paired[found[0]] = responses[0]
        # (key, version, request group) -> (rows of the requests, their responses' predictions); `alone`: the
        # pairs whose response has another number of rows (the rows enter without predictions, as in _join_decoded)
        buckets: dict[tuple[Key, str | None, int], tuple[list[tuple[int, int]], list[Any]]] = {}
        alone: dict[tuple[Key, str | None, int], list[tuple[int, int]]] = {}
        for i, j in paired.items():
            request, response = events[i], events[j]
            rgroup, rstart, rrows = where[i]
            pgroup, pstart, prows = where[j]
            version = response.version or request.version
            if prows == rrows:
                spans, preds = buckets.setdefault((rgroup.key, version, id(rgroup)), ([], []))
                spans.append((rstart, rrows))
                preds.append(pgroup.predictions[pstart:pstart + prows])
            else:
                alone.setdefault((rgroup.key, version, id(rgroup)), []).append((rstart, rrows))
        batches = {id(g): g.batch for g in groups if g.batch is not None}
        for (key, version, gid), (spans, preds) in buckets.items():
            batch = _take(batches[gid], spans)
            batch.predictions = preds[0] if len(preds) == 1 else np.concatenate(preds)
            self._ingest(key, version, batch, now)
        for (key, version, gid), spans in alone.items():
            self._ingest(key, version, _take(batches[gid], spans), now)
        done = set(paired) | set(paired.values())
        for i, event in enumerate(events):
            if i in done:
                continue
            group, start, rows = where[i]
            if group.batch is not None:
                decoded: Any = _take(group.batch, [(start, rows)])
                nbytes = decoded.nbytes
            else:
                assert group.predictions is not None
                decoded = group.predictions[start:start + rows].copy()
                nbytes = int(decoded.nbytes) + 64
            self._join_decoded(group.key, event, decoded, nbytes, now)

    def _unmatched(self, pending: Pending, why: str) -> None:
        if why == "evicted":
            self.truncated["pending"] += 1
        if pending.request is not None:
            # a lone request still carries the features: keep them (logger mode "request", lost responses)
            self.unmatched["request"] += 1
            try:
                self._ingest((pending.namespace, pending.model), pending.version, pending.request, pending.arrived)
            except ev.EventError as exc:
                self.events_rejected[exc.reason] += 1
        else:
            self.unmatched["response"] += 1

    def _ingest(self, key: Key, version: str | None, batch: Batch, now: float) -> None:
        version = version or ev.UNKNOWN_VERSION
        model = key[1]
        tracked = self._tracked(key, version, now)
        if batch.numeric.shape[1] != len(tracked.layout.numeric) or (
                batch.categorical.shape[1] != len(tracked.layout.categorical)):
            # decoded against another version's reference ({version} sources): refuse, do not misalign
            raise ev.EventError("invalid_payload", f"rows of {model!r} do not match the reference of "
                                f"version {version!r}")
        tracked.window.add(batch, now)
        self.rows_ingested[(*key, version)] += batch.rows

    def ingest_batch(self, model: str, body: Any, now: float | None = None,
                     namespace: str = "") -> dict[str, Any]:
        """Rows posted directly: ``{"version", "instances" | "inputs", "predictions" | "outputs"}``."""
        now = time.monotonic() if now is None else now
        key: Key = (namespace, model)
        try:
            if not isinstance(body, dict):
                raise ev.EventError("invalid_payload", "the batch body must be a JSON object")
            version = str(body.get("version") or ev.UNKNOWN_VERSION)
            with self.lock:
                self.events_received["batch"] += 1
            self._check_owner(key, now)
            layout = self._layout_for(key, version, now)
            rows, cols = ev.request_arrays(body, layout.features, self.cfg.max_event_rows)
            preds = None
            if "predictions" in body or "outputs" in body:
                preds = ev.prediction_array(body, layout.classification)
                if len(preds) != rows:
                    raise ev.EventError("invalid_payload", f"{len(preds)} predictions for {rows} rows")
            batch = layout.batch(rows, cols, preds)
            with self.lock:
                self._ingest(key, version, batch, now)
            ids = body.get("ids")
            if preds is not None and isinstance(ids, list) and len(ids) == rows:  # issue 17: labels may follow
                profile, _ = self.references.get(model, version)
                labels, proba = fb.served_labels(body, preds.tolist())
                self.feedback.record((namespace, model, version), profile, None, labels, proba,
                                     ids=[str(i) for i in ids])
            return {"accepted": rows, "model": model, "namespace": namespace, "version": version}
        except ev.EventError as exc:
            self.reject(exc.reason)
            raise

    # --- evaluation -------------------------------------------------------------------------------------

    def tracked(self) -> list[Tracked]:
        self.refresh_shards(time.monotonic())  # a shard without events still drops what it no longer owns
        with self.lock:
            return [t for versions in self.models.values() for t in versions.values()]

    def find(self, model: str, version: str | None = None, namespace: str | None = None) -> Tracked | None:
        """A tracked version; without ``version`` the most recently updated one.

        Without ``namespace``: the model's only namespace; ValueError when several namespaces have one.
        """
        with self.lock:
            if namespace is None:
                keys = [k for k in self.models if k[1] == model]
                if len(keys) > 1:
                    raise ValueError(f"model {model!r} is tracked in namespaces "
                                     f"{', '.join(sorted(k[0] or '(none)' for k in keys))}; pass ?namespace=")
                key = keys[0] if keys else ("", model)
            else:
                key = (namespace, model)
            versions = self.models.get(key)
            if not versions:
                return None
            if version is not None:
                return versions.get(version)
            return max(versions.values(), key=lambda t: t.window.last_update)

    def evaluate(self, tracked: Tracked, now: float | None = None, force: bool = False) -> Evaluation:
        """The drift of one window; cached until the window changes."""
        now = time.monotonic() if now is None else now
        with self.lock:
            self.join.expire(now)
            tracked.window.expire(now)
            if (not force and tracked.evaluation is not None
                    and tracked.evaluated_generation == tracked.window.generation):
                return tracked.evaluation
            generation = tracked.window.generation
            rows, cols, preds = tracked.window.columns(now)
        t0 = time.perf_counter()
        result = window_drift(tracked.profile, cols, rows, preds, self.cfg.drift, canonical=True)
        seconds = time.perf_counter() - t0
        evaluation = Evaluation(tracked.model, tracked.version, tracked.source, result, seconds, time.time(),
                                tracked.namespace)
        with self.lock:
            tracked.evaluation = evaluation
            tracked.evaluated_generation = generation
            if result.status == "ok":
                self.evaluation_buckets[bisect.bisect_left(EVALUATION_BUCKETS, seconds)] += 1
                self.evaluation_sum += seconds
        return evaluation

    def quality(self, tracked: Tracked) -> fb.Quality | None:
        """Realised and estimated quality of a tracked version (None before any prediction of it was seen)."""
        key = (tracked.namespace, tracked.model, tracked.version)
        vq = self.feedback.state(key)
        if vq is None:
            return None
        numeric = preds = None
        if vq.task == "regression":  # DLE reads the features and predictions of the drift window
            with self.lock:
                order = tracked.window._order(time.monotonic())
                order = order[tracked.window.has_pred[order]]
                preds = np.asarray(tracked.window.preds[order], dtype=float)
                block = tracked.window.numeric[order]
            where = {f: j for j, f in enumerate(tracked.layout.numeric)}
            numeric = np.column_stack([block[:, where[f]] if f in where else np.full(len(order), np.nan)
                                       for f in vq.numeric]) if vq.numeric else np.empty((len(order), 0))
        return self.feedback.quality(key, numeric, preds)

    def handle_feedback(self, headers: Mapping[str, str], body: bytes, namespace: str) -> dict[str, Any]:
        """One POST /feedback (headers lower-case). FeedbackError (400) for a body of the wrong shape."""
        ce_type = headers.get("ce-type")
        if ce_type is not None and ce_type != fb.FEEDBACK_EVENT_TYPE:
            raise fb.FeedbackError(f"ce-type {ce_type!r} is not {fb.FEEDBACK_EVENT_TYPE}")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise fb.FeedbackError(f"the body is not valid JSON: {exc}") from None
        if isinstance(payload, dict) and "specversion" in payload and payload.get("type") != fb.FEEDBACK_EVENT_TYPE:
            raise fb.FeedbackError(f"CloudEvent type {payload.get('type')!r} is not {fb.FEEDBACK_EVENT_TYPE}")
        return self.feedback.submit(namespace, payload)

    def evaluate_all(self) -> list[Evaluation]:
        return [self.evaluate(t) for t in self.tracked()]

    def window_frame(self, tracked: Tracked) -> tuple[Any, Any]:
        """(current window, reference sample) as pandas frames for reports; predictions as ``prediction``."""
        import pandas as pd

        from modelops.drift.report import reference_frame

        with self.lock:
            now = time.monotonic()
            _, cols, _ = tracked.window.columns(now)
            order = tracked.window._order(now)
            has = tracked.window.has_pred[order]
            preds = tracked.window.preds[order]
        current = pd.DataFrame({f: cols[f] for f in tracked.layout.features})
        if tracked.layout.prediction_kind is not None and has.any():
            current["prediction"] = pd.Series(preds).where(has, None)
        return current, reference_frame(tracked.profile, include_prediction="prediction" in current)


# --- column-wise handling of the events of one POST (Exporter.handle_events) ---------------------------

@dataclass
class _Group:
    """The decoded events of one (namespace, model), version and kind of one batch, in arrival order."""

    key: Key
    kind: str
    members: list[int]  # indexes of the events in the batch
    counts: list[int]  # rows of each
    batch: Batch | None = None  # requests: all their rows
    predictions: Any = None  # responses: all their predictions (layout.predictions)
    feedback: list[tuple[Any, ...]] = field(default_factory=list)  # responses: Feedback.record arguments


def _decode_requests(payloads: list[Any], layout: Layout, max_rows: int) -> tuple[list[int], Batch]:
    """Rows of each request and all of them as one block. V1 row lists are joined and split by numpy at
    once; anything else is split per event, and its columns are joined."""
    if all(isinstance(p, dict) and "instances" in p and isinstance(p["instances"], list) for p in payloads):
        counts = [len(p["instances"]) for p in payloads]
        if all(0 < n <= max_rows for n in counts):
            try:
                total, cols = ev.request_arrays({"instances": list(chain.from_iterable(
                    p["instances"] for p in payloads))}, layout.features, sum(counts))
                return counts, layout.batch(total, cols)
            except ev.EventError:
                pass  # rows of different forms: event by event below, so the bad one is named
    parts = [ev.request_arrays(p, layout.features, max_rows) for p in payloads]
    counts = [n for n, _ in parts]
    cols = {f: list(chain.from_iterable(c[f] for _, c in parts)) for f in layout.features}
    return counts, layout.batch(sum(counts), cols)


def _concat(arrays: list[Any]) -> Any:
    if len(arrays) == 1:
        return arrays[0]
    if len({a.dtype for a in arrays}) > 1:  # keep each value as it is (True stays True, not 1)
        arrays = [a.astype(object) for a in arrays]
    return np.concatenate(arrays)


def _feedback_records(key: tuple[str, str, str], profile: dict[str, Any], ids: list[str], payloads: list[Any],
                      served: list[Any], counts: list[int], times: list[float | None]) -> list[tuple[Any, ...]]:
    """The arguments of Feedback.record for the responses of a group: one call with every prediction (row i
    of a multi-row inference ID is ``ID#i``, as `Feedback.record` names it), or, when their class
    probabilities do not stack into one block, the call per response that `handle_event` makes. `times`:
    each response's inference time (None: on receipt)."""
    parts = [fb.served_labels(payload, values.tolist()) for payload, values in zip(payloads, served, strict=True)]
    each = [(key, profile, i, *part, None, t) for i, part, t in zip(ids, parts, times, strict=True)]
    if len(parts) == 1:
        return each
    probas = [proba for _, proba in parts]
    proba_all: Any = None
    if any(p is not None for p in probas):
        try:
            blocks = [np.asarray(p, dtype=float) for p in probas]
        except (TypeError, ValueError):
            return each
        if any(b.ndim != 2 or b.shape != (n, blocks[0].shape[1]) for b, n in zip(blocks, counts, strict=True)):
            return each
        proba_all = np.concatenate(blocks)
    labels = list(chain.from_iterable(labels for labels, _ in parts))
    row_ids = list(chain.from_iterable([i] if n == 1 else [f"{i}#{r}" for r in range(n)]
                                       for i, n in zip(ids, counts, strict=True)))
    row_ts = None if all(t is None for t in times) else np.repeat(
        np.array([np.nan if t is None else t for t in times], dtype=float), counts)
    return [(key, profile, None, labels, proba_all, row_ids, row_ts)]


def _take(batch: Batch, spans: list[tuple[int, int]]) -> Batch:
    """The rows of `batch` in the (start, rows) spans, as a new Batch (copies: nothing keeps the block)."""
    if len(spans) == 1:
        start, rows = spans[0]
        index: Any = slice(start, start + rows)
        total = rows
    else:
        starts = np.array([s for s, _ in spans])
        lengths = np.array([n for _, n in spans])
        total = int(lengths.sum())
        index = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(total)
    return Batch(total, batch.numeric[index].copy(), batch.categorical[index].copy())
