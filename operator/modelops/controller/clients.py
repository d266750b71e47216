"""The adapters each object talks to, made on first use and shared: one MLflow client per (server,
credentials Secret), one Prometheus client per URL, one notifier.

MLflow credentials are read from the object's Secret when its client is made and kept at most
`credentials_ttl` seconds; a 401/403 from MLflow evicts the client at once, so a rotated Secret is picked
up on the next reconcile instead of at the next restart. The maps are bounded (least recently used goes).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from modelops.adapters.breaker import Breaker, dependency_of
from modelops.adapters.kube import Kube, KubeError
from modelops.adapters.notify import Notifier
from modelops.adapters.prometheus import Prometheus
from modelops.adapters.registry import MlflowRegistry, ModelVersion, RegistryError
from modelops.api.vocabulary import TAG_STORAGE_URI
from modelops.decide.conditions import Condition

K = TypeVar("K")
V = TypeVar("V")
RegistryKey = tuple[str, str, str]  # (tracking URI, namespace of the Secret, Secret name)
#: Condition type saying whether the dependencies an object needs (MLflow, Prometheus) are available.
DEPENDENCIES_CONDITION = "DependenciesAvailable"


class Lru(Generic[K, V]):
    """A small thread-safe LRU map with an optional age limit per entry."""

    def __init__(self, limit: int, ttl: float | None = None, clock: Callable[[], float] = time.monotonic,
                 on_evict: Callable[[V], None] | None = None) -> None:
        self.limit, self.ttl, self._clock, self._on_evict = limit, ttl, clock, on_evict
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            if self.ttl is not None and self._clock() - hit[0] >= self.ttl:
                del self._items[key]
                self._evicted(hit[1])
                return None
            self._items.move_to_end(key)
            return hit[1]

    def put(self, key: K, value: V) -> V:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None and old[1] is not value:
                self._evicted(old[1])
            self._items[key] = (self._clock(), value)
            while len(self._items) > self.limit:
                _, (_, gone) = self._items.popitem(last=False)
                self._evicted(gone)
            return value

    def pop(self, key: K) -> None:
        with self._lock:
            hit = self._items.pop(key, None)
        if hit is not None:
            self._evicted(hit[1])

    def __len__(self) -> int:
        return len(self._items)

    def _evicted(self, value: V) -> None:
        if self._on_evict is not None:
            self._on_evict(value)


class Clients:
    def __init__(self, kube: Kube, *, timeout: float = 5.0, artifacts_destination: str = "",
                 credentials_ttl: float = 300.0, limit: int = 256,
                 registry_factory: Callable[..., MlflowRegistry] = MlflowRegistry,
                 prometheus_factory: Callable[..., Prometheus] = Prometheus,
                 notifier: Notifier | None = None, breaker: Breaker | None = None) -> None:
        self.kube = kube
        #: one circuit breaker per dependency (MLflow, Prometheus, webhook host), shared by every client
        self.breaker = breaker or Breaker()
        self.timeout = timeout
        self.artifacts_destination = artifacts_destination
        self._registry_factory = registry_factory
        self._prometheus_factory = prometheus_factory
        self.registries: Lru[RegistryKey, MlflowRegistry] = Lru(limit, credentials_ttl)
        self.prometheis: Lru[str, Prometheus] = Lru(limit)
        self._uris: Lru[tuple[str, str, str], str] = Lru(limit * 16)
        self.notifier = notifier or Notifier(timeout=timeout, breaker=self.breaker)
        #: (adapter, reason) of every registry failure; the runtime counts them (controller/metrics.py)
        self.on_error: Callable[[str, str], None] | None = None

    def registry(self, tracking_uri: str, namespace: str, secret: str) -> MlflowRegistry:
        """The client for one MLflow server with the credentials in `secret` (in `namespace`), if any.
        RegistryError(CredentialsUnavailable) when the Secret cannot be read."""
        key: RegistryKey = (tracking_uri, namespace if secret else "", secret)
        hit = self.registries.get(key)
        if hit is not None:
            return hit
        creds: dict[str, str] = {}
        if secret:
            try:
                creds = self.kube.secret_values(namespace, secret)
            except KubeError as exc:
                raise RegistryError("CredentialsUnavailable", f"secret {secret}: {exc}") from None
        client = self._registry_factory(
            tracking_uri, username=creds.get("MLFLOW_TRACKING_USERNAME"),
            password=creds.get("MLFLOW_TRACKING_PASSWORD"), token=creds.get("MLFLOW_TRACKING_TOKEN"),
            timeout=self.timeout, artifacts_destination=self.artifacts_destination or None, breaker=self.breaker)
        return self.registries.put(key, client)

    def registry_failed(self, tracking_uri: str, namespace: str, secret: str, exc: RegistryError) -> None:
        """Count the failure; drop the client after an authorization failure, so the Secret is read again."""
        if self.on_error is not None:
            self.on_error("registry", exc.reason)
        if exc.reason == "RegistryUnauthorized":
            self.registries.pop((tracking_uri, namespace if secret else "", secret))

    def prometheus(self, url: str) -> Prometheus:
        hit = self.prometheis.get(url)
        return hit if hit is not None else self.prometheis.put(
            url, self._prometheus_factory(url, timeout=self.timeout, breaker=self.breaker))

    def storage_uri(self, reg: MlflowRegistry, mv: ModelVersion) -> str:
        """A version's artifact location never changes; its storage-uri tag may, so it is part of the key."""
        key = (reg.tracking_uri, f"{mv.name}/{mv.version}", mv.tags.get(TAG_STORAGE_URI, ""))
        hit = self._uris.get(key)
        return hit if hit is not None else self._uris.put(key, reg.storage_uri(mv))

    def dependency_condition(self, urls: Iterable[str],
                             conditions: Sequence[Mapping[str, Any]] | None) -> Condition | None:
        """DependenciesAvailable=False/CircuitOpen naming the open breakers among `urls` (scheme://host
        only), True again once they close; None while nothing was ever open for the object (no noise in
        every status)."""
        deps = sorted({dependency_of(u) for u in urls if u})
        down = self.breaker.open_circuits(deps)
        if down:
            return Condition(DEPENDENCIES_CONDITION, "False", "CircuitOpen",
                             f"paused: {', '.join(down)} failed repeatedly and is not asked until it answers "
                             "again (analysis, registry writes and notifications wait)")
        said = next((c for c in conditions or [] if c.get("type") == DEPENDENCIES_CONDITION), None)
        if said is None:
            return None
        if said.get("status") == "False":
            # named down by a status written before a restart and not heard from since: this process knows
            # nothing newer, so the condition stays as it is until each of them answers (no flap on restart)
            message = str(said.get("message") or "")
            named = [d for d in deps if f" {d}," in message or f" {d} " in message]
            if not self.breaker.answered(named):
                return None
        return Condition(DEPENDENCIES_CONDITION, "True", "Available", "every dependency answers")
