"""A watch-fed in-memory mirror of one kind (what client-go calls an informer), for the overview.

List once, then watch from the list's resourceVersion (bookmarks on) and apply ADDED / MODIFIED / DELETED;
on "410 Gone" or any error, list again. The mirror is a cache of the API server, not state: a restarted
console rebuilds it with one list. Pages that decide (the approval view, the decision itself) still read
the object directly from the API server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from modelops.console.kube import Kube, KubeError

log = logging.getLogger("modelops.console.mirror")


class Mirror:
    def __init__(self, kube: Kube, plural: str, namespace: str | None = None) -> None:
        self.kube, self.plural, self.namespace = kube, plural, namespace
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.ready = asyncio.Event()
        self.version = 0  # bumped on every change, so callers can cache what they derive
        self.rv = ""

    @staticmethod
    def key(obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return str(meta.get("namespace", "")), str(meta.get("name", ""))

    async def _list(self) -> str:
        path = self.kube.custom_path(self.plural, self.namespace)
        items: dict[tuple[str, str], dict[str, Any]] = {}
        cont, rv = "", ""
        while True:
            doc = await self.kube.request("GET", path, params={"limit": "500", **({"continue": cont} if cont else {})})
            for o in doc.get("items") or []:
                items[self.key(o)] = o
            rv = str((doc.get("metadata") or {}).get("resourceVersion") or rv)
            cont = (doc.get("metadata") or {}).get("continue") or ""
            if not cont:
                break
        self.items = items
        self.rv = rv
        self.version += 1
        self.ready.set()
        return rv

    async def _watch(self, rv: str) -> None:
        path = self.kube.custom_path(self.plural, self.namespace)
        params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "240"}
        async with self.kube.http.stream("GET", path, params=params, headers=self.kube._headers(),
                                         timeout=httpx.Timeout(10.0, read=300.0)) as resp:
            if resp.status_code >= 300:
                raise KubeError(resp.status_code, (await resp.aread()).decode("utf-8", "replace")[:300])
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                ev = json.loads(line)
                kind, obj = ev.get("type"), ev.get("object") or {}
                if kind == "ERROR":
                    raise KubeError(int(obj.get("code") or 500), str(obj.get("message", "watch error")))
                self.rv = str((obj.get("metadata") or {}).get("resourceVersion") or self.rv)
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    self.items.pop(self.key(obj), None)
                else:
                    self.items[self.key(obj)] = obj
                self.version += 1

    async def run(self) -> None:
        while True:
            try:
                await self._list()
                while True:  # a watch ends after timeoutSeconds; resume from the last version seen
                    await self._watch(self.rv)
            except asyncio.CancelledError:
                raise
            except (KubeError, httpx.HTTPError, ValueError) as exc:
                log.info("%s mirror: %s; listing again", self.plural, exc)
                await asyncio.sleep(1.0)

    def objects(self) -> list[dict[str, Any]]:
        return list(self.items.values())
