"""The watch cache: the latest objects and their children, fed by the watches and by our own write answers.

A steady-state reconcile then costs no API call at all. Entries only move forward in resourceVersion, so
a late watch event never hides our own newer write; a conflicting write drops the entry (the next read is
a GET). A child map also knows "absent" (None) once a watch or GET said so. Entries are stored without
managedFields (`lean`: nothing reads them, and with server-side apply they are about half an object) and
as compact JSON bytes rather than dicts: a dict of dicts costs several times its JSON in Python objects,
and a reader gets its own copy either way (decoding costs about what the deep copy did). The JSON is kept
zlib-compressed (level 1): Kubernetes objects repeat their keys and values, so an entry shrinks 2-4x, for
some tens of microseconds per write and read. Measured with 10,000 ModelDeployments and their
InferenceServices: see bench/cache_memory.py.
"""

from __future__ import annotations

import copy
import json
import threading
import zlib
from collections.abc import Mapping
from typing import Any

Key = tuple[str, str]


def lean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy without `metadata.managedFields`."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k != "metadata"}
    out["metadata"] = {k: copy.deepcopy(v) for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return out


def _rv(obj: Mapping[str, Any]) -> int | None:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, ValueError, TypeError):
        return None


def _plain(value: Any) -> Any:
    """JSON for the mapping and sequence views kopf hands out."""
    if isinstance(value, Mapping):
        return dict(value)
    return list(value)


#: zlib level of the cached JSON: 1 compresses these small documents nearly as well as 6, faster.
COMPRESSION = 1


class _Entry:
    """One cached object: its resourceVersion and its JSON, compressed."""

    __slots__ = ("data", "rv")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.rv = _rv(obj)
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
        plain = {**{k: v for k, v in obj.items() if k != "metadata"}, "metadata": meta}
        self.data = zlib.compress(json.dumps(plain, separators=(",", ":"), default=_plain).encode(), COMPRESSION)

    def obj(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(zlib.decompress(self.data))
        return out


class WatchCache:
    """One map per kind name ("ModelDeployment", "InferenceService", ...), keyed by (namespace, name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._maps: dict[str, dict[Key, _Entry | None]] = {}

    def _map(self, kind: str) -> dict[Key, _Entry | None]:
        return self._maps.setdefault(kind, {})

    def has(self, kind: str, key: Key) -> bool:
        with self._lock:
            return key in self._map(kind)

    def get(self, kind: str, key: Key) -> dict[str, Any] | None:
        """A copy of the cached object (callers may change it); None when absent or unknown."""
        with self._lock:
            entry = self._map(kind).get(key)
        return entry.obj() if entry is not None else None

    def remember(self, kind: str, key: Key, obj: Mapping[str, Any] | None) -> None:
        """Keep `obj` unless an entry with a newer resourceVersion is there; None records "absent"."""
        entry = _Entry(obj) if obj is not None else None
        with self._lock:
            entries = self._map(kind)
            old = entries.get(key)
            if entry is None or old is None or entry.rv is None or old.rv is None or entry.rv >= old.rv:
                entries[key] = entry

    def forget(self, key: Key, *kinds: str) -> None:
        """Drop the key from the given kinds' maps (all maps when none is named)."""
        with self._lock:
            for kind in kinds or tuple(self._maps):
                self._map(kind).pop(key, None)

    def size(self) -> int:
        with self._lock:
            return sum(len(m) for m in self._maps.values())
