"""Optional micro-batching: concurrent requests within a short window run as one model call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from modelops.serving.outputs import Prediction
from modelops.serving.schema import Batch, BlockColumns


def concat(batches: list[Batch]) -> Batch:
    if all(b.matrix is not None for b in batches):  # all-numeric blocks: one vstack, columns as views
        mat = np.vstack([b.matrix for b in batches])  # type: ignore[misc]
        return Batch(BlockColumns(mat, {n: j for j, n in enumerate(batches[0].columns)}), mat.shape[0], mat)
    names = list(batches[0].columns)
    cols = {n: np.concatenate([b.columns[n] for b in batches]) for n in names}
    return Batch(cols, sum(b.rows for b in batches))


def split(pred: Prediction, sizes: list[int]) -> list[Prediction]:
    out = []
    start = 0
    for n in sizes:
        sl = slice(start, start + n)
        out.append(Prediction(
            labels=None if pred.labels is None else pred.labels[sl],
            probabilities=None if pred.probabilities is None else pred.probabilities[sl],
            values=None if pred.values is None else pred.values[sl],
        ))
        start += n
    return out


class MicroBatcher:
    """Collects requests for up to `max_delay` seconds or `max_rows` rows, then predicts them together."""

    def __init__(self, predict: Callable[[Batch], Prediction], executor: Executor, max_rows: int,
                 max_delay: float) -> None:
        self._predict = predict
        self._executor = executor
        self.max_rows = max_rows
        self.max_delay = max_delay
        self._pending: list[tuple[Batch, asyncio.Future[Prediction]]] = []
        self._rows = 0
        self._timer: asyncio.TimerHandle | None = None

    async def submit(self, batch: Batch) -> Prediction:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Prediction] = loop.create_future()
        self._pending.append((batch, fut))
        self._rows += batch.rows
        if self._rows >= self.max_rows:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_delay, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._pending, self._rows = self._pending, [], 0
        if items:
            asyncio.get_running_loop().create_task(self._run(items))

    async def _run(self, items: list[tuple[Batch, asyncio.Future[Prediction]]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            merged = concat([b for b, _ in items])
            pred = await loop.run_in_executor(self._executor, self._predict, merged)
            parts: list[Any] = split(pred, [b.rows for b, _ in items])
        except Exception as exc:  # every waiter gets the failure, none hangs
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), part in zip(items, parts, strict=True):
            if not fut.done():
                fut.set_result(part)


Done = Callable[[Prediction | None, BaseException | None], None]


class TurnBatcher:
    """Requests validated within one turn of the event loop are predicted as one batch at the end of that turn.

    No timer and no added wait: a lone request is predicted in the very next loop iteration, as it would be
    alone; under concurrency, every request whose bytes arrived in the same poll is answered by one model call
    (at most `max_rows` rows per call; a fuller turn makes several). Merged batches up to `inline_rows` rows
    run on the event loop when `inline` (the compiled fast path: cheaper than the thread hop), larger ones on
    `executor`. A merged batch that fails is predicted again request by request, so that one bad request gets
    its own error and the others their answers.

    This is the default (`--coalesce`); the timed `MicroBatcher` (`--batch-max-rows`) stays off by default.
    Why, from bench/serving_saturation.py: a lone request waits for nothing here (same loop iteration, so the
    single-request latency is that of one model call), while under concurrency the batch grows by itself with
    the number of requests ready at once, which is exactly what a timer would collect, without holding the
    first request for the timer. A merged call also pays ONNX Runtime's per-call cost, the thread hop and the
    numpy set-up once instead of once per request.
    """

    def __init__(self, predict: Callable[[Batch], Prediction], executor: Executor, max_rows: int,
                 inline_rows: int, inline: bool, observe: Callable[[int], None] | None = None) -> None:
        self._predict = predict
        self._observe = observe
        self._executor = executor
        self.max_rows = max(1, max_rows)
        self.inline_rows = inline_rows
        self.inline = inline
        self._pending: list[tuple[Batch, Done]] = []
        self._rows = 0
        self.calls = 0  # model calls made (a test and the benchmark read calls / requests)
        self.requests = 0

    def add(self, batch: Batch, done: Done) -> None:
        """Queue `batch`; `done(prediction, None)` or `done(None, error)` is called on the loop."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append((batch, done))
        self._rows += batch.rows
        if self._rows >= self.max_rows:
            self.flush()

    async def submit(self, batch: Batch) -> Prediction:
        fut: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()

        def done(pred: Prediction | None, exc: BaseException | None) -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(pred)  # type: ignore[arg-type]

        self.add(batch, done)
        return await fut

    def flush(self) -> None:
        items, self._pending, rows, self._rows = self._pending, [], self._rows, 0
        if not items:
            return
        self.calls += 1
        self.requests += len(items)
        if self._observe is not None:
            self._observe(rows)
        if self.inline and rows <= self.inline_rows:
            _deliver(items, self._run(items))
            return
        fut = asyncio.get_running_loop().run_in_executor(self._executor, self._run, items)
        fut.add_done_callback(lambda f: _deliver(items, f.result()))

    def _run(self, items: list[tuple[Batch, Done]]) -> list[tuple[Prediction | None, BaseException | None]]:
        if len(items) > 1:
            try:
                pred = self._predict(concat([b for b, _ in items]))
                return [(p, None) for p in split(pred, [b.rows for b, _ in items])]
            except Exception:  # retried one by one below: each request gets its own outcome
                pass
        out: list[tuple[Prediction | None, BaseException | None]] = []
        for b, _ in items:
            try:
                out.append((self._predict(b), None))
            except Exception as exc:
                out.append((None, exc))
        return out


def _deliver(items: list[tuple[Batch, Done]], results: list[tuple[Prediction | None, BaseException | None]]) -> None:
    for (_, done), (pred, exc) in zip(items, results, strict=True):
        try:
            done(pred, exc)
        except Exception:
            logging.getLogger("modelops.serving").exception("delivering a prediction failed")
