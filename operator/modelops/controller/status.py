"""The one status writer: an RFC 7386 merge patch of what changed, with a resourceVersion precondition.

Both kinds write status this way, so a decision is durable before any effect, and a decision made from a
stale read is refused (Conflict) instead of overwriting a newer one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelops.adapters.kube import Conflict, Kube
from modelops.controller.cache import WatchCache


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch turning `old` into `new` (removed keys become null, nested maps recurse)."""
    out: dict[str, Any] = {}
    for key in old:
        if key not in new:
            out[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                out[key] = sub
        elif before != value:
            out[key] = value
    return out


class StatusWriter:
    """Writes the status of one kind and keeps the watch cache in step with the answer."""

    def __init__(self, kube: Kube, group: str, version: str, plural: str, kind: str, cache: WatchCache,
                 field_manager: str = "modelops") -> None:
        self.kube, self.group, self.version, self.plural, self.kind = kube, group, version, plural, kind
        self.cache = cache
        self.field_manager = field_manager

    def write(self, obj: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
        """Patch `obj`'s status from `old` to `new` if anything changed; the object as it is afterwards
        (`obj` itself when nothing changed). Conflict when `obj` is stale (the cache entry is dropped)."""
        patch = merge_patch(old, new)
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if not patch:
            return dict(obj)
        try:
            written = self.kube.patch_status(self.group, self.version, self.plural, meta["namespace"], meta["name"],
                                             patch, meta.get("resourceVersion"), field_manager=self.field_manager)
        except Conflict:
            self.cache.forget(key, self.kind)  # decide again on a fresh read
            raise
        self.cache.remember(self.kind, key, written)
        return written
