"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Several replicas run; each watches and keeps its cache warm, but only the holder of the Lease reconciles
(the schedulers' gate is `is_leader`). Timing (client-go's defaults): a Lease lasts 15 s
(`leaseDurationSeconds`), the leader renews every 2 s (retry period) and gives up leading when it could
not renew for 10 s (renew deadline), before the 15 s after which another replica may take the Lease. So a
replica that stops renewing (killed, partitioned, its loop stuck) stops acting at least 5 s before anyone
else can start, and a successor acquires within 15 s (+ one retry period) of the last renewal.

Expiry is judged by this replica's own monotonic clock from the moment it last saw the Lease record
change (client-go's "observed time"), never by comparing the holder's renewTime with the local clock,
so clock skew between nodes does not matter. Every write carries the resourceVersion it read: two
replicas racing for an expired Lease cannot both win.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelops.adapters.kube import Conflict, Kube, KubeError
from modelops.api.times import format_time

log = logging.getLogger("modelops.leader")


@dataclass(frozen=True)
class Timing:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, timing: Timing = Timing(),
                 on_started: Callable[[], None] | None = None, on_stopped: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], datetime] | None = None) -> None:
        self.kube, self.namespace, self.name, self.identity, self.timing = kube, namespace, name, identity, timing
        self._on_started, self._on_stopped = on_started, on_stopped
        self._clock = clock
        self._wall = wall or (lambda: datetime.now(UTC))
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None  # monotonic time of our last successful acquire/renew
        self.transitions = 0
        self._holder_duration = timing.lease_duration

    # ------------------------------------------------------------------ the gate
    def is_leader(self) -> bool:
        """True while this replica holds the Lease and renewed it within the renew deadline."""
        return self._renewed_at is not None and self._clock() - self._renewed_at < self.timing.renew_deadline

    # ------------------------------------------------------------------ one attempt (blocking)
    def try_acquire_or_renew(self) -> bool:
        now_mono, now = self._clock(), self._wall()
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.timing.lease_duration),
                "acquireTime": format_time(now), "renewTime": format_time(now), "leaseTransitions": 0}
        lease = self.kube.get_lease(self.namespace, self.name)
        if lease is None:
            try:
                self.kube.create_lease(self.namespace, self.name, spec)
            except Conflict:
                return False
            self._observe(("created", self.identity), now_mono)
            return True
        old = lease.get("spec") or {}
        self._holder_duration = float(old.get("leaseDurationSeconds") or self.timing.lease_duration)
        record = (old.get("holderIdentity"), old.get("renewTime"), old.get("leaseDurationSeconds"),
                  (lease.get("metadata") or {}).get("resourceVersion"))
        if record != self._observed:
            self._observe(record, now_mono)
        holder = old.get("holderIdentity") or ""
        duration = float(old.get("leaseDurationSeconds") or self.timing.lease_duration)
        if holder and holder != self.identity and now_mono < self._observed_at + duration:
            return False  # someone else holds an unexpired Lease
        if holder == self.identity:
            spec["acquireTime"] = old.get("acquireTime") or spec["acquireTime"]
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0)
        else:
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
        try:
            updated = self.kube.replace_lease(lease, spec)
        except Conflict:
            return False
        self._observe((self.identity, spec["renewTime"], spec["leaseDurationSeconds"],
                       (updated.get("metadata") or {}).get("resourceVersion")), now_mono)
        return True

    def _observe(self, record: tuple[Any, ...], at: float) -> None:
        self._observed, self._observed_at = record, at

    def release(self) -> None:
        """Give the Lease up at shutdown (client-go's ReleaseOnCancel), so a successor need not wait."""
        if not self.is_leader():
            return
        self._renewed_at = None
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                now = format_time(self._wall())
                self.kube.replace_lease(lease, {"holderIdentity": "", "leaseDurationSeconds": 1,
                                                "acquireTime": now, "renewTime": now,
                                                "leaseTransitions": (lease.get("spec") or {}).get(
                                                    "leaseTransitions", 0)})
        except KubeError as exc:
            log.warning("could not release the leader Lease: %s", exc)

    def attempt(self) -> bool:
        """One acquire/renew attempt (blocking); True when this replica leads afterwards."""
        started = self._clock()
        try:
            ok = self.try_acquire_or_renew()
        except KubeError as exc:
            log.warning("leader election: %s", exc)
            ok = False
        if ok and self._clock() - started < self.timing.renew_deadline:
            self._renewed_at = started
        return self.is_leader()

    def next_wait(self) -> float:
        """Seconds to the next attempt: the retry period, or less when another holder's Lease expires
        sooner (a standby then tries right at expiry instead of up to one retry period later)."""
        if self.is_leader() or self._observed is None:
            return self.timing.retry_period
        expires_in = self._observed_at + self._holder_duration - self._clock()
        return max(0.05, min(self.timing.retry_period, expires_in + 0.05))

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        """Acquire, then renew every retry period; on losing the Lease, go back to acquiring."""
        leading = False
        while True:
            await asyncio.to_thread(self.attempt)
            now_leading = self.is_leader()
            if now_leading and not leading:
                self.transitions += 1
                log.info("%s is now the leader (Lease %s/%s)", self.identity, self.namespace, self.name)
                if self._on_started:
                    self._on_started()
            elif leading and not now_leading:
                log.warning("%s lost the leader Lease %s/%s", self.identity, self.namespace, self.name)
                if self._on_stopped:
                    self._on_stopped()
            leading = now_leading
            await asyncio.sleep(self.next_wait())
