"""MLflow tracking helpers: time accounting, and the nested run of every trial logged off the hot path.

Every trial becomes a nested run (params, validation metric with its staged history, duration, state).
Creating a run, logging a batch and terminating it are three HTTP round trips; done inline they would add
up to a large share of a short search. `TrialLogger` hands them to one background thread, in trial order,
so the search never waits for the tracking server; `flush()` waits for the queue at the end and raises if
any trial could not be logged (a training whose trials are not all in MLflow is not reported as a success).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


class Timings:
    """Wall-clock seconds per named phase; `mlflow` counts every blocking call into the MLflow client."""

    def __init__(self) -> None:
        self._totals: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self._totals[name] = self._totals.get(name, 0.0) + seconds

    def get(self, name: str) -> float:
        return self._totals.get(name, 0.0)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return {k: round(v, 3) for k, v in self._totals.items()}


@dataclass(frozen=True)
class TrialRecord:
    number: int
    family: str
    params: dict[str, Any]
    state: str  # COMPLETE | PRUNED | FAIL
    value: float | None
    intermediate: dict[int, float]
    start_ms: int
    end_ms: int
    error: str | None = None


@dataclass
class TrialLogger:
    """Logs TrialRecords as nested runs of `parent_run_id`, in a background thread unless synchronous."""

    client: Any
    experiment_id: str
    parent_run_id: str
    metric: str
    timings: Timings
    synchronous: bool = False
    run_ids: dict[int, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _queue: queue.Queue[TrialRecord | None] = field(default_factory=queue.Queue)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.synchronous and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="mlflow-trial-logger", daemon=True)
            self._thread.start()

    def submit(self, record: TrialRecord) -> None:
        if self.synchronous:
            with self.timings.measure("mlflow"):
                self._log(record)
        else:
            self._queue.put(record)

    def flush(self, timeout: float = 300.0) -> None:
        """Wait until every submitted trial is logged; the wait counts as MLflow time."""
        if self._thread is not None:
            with self.timings.measure("mlflow"):
                self._queue.put(None)
                self._thread.join(timeout)
            if self._thread.is_alive():
                self.errors.append(f"trial logging did not finish within {timeout:.0f}s")
            self._thread = None
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} trial(s) could not be logged to MLflow: {self.errors[0]}")

    def _work(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            start = time.perf_counter()
            try:
                self._log(record)
            finally:
                self.timings.add("mlflow_background", time.perf_counter() - start)

    def _log(self, r: TrialRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        try:
            run = self.client.create_run(
                self.experiment_id, start_time=r.start_ms, run_name=f"trial-{r.number:03d}-{r.family}",
                tags={"mlflow.parentRunId": self.parent_run_id, "modelops.dev/trial": str(r.number),
                      "modelops.dev/trial-state": r.state, "modelops.dev/family": r.family})
            run_id = run.info.run_id
            metrics = [Metric(f"valid_{self.metric}", v, r.start_ms, step)
                       for step, v in sorted(r.intermediate.items())]
            if r.value is not None and not r.intermediate:
                metrics.append(Metric(f"valid_{self.metric}", r.value, r.end_ms, 0))
            metrics.append(Metric("duration_s", (r.end_ms - r.start_ms) / 1000.0, r.end_ms, 0))
            params = [Param("family", r.family)] + [Param(k, _param_str(v)) for k, v in sorted(r.params.items())]
            tags = [RunTag("modelops.dev/error", r.error[:4000])] if r.error else []
            self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
            status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(r.state, "FAILED")
            self.client.set_terminated(run_id, status=status, end_time=r.end_ms)
            self.run_ids[r.number] = run_id
        except Exception as exc:  # recorded and raised by flush(); never kills the search thread
            self.errors.append(f"trial {r.number}: {type(exc).__name__}: {exc}")


def _param_str(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
