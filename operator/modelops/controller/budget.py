"""A per-reconcile time budget: one slow or hostile object cannot hold a worker for long.

Every blocking call a reconcile makes (Prometheus queries, MLflow calls, webhooks) gets at most what is
left of the budget as its timeout, and work that is optional in this pass (more analysis queries, outbox
items) is left for the next pass once the budget is spent. A reconcile thus ends within about the budget
plus one Kubernetes call, whatever Prometheus, MLflow or a webhook do.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class BudgetExhausted(Exception):
    """The reconcile's time budget is spent; the rest waits for the next pass."""


class Budget:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.deadline = clock() + seconds

    def left(self) -> float:
        return max(0.0, self.deadline - self._clock())

    @property
    def exhausted(self) -> bool:
        return self.left() <= 0.0

    def timeout(self, cap: float) -> float:
        """A call's timeout: `cap`, or less when less of the budget is left (never below 0.05 s)."""
        return max(0.05, min(cap, self.left()))

    def check(self, what: str) -> None:
        if self.exhausted:
            raise BudgetExhausted(f"reconcile time budget of {self.seconds:g}s spent before {what}")
