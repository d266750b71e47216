"""The exporter's state and behaviour, without the web framework: events in, drift evaluations out.

One lock guards windows, join table and counters; handlers hold it for microseconds (decoding happens
before taking it), evaluations hold it only to copy the window's live rows.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelops.drift import events as ev
from modelops.drift.reference import ReferenceStore
from modelops.drift.stats import DriftConfig, WindowDrift, window_drift
from modelops.drift.window import Batch, JoinTable, Layout, Pending, Window

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
    max_models: int = 50  # distinct model names tracked; more are refused (too_many_models)
    max_versions: int = 5  # versions per model; the least recently updated is dropped
    max_features: int = 100  # per-feature metric series per model version; more are counted, not exported
    max_event_rows: int = 10_000  # rows in one event
    max_body_bytes: int = 16 << 20
    drift: DriftConfig = field(default_factory=DriftConfig)


@dataclass
class Evaluation:
    model: str
    version: str
    reference: str
    result: WindowDrift
    seconds: float
    evaluated_at: float  # wall clock


class Tracked:
    """One model version: its reference, its window, its latest evaluation."""

    def __init__(self, model: str, version: str, profile: dict[str, Any], source: str,
                 cfg: ExporterConfig) -> None:
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
        self.models: OrderedDict[str, OrderedDict[str, Tracked]] = OrderedDict()
        self._layouts: dict[str, Layout] = {}
        self.join = JoinTable(self.cfg.join_timeout, self.cfg.max_pending, self.cfg.max_pending_bytes,
                              self._unmatched)
        # counters (exported by the metrics collector; label values come from closed sets)
        self.events_received: Counter[str] = Counter()  # kind: request, response, batch
        self.events_rejected: Counter[str] = Counter()  # reason: events.REASONS
        self.unmatched: Counter[str] = Counter()  # side: request, response
        self.truncated: Counter[str] = Counter()  # what: features, versions, pending
        self.rows_ingested: Counter[tuple[str, str]] = Counter()  # (model, version), dropped with it
        self.evaluation_buckets = [0] * (len(EVALUATION_BUCKETS) + 1)  # last: +Inf
        self.evaluation_sum = 0.0

    # --- reference and tracking -------------------------------------------------------------------------

    def _reference(self, model: str, version: str) -> tuple[dict[str, Any], str, Layout]:
        """(profile, source, layout) for events of this model version; raises EventError."""
        if not self.references.knows(model):
            raise ev.EventError("unknown_model", f"no reference profile for model {model!r}; start the "
                                f"exporter with --reference {model}=SOURCE (or a default --reference)")
        if model not in self.models and len(self.models) >= self.cfg.max_models:
            raise ev.EventError("too_many_models", f"already tracking {len(self.models)} models "
                                f"(--max-models); {model!r} is not tracked")
        try:
            profile, source = self.references.get(model, version)
        except RuntimeError as exc:
            raise ev.EventError("reference_unavailable", str(exc)) from None
        layout = self._layouts.get(source)
        if layout is None:
            layout = self._layouts[source] = Layout(profile)
        return profile, source, layout

    def _layout_for(self, model: str, version: str) -> Layout:
        return self._reference(model, version)[2]

    def _tracked(self, model: str, version: str) -> Tracked:
        versions = self.models.get(model)
        if versions is not None and version in versions:
            versions.move_to_end(version)
            return versions[version]
        profile, source, _ = self._reference(model, version)
        tracked = Tracked(model, version, profile, source, self.cfg)
        self.truncated["features"] += max(0, len(tracked.layout.features) - self.cfg.max_features)
        versions = self.models.setdefault(model, OrderedDict())
        versions[version] = tracked
        while len(versions) > self.cfg.max_versions:
            old_version, _ = versions.popitem(last=False)
            self.rows_ingested.pop((model, old_version), None)
            self.truncated["versions"] += 1
            log.info("model %s: dropped the window of version %s (--max-versions %d)", model, old_version,
                     self.cfg.max_versions)
        return tracked

    # --- ingestion --------------------------------------------------------------------------------------

    def reject(self, reason: str) -> None:
        with self.lock:
            self.events_rejected[reason] += 1

    def handle_http(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """One POST of CloudEvents. Raises EventError (already counted)."""
        try:
            if len(body) > self.cfg.max_body_bytes:
                raise ev.EventError("body_too_large", f"{len(body)} bytes; the limit is "
                                    f"{self.cfg.max_body_bytes} (--max-body-bytes)")
            events = ev.parse_http(headers, body)
            accepted = 0
            for event in events:
                self.handle_event(event)
                accepted += 1
            return {"accepted": accepted}
        except ev.EventError as exc:
            self.reject(exc.reason)
            raise

    def handle_event(self, event: ev.LoggedEvent, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self.lock:
            self.events_received[event.kind] += 1
            layout = self._layout_for(event.model, event.version or ev.UNKNOWN_VERSION)
        # decode outside the lock: the expensive part
        if event.kind == "request":
            rows, cols = ev.request_columns(event.payload, layout.features, self.cfg.max_event_rows)
            decoded: Any = layout.batch(rows, cols)
            nbytes = decoded.nbytes
        else:
            decoded = layout.predictions(ev.response_predictions(event.payload, layout.classification))
            nbytes = int(decoded.nbytes) + 64
        with self.lock:
            self.join.expire(now)
            if self.cfg.join_timeout <= 0 and event.kind == "request":
                self._ingest(event.model, event.version, decoded, now)
                return
            partner = self.join.pop(event.id)
            if partner is None or partner.model != event.model or (
                    partner.request is not None if event.kind == "request" else partner.response is not None):
                if partner is not None:
                    self._unmatched(partner, "evicted")
                side = Pending(model=event.model, arrived=now, version=event.version, nbytes=nbytes)
                if event.kind == "request":
                    side.request = decoded
                else:
                    side.response = decoded
                self.join.put(event.id, side)
                return
            request = decoded if event.kind == "request" else partner.request
            response = decoded if event.kind == "response" else partner.response
            version = (event.version if event.kind == "response" else partner.version) or (
                partner.version if event.kind == "response" else event.version)
            request.predictions = response if len(response) == request.rows else None
            self._ingest(event.model, version, request, now)

    def _unmatched(self, pending: Pending, why: str) -> None:
        if why == "evicted":
            self.truncated["pending"] += 1
        if pending.request is not None:
            # a lone request still carries the features: keep them (logger mode "request", lost responses)
            self.unmatched["request"] += 1
            try:
                self._ingest(pending.model, pending.version, pending.request, pending.arrived)
            except ev.EventError as exc:
                self.events_rejected[exc.reason] += 1
        else:
            self.unmatched["response"] += 1

    def _ingest(self, model: str, version: str | None, batch: Batch, now: float) -> None:
        version = version or ev.UNKNOWN_VERSION
        tracked = self._tracked(model, version)
        if batch.numeric.shape[1] != len(tracked.layout.numeric) or (
                batch.categorical.shape[1] != len(tracked.layout.categorical)):
            # decoded against another version's reference ({version} sources): refuse, do not misalign
            raise ev.EventError("invalid_payload", f"rows of {model!r} do not match the reference of "
                                f"version {version!r}")
        tracked.window.add(batch, now)
        self.rows_ingested[(model, version)] += batch.rows

    def ingest_batch(self, model: str, body: Any, now: float | None = None) -> dict[str, Any]:
        """Rows posted directly: ``{"version", "instances" | "inputs", "predictions" | "outputs"}``."""
        now = time.monotonic() if now is None else now
        try:
            if not isinstance(body, dict):
                raise ev.EventError("invalid_payload", "the batch body must be a JSON object")
            version = str(body.get("version") or ev.UNKNOWN_VERSION)
            with self.lock:
                self.events_received["batch"] += 1
                layout = self._layout_for(model, version)
            rows, cols = ev.request_columns(body, layout.features, self.cfg.max_event_rows)
            preds = None
            if "predictions" in body or "outputs" in body:
                preds = ev.response_predictions(body, layout.classification)
                if len(preds) != rows:
                    raise ev.EventError("invalid_payload", f"{len(preds)} predictions for {rows} rows")
            batch = layout.batch(rows, cols, preds)
            with self.lock:
                self._ingest(model, version, batch, now)
            return {"accepted": rows, "model": model, "version": version}
        except ev.EventError as exc:
            self.reject(exc.reason)
            raise

    # --- evaluation -------------------------------------------------------------------------------------

    def tracked(self) -> list[Tracked]:
        with self.lock:
            return [t for versions in self.models.values() for t in versions.values()]

    def find(self, model: str, version: str | None = None) -> Tracked | None:
        """A tracked version; without ``version`` the most recently updated one."""
        with self.lock:
            versions = self.models.get(model)
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
        evaluation = Evaluation(tracked.model, tracked.version, tracked.source, result, seconds, time.time())
        with self.lock:
            tracked.evaluation = evaluation
            tracked.evaluated_generation = generation
            if result.status == "ok":
                self.evaluation_buckets[bisect.bisect_left(EVALUATION_BUCKETS, seconds)] += 1
                self.evaluation_sum += seconds
        return evaluation

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
