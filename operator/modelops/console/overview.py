"""The overview's rows, derived and rendered once per object version (issue 18: <= 300 ms p95 at 1,000
ModelDeployments).

Profiled at 1,000 ModelDeployments (cProfile, bench/console_pages.py's objects): per request, deriving every
row (`views.md_row`, ~0.15 ms each) and rendering 200 table rows through Jinja's autoescaping were ~95% of
the page's CPU, and both were redone for the whole table whenever any object changed (every status write of a
rollout) or Prometheus answered. Here each row, and its HTML, is kept per object and recomputed only when that
object's resourceVersion or its model's drift share changes; the sorted order is kept until the mirror moves.
A page is then a join of at most 200 cached strings. The cache is derived from the API server's objects (the
watch mirror), never a source of truth: a restarted console rebuilds it on the first request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from modelops.console import views

Key = tuple[str, str]


class RowCache:
    """Rows of one kind: (namespace, name) -> (signature, row, row HTML)."""

    def __init__(self, env: Environment, kind: str) -> None:
        self.kind = kind
        self.template = env.get_template("_md_row.html" if kind == "modeldeployments" else "_rs_row.html")
        self.rows: dict[Key, tuple[tuple[Any, ...], dict[str, Any], str]] = {}
        self.rendered = 0  # rows derived and rendered so far (tests and the benchmark read it)

    def update(self, objects: Iterable[Mapping[str, Any]], shares: Mapping[str, float]) -> list[tuple[dict[str, Any], str]]:
        """(row, HTML) of every object, awaiting approval first, then by namespace and name."""
        fresh: dict[Key, tuple[tuple[Any, ...], dict[str, Any], str]] = {}
        for obj in objects:
            meta = obj.get("metadata") or {}
            key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            rv = str(meta.get("resourceVersion") or "")
            share = shares.get(views.model_of(self.kind, obj)) if self.kind == "modeldeployments" else None
            sig = (rv, share)
            hit = self.rows.get(key)
            if rv and hit is not None and hit[0] == sig:
                fresh[key] = hit
                continue
            row = views.md_row(obj, shares) if self.kind == "modeldeployments" else views.rs_row(obj)
            fresh[key] = (sig, row, self.template.render(r=row))
            self.rendered += 1
        self.rows = fresh  # objects gone from the mirror leave the cache with it
        entries = sorted(fresh.values(), key=lambda e: (not e[1]["pending"], e[1]["namespace"], e[1]["name"]))
        return [(row, html) for _sig, row, html in entries]


class Overview:
    def __init__(self, env: Environment) -> None:
        self.md = RowCache(env, "modeldeployments")
        self.rs = RowCache(env, "retrainschedules")
        self._key: Any = None
        self._sorted: tuple[list[tuple[dict[str, Any], str]], list[tuple[dict[str, Any], str]]] = ([], [])

    def sorted_rows(self, key: Any, mds: Iterable[Mapping[str, Any]], rss: Iterable[Mapping[str, Any]],
                    shares: Mapping[str, float]) -> tuple[list[tuple[dict[str, Any], str]],
                                                          list[tuple[dict[str, Any], str]]]:
        """Both kinds' (row, HTML), reused while `key` (the mirrors' versions and the drift shares) holds;
        key None: always recompute (no mirror yet)."""
        if key is None or key != self._key:
            self._sorted = (self.md.update(mds, shares), self.rs.update(rss, shares))
            self._key = key
        return self._sorted


def page(entries: list[tuple[dict[str, Any], str]], ns: str, number: int, size: int) -> dict[str, Any]:
    """One page of (already sorted) entries, optionally of one namespace: rows, their joined HTML, counts."""
    if ns:
        entries = [e for e in entries if e[0]["namespace"] == ns]
    pages = max(1, -(-len(entries) // size))
    chunk = entries[(number - 1) * size: number * size]
    return {"rows": [r for r, _h in chunk], "html": Markup("".join(h for _r, h in chunk)), "pages": pages,
            "total": len(entries), "awaiting": sum(1 for r, _h in entries if r["pending"])}
