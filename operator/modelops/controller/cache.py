"""The watch cache: the latest objects and their children, fed by the watches and by our own write answers.

A steady-state reconcile then costs no API call at all. Entries only move forward in resourceVersion, so
a late watch event never hides our own newer write; a conflicting write drops the entry (the next read is
a GET). A child map also knows "absent" (None) once a watch or GET said so. Entries are stored without
managedFields (`lean`): nothing reads them, and with server-side apply they are about half an object.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any

Key = tuple[str, str]


def lean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy without `metadata.managedFields`."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k != "metadata"}
    out["metadata"] = {k: copy.deepcopy(v) for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return out


def _newer(new: Mapping[str, Any] | None, old: Mapping[str, Any] | None) -> bool:
    if new is None or old is None:
        return True
    try:
        return int(new["metadata"]["resourceVersion"]) >= int(old["metadata"]["resourceVersion"])
    except (KeyError, ValueError, TypeError):
        return True


class WatchCache:
    """One map per kind name ("ModelDeployment", "InferenceService", ...), keyed by (namespace, name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._maps: dict[str, dict[Key, dict[str, Any] | None]] = {}

    def _map(self, kind: str) -> dict[Key, dict[str, Any] | None]:
        return self._maps.setdefault(kind, {})

    def has(self, kind: str, key: Key) -> bool:
        with self._lock:
            return key in self._map(kind)

    def get(self, kind: str, key: Key) -> dict[str, Any] | None:
        """A copy of the cached object (callers may change it); None when absent or unknown."""
        with self._lock:
            obj = self._map(kind).get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def remember(self, kind: str, key: Key, obj: Mapping[str, Any] | None) -> None:
        """Keep `obj` unless an entry with a newer resourceVersion is there; None records "absent"."""
        with self._lock:
            entries = self._map(kind)
            if obj is None or key not in entries or _newer(obj, entries.get(key)):
                entries[key] = lean(obj) if obj is not None else None

    def forget(self, key: Key, *kinds: str) -> None:
        """Drop the key from the given kinds' maps (all maps when none is named)."""
        with self._lock:
            for kind in kinds or tuple(self._maps):
                self._map(kind).pop(key, None)

    def size(self) -> int:
        with self._lock:
            return sum(len(m) for m in self._maps.values())
