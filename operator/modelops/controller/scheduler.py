"""The one per-object scheduler of both kinds (no kopf daemon or timer, so no finalizer on any object).

Each object is due again after the delay its last reconcile asked for, or at once when a watch event shows
a user's change (new generation or annotations) or a child's report. One reconcile per object at a time;
a change that arrives during a reconcile schedules another one right after it.

At most `concurrency` reconciles run; when more are due, the rest wait here, ordered by priority
(CHANGE, REPORT, TIMER) and then by due time, so a user's edit is never queued behind a backlog of
periodic ticks (measured with 1000 ModelDeployments on 2 busy cores: a FIFO semaphore made an edit wait
9 s behind the timers; see bench/rollout_latency.py).

`gate` says whether this replica may act (it holds the leader Lease and kopf has not paused it); while it
is closed nothing starts, due objects stay due, and `open_gate()` starts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

Key = tuple[str, str]
#: Priorities: a user's change first, then a child's report, then the objects' own timers.
CHANGE, REPORT, TIMER = 0, 1, 2
Run = Callable[[str, str], Awaitable[float | None]]


class Scheduler:
    def __init__(self, run: Run, concurrency: int, gate: Callable[[], bool] | None = None) -> None:
        """`run(namespace, name)` reconciles one object and returns the seconds until it is due again,
        or None when the object is gone."""
        self._run = run
        self._concurrency = concurrency
        self._gate = gate or (lambda: True)
        self._due: dict[Key, float] = {}
        self._priority: dict[Key, int] = {}
        self._running: set[Key] = set()
        self._gone: set[Key] = set()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def touch(self, key: Key, delay: float = 0.0, priority: int = TIMER) -> None:
        self._gone.discard(key)
        due = time.monotonic() + delay
        self._due[key] = min(self._due.get(key, due), due)
        self._priority[key] = min(self._priority.get(key, priority), priority)
        self._wake.set()

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)
        self._priority.pop(key, None)
        self._gone.add(key)

    def open_gate(self) -> None:
        """The gate may have opened (leadership acquired, pause lifted): look at the due objects now."""
        self._wake.set()

    def known(self) -> int:
        return len(self._due) + len(self._running)

    def running(self) -> int:
        return len(self._running)

    def waiting(self) -> int:
        """Objects due now that have not started (the queue depth; read from the /metrics thread too)."""
        now = time.monotonic()
        for _ in range(3):  # the event loop may change the map while another thread reads it
            try:
                return sum(1 for k, t in list(self._due.items()) if t <= now and k not in self._running)
            except RuntimeError:
                continue
        return 0

    def _next(self, now: float) -> list[Key]:
        """The due objects to start now, most urgent first, within the free slots."""
        free = self._concurrency - len(self._running)
        if free <= 0 or not self._gate():
            return []
        ready = [k for k, t in self._due.items() if t <= now and k not in self._running]
        ready.sort(key=lambda k: (self._priority.get(k, TIMER), self._due[k]))
        return ready[:free]

    async def run_forever(self) -> None:
        while True:
            self._wake.clear()  # before looking, so a wake-up during the look is not lost
            now = time.monotonic()
            for key in self._next(now):
                del self._due[key]
                self._priority.pop(key, None)
                self._running.add(key)
                task = asyncio.create_task(self._one(key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            waiting = [t for k, t in self._due.items() if k not in self._running]
            if not self._gate():
                timeout = 1.0  # re-check the gate; open_gate() wakes earlier
            elif waiting and len(self._running) < self._concurrency:
                timeout = max(0.0, min(waiting) - now)
            else:
                timeout = 60.0  # with every slot busy, the next wake-up is a finishing reconcile
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _one(self, key: Key) -> None:
        delay: float | None = 10.0
        try:
            delay = await self._run(*key)
        finally:
            self._running.discard(key)
            if key in self._gone or delay is None:
                self._gone.discard(key)
                self._due.pop(key, None)
                self._priority.pop(key, None)
                self._wake.set()
            else:
                self.touch(key, delay)
