"""Optional micro-batching: concurrent requests within a short window run as one model call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from modelops.serving.outputs import Prediction
from modelops.serving.schema import Batch


def concat(batches: list[Batch]) -> Batch:
    if all(b.matrix is not None for b in batches):  # all-numeric blocks: one vstack, columns as views
        mat = np.vstack([b.matrix for b in batches])  # type: ignore[misc]
        return Batch({n: mat[:, j] for j, n in enumerate(batches[0].columns)}, mat.shape[0], mat)
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
