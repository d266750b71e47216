"""Ground truth for the loop's predictions, sent late and out of order to the drift exporter's /feedback.

The churn generator knows the truth of every row it makes (`generate-data`'s `churn` column): the loop keeps
it next to each request it sends and, once the gateway answered, hands the request's inference id and the
rows' truth to a `LabelFeed`. The feed decides which predictions ever get a label (`LabelDelay.share`) and
when (a log-normal delay: most labels come after about the median, some much later, so they arrive out of
the order of the predictions), and posts the labels that are due in batches.

Inference ids are what KServe's agent names its logged events by: the agent (kserve v0.20.0 pkg/logger,
`getOrCreateID`) takes the request's `Ce-Id` header and makes a new UUID only when there is none, so a
client that sets `Ce-Id` to its own business key gets its request and response events under that key
(`GatewayTraffic` sends the V2 body's `id` as `Ce-Id`). The exporter names row `i` of a multi-row inference
`ID#i` (`ID` alone for one row; modelops.drift.feedback), and so does `row_ids`.

Delays are in the demo's seconds: the loop runs for minutes where real labels take hours to weeks (a churn
label is known when the customer left, or did not, within the horizon). `LabelDelay()` reads one demo second
as about an hour of a real deployment: a median of ~20 s is most labels within a day, a few after several.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: the exporter's answer fields (POST /feedback), counted per outcome; `early`: labels that came before the
#: prediction's logged event and wait for it (their outcome is only in the exporter's counters, see
#: `exporter_label_counts`)
OUTCOMES = ("joined", "unmatched", "expired", "duplicate", "invalid", "early")


def row_ids(inference_id: str, rows: int) -> list[str]:
    """The ids of the rows of one inference, as the drift exporter names them (modelops.drift.feedback)."""
    return [inference_id] if rows == 1 else [f"{inference_id}#{i}" for i in range(rows)]


@dataclass(frozen=True)
class LabelDelay:
    """Which predictions get a label, and how long after the prediction it comes (seconds of the run).

    `share`: the probability that a prediction is ever labelled. Delay: log-normal with median `median`
    seconds and shape `sigma` (the spread that makes labels overtake each other), at least `minimum`, at
    most `maximum` seconds."""

    share: float = 0.5
    median: float = 20.0
    sigma: float = 0.7
    minimum: float = 2.0
    maximum: float = 120.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share must be within [0, 1], not {self.share}")
        if not 0.0 <= self.minimum <= self.median <= self.maximum or self.sigma < 0:
            raise ValueError(f"need 0 <= minimum <= median <= maximum and sigma >= 0: {self}")

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(labelled mask, delays in seconds) for `n` predictions."""
        labelled = rng.random(n) < self.share
        delays = np.exp(rng.normal(math.log(max(self.median, 1e-9)), self.sigma, n))
        return labelled, np.clip(delays, self.minimum, self.maximum)


def _jsonable(value: Any) -> Any:
    """A label as JSON: numpy scalars to Python numbers, everything else as is."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class LabelFeed:
    """Labels waiting for their time, posted in batches by `post` (a list of {id, label, ts} -> the
    exporter's answer {joined, unmatched, expired, duplicate, invalid}).

    `predicted` schedules the labels of one answered inference; `flush` posts those that are due (a
    background thread calls it every `period` seconds after `start`). A post that fails (an exception)
    puts its labels back to be tried again, so nothing is lost to a short outage; what the exporter
    answered is summed in `outcomes`. `clock` is the run's clock (monotonic seconds), `wall` the time sent
    as each label's `ts` (when the truth became known)."""

    post: Callable[[list[dict[str, Any]]], Mapping[str, Any]]
    delay: LabelDelay = field(default_factory=LabelDelay)
    seed: int = 0
    batch: int = 2000
    period: float = 1.0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._post_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.outcomes: Counter[str] = Counter()
        self.predictions = 0  # rows seen
        self.scheduled = 0  # labels scheduled
        self.sent = 0  # labels the exporter answered for
        self.posts = 0
        self.failed_posts = 0
        self.last_error = ""
        #: of the labels sent (the latest 100,000): send time - prediction time, run seconds
        self.delays: deque[float] = deque(maxlen=100_000)

    def predicted(self, inference_id: str, truth: Sequence[Any], at: float | None = None) -> int:
        """The truth of the rows of one answered inference; returns how many of them will get a label."""
        n = len(truth)
        if n == 0:
            return 0
        at = self.clock() if at is None else at
        ids = row_ids(inference_id, n)
        with self._lock:
            labelled, delays = self.delay.draw(self._rng, n)
            for i in np.flatnonzero(labelled).tolist():
                heapq.heappush(self._heap, (at + float(delays[i]), next(self._seq), ids[i],
                                            (_jsonable(truth[i]), at)))
            self.predictions += n
            self.scheduled += int(labelled.sum())
        return int(labelled.sum())

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._heap)

    def due(self, now: float | None = None, limit: int | None = None) -> list[tuple[float, int, str, Any]]:
        """Takes the labels due at `now` (earliest first, at most `limit`) off the schedule."""
        now = self.clock() if now is None else now
        out: list[tuple[float, int, str, Any]] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now and (limit is None or len(out) < limit):
                out.append(heapq.heappop(self._heap))
        return out

    def flush(self, now: float | None = None) -> int:
        """Posts every label due at `now`, in batches; returns how many the exporter answered for."""
        now = self.clock() if now is None else now
        done = 0
        with self._post_lock:
            while items := self.due(now, self.batch):
                ts = self.wall()
                body = [{"id": i, "label": label, "ts": ts} for _due, _seq, i, (label, _at) in items]
                try:
                    answer = self.post(body)
                except Exception as exc:  # an outage: the labels wait for the next flush
                    self.failed_posts += 1
                    self.last_error = repr(exc)[:300]
                    with self._lock:
                        for item in items:
                            heapq.heappush(self._heap, item)
                    break
                self.posts += 1
                self.sent += len(body)
                for k in OUTCOMES:
                    self.outcomes[k] += int(answer.get(k, 0) or 0)
                self.delays.extend(now - at for _due, _seq, _i, (_label, at) in items)
                done += len(body)
        return done

    def start(self) -> LabelFeed:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="label-feed")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.flush()

    def report(self) -> dict[str, Any]:
        """What was scheduled, sent and answered so far (for the timeline)."""
        d = sorted(self.delays)

        def q(p: float) -> float | None:
            return round(d[min(len(d) - 1, int(p * len(d)))], 1) if d else None
        return {"predictions": self.predictions, "scheduled": self.scheduled, "sent": self.sent,
                "waiting": self.waiting, "outcomes": dict(self.outcomes), "posts": self.posts,
                "failed_posts": self.failed_posts, "delay_p50_s": q(0.5), "delay_p90_s": q(0.9),
                "last_error": self.last_error}


class TruthBook:
    """Requests named by a business key, and the truth of their rows until the answer comes.

    `request` makes a V2 request body with `id` `PREFIX-N` (GatewayTraffic sends it as `Ce-Id` too) and keeps
    the rows' truth; `answered` (GatewayTraffic's `on_answer`) hands the truth of an answered inference to the
    feed, and forgets that of a failed one (its prediction was never made, so no label can join it)."""

    def __init__(self, prefix: str, feed: LabelFeed | None) -> None:
        self.prefix, self.feed = prefix, feed
        self._ids = itertools.count()
        self._truth: dict[str, Sequence[Any]] = {}
        self.answered_ok = 0
        self.failed = 0

    def request(self, inputs: list[dict[str, Any]], truth: Sequence[Any]) -> dict[str, Any]:
        inference_id = f"{self.prefix}-{next(self._ids)}"
        if self.feed is not None:
            self._truth[inference_id] = truth
        return {"id": inference_id, "inputs": inputs}

    def answered(self, body: Mapping[str, Any], status: int, version: str | None) -> None:
        truth = self._truth.pop(str(body.get("id")), None)
        if status != 200:
            self.failed += 1
            return
        self.answered_ok += 1
        if truth is not None and self.feed is not None:
            self.feed.predicted(str(body["id"]), truth)

    @property
    def open(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._truth)


# ---- where the labels go, and the quality read back ------------------------------------------------------
def feedback_target(logger_url: str) -> tuple[str, str, str, int, str]:
    """(kind, namespace, name, port, path) of the exporter's /feedback endpoint for a logger URL's namespace.

    The operator writes each InferenceService's logger URL as the exporter's namespace-bound event URL,
    `http://HOST:PORT/events/ns/NS/TOKEN`; the same token admits `/feedback/ns/NS/TOKEN` (modelops.drift.auth),
    so whoever may read the InferenceService may send labels for its namespace, and for no other. HOST is the
    exporter's Service (`SVC.NS.svc`) or, with shards, one shard's Pod (`POD.SVC-shards.NS.svc`): kind is
    "services" or "pods", as the API server's proxy path names them."""
    from urllib.parse import urlsplit

    parts = urlsplit(logger_url)
    host = (parts.hostname or "").split(".")
    marker = "/events/ns/"
    if parts.scheme not in ("http", "https") or marker not in parts.path:
        raise ValueError(f"not a drift exporter namespace URL (http://HOST:PORT/events/ns/NS/TOKEN): {logger_url!r}")
    path = parts.path.replace(marker, "/feedback/ns/", 1).lstrip("/")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if len(host) >= 4 and host[3] == "svc" and host[1].endswith("-shards"):
        return "pods", host[2], host[0], port, path
    if len(host) >= 3 and host[2] == "svc":
        return "services", host[1], host[0], port, path
    raise ValueError(f"the exporter's Service or Pod is not named in {logger_url!r} (want SVC.NS.svc)")


def exporter_label_counts(metrics_text: str) -> dict[str, float]:
    """The exporter's own accounting of the labels it got, from its /metrics text: the final outcomes
    (`modelops_feedback_labels_total{outcome}`: an early label counts once it joined or gave up), the early
    labels still waiting for their prediction (`early_waiting`), those joined late (`early_joined`), and
    those given up by reason (`early_unmatched_age`, `early_unmatched_capacity`; also in `unmatched`).

    The answers to the posts cannot tell this: a label that came before the agent's logged event is answered
    `early`, and only the exporter learns later whether its prediction came."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "modelops_feedback_labels_total":
                out[sample.labels["outcome"]] = sample.value
            elif sample.name == "modelops_feedback_early_labels":
                out["early_waiting"] = sample.value
            elif sample.name == "modelops_feedback_early_joined_total":
                out["early_joined"] = sample.value
            elif sample.name == "modelops_feedback_early_unmatched_total":
                out[f"early_unmatched_{sample.labels['reason']}"] = sample.value
    if "joined" not in out or "early_waiting" not in out:
        raise ValueError("no modelops_feedback_labels_total / modelops_feedback_early_labels in the exporter's "
                         "/metrics: not a drift exporter with the early-label store")
    return out


def quality_by_version(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """{version: {metric: value}} from a Prometheus instant query's result (`version`, `metric` labels)."""
    out: dict[str, dict[str, float]] = {}
    for r in results:
        m = r.get("metric") or {}
        value = float(r["value"][1])
        if math.isfinite(value):
            out.setdefault(str(m.get("version", "?")), {})[str(m.get("metric", "?"))] = value
    return out
