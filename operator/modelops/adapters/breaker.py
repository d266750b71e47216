"""A circuit breaker per dependency (scheme://host:port of MLflow, Prometheus or a webhook).

While a dependency is down, every reconcile that needs it would otherwise wait out its own timeouts (20
metrics x 2 sides x 5 s against a black-holed Prometheus) and every tenant's work queues behind it
(reliability review M12). After `threshold` consecutive outage failures (no answer within the timeout, a
refused connection, an HTTP 5xx) the breaker opens: calls to that dependency fail at once, without a request,
for `cooldown` seconds, then one trial call is let through (half-open). Its success closes the breaker; its
failure opens it again with twice the cooldown (up to `max_cooldown`). Answers that are not outages (4xx: a
bad query, a missing model, a refused credential) reset the count: the dependency is up.

An open breaker is an error for the caller, never a guess, with the reason of the outage itself
(PrometheusUnreachable, RegistryUnreachable, webhook unavailable) and a message saying the circuit is open:
analysis samples become errors (a verdict of Error holds a rollout, never promotes it), registry calls raise,
notifications stay in the outbox with their backoff. `open_circuits()` lists what is open, for a status
condition. The cooldown stays short (5 s, doubling to at most 30 s), so a dependency that is back is used
again within half a minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


def dependency_of(url: str) -> str:
    """The breaker key of a URL: scheme://host[:port], never its path or query (webhook URLs are secrets in
    their path; a key may appear in status)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


@dataclass
class _State:
    failures: int = 0
    opened_at: float | None = None
    cooldown: float = 0.0
    trial_at: float | None = None  # a half-open trial call is under way since then


class CircuitOpen(Exception):
    """The dependency's breaker is open: no request was made."""

    def __init__(self, dependency: str, retry_in: float) -> None:
        super().__init__(f"circuit open after repeated failures, not asked again for {retry_in:.0f}s")
        self.dependency = dependency
        self.retry_in = retry_in


class Breaker:
    """Per-dependency breakers, shared by every client of the process; thread-safe."""

    def __init__(self, threshold: int = 3, cooldown: float = 5.0, max_cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, limit: int = 1024) -> None:
        self.threshold, self.cooldown, self.max_cooldown = threshold, cooldown, max_cooldown
        self._clock = clock
        self._limit = limit
        self._states: dict[str, _State] = {}
        self._answered: set[str] = set()  # dependencies that answered since this process started
        self._lock = threading.Lock()

    def before(self, dependency: str) -> None:
        """Call before a request: CircuitOpen when the breaker is open (or its one trial call is out)."""
        with self._lock:
            st = self._states.get(dependency)
            if st is None or st.opened_at is None:
                return
            waited = self._clock() - st.opened_at
            if waited < st.cooldown:
                raise CircuitOpen(dependency, st.cooldown - waited)
            now = self._clock()
            if st.trial_at is not None and now - st.trial_at < st.cooldown:
                raise CircuitOpen(dependency, st.cooldown - (now - st.trial_at))
            st.trial_at = now  # half-open: this caller makes the one trial request (another after a cooldown)

    def success(self, dependency: str) -> None:
        """The dependency answered (any answer that is not an outage)."""
        with self._lock:
            self._states.pop(dependency, None)
            if len(self._answered) >= self._limit:
                self._answered.clear()
            self._answered.add(dependency)

    def failure(self, dependency: str) -> None:
        """An outage: no answer, a refused connection, a 5xx."""
        with self._lock:
            st = self._states.get(dependency)
            if st is None:
                if len(self._states) >= self._limit:  # bounded: forget the oldest closed ones first
                    for key in [k for k, v in self._states.items() if v.opened_at is None][:len(self._states) // 2]:
                        del self._states[key]
                st = self._states[dependency] = _State()
            st.failures += 1
            if st.opened_at is not None:  # the trial failed: open again, for longer
                st.cooldown = min(self.max_cooldown, st.cooldown * 2)
                st.opened_at, st.trial_at = self._clock(), None
            elif st.failures >= self.threshold:
                st.opened_at, st.cooldown, st.trial_at = self._clock(), self.cooldown, None

    def is_open(self, dependency: str) -> bool:
        with self._lock:
            st = self._states.get(dependency)
            return st is not None and st.opened_at is not None

    def answered(self, dependencies: list[str]) -> bool:
        """Whether every one of `dependencies` answered since this process started (a restarted operator
        knows nothing yet of a dependency that a status written before the restart reports down)."""
        with self._lock:
            return all(d in self._answered for d in dependencies)

    def open_circuits(self, dependencies: list[str] | None = None) -> list[str]:
        """The open breakers (of `dependencies`, when given), sorted."""
        with self._lock:
            return sorted(k for k, v in self._states.items() if v.opened_at is not None
                          and (dependencies is None or k in dependencies))
