"""Tiny server-rendered SVG line plots (no JavaScript chart library, nothing from a CDN)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a3069", "#6e7781")


def lines(series: Mapping[str, Sequence[tuple[float, float]]], *, width: int = 640, height: int = 220,
          y_label: str = "", threshold: float | None = None) -> str:
    """One SVG with a polyline per series ((unix time, value) points), a legend and an optional threshold."""
    pts = [p for s in series.values() for p in s if math.isfinite(p[1])]
    if not pts:
        return '<p class="muted">no data in this time range</p>'
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    ys = [p[1] for p in pts] + ([threshold] if threshold is not None else [])
    y0, y1 = min(0.0, min(ys)), max(ys) * 1.1 or 1.0
    left, right, top, bottom = 48, 150, 10, 24
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (pw * (x - x0) / (x1 - x0) if x1 > x0 else pw / 2)

    def sy(y: float) -> float:
        return top + ph - ph * (y - y0) / (y1 - y0 if y1 > y0 else 1.0)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{html.escape(y_label)}" class="plot">',
           f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#888"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#888"/>',
           f'<text x="4" y="{top + 10}" font-size="10">{y1:.3g}</text>',
           f'<text x="4" y="{top + ph}" font-size="10">{y0:.3g}</text>',
           f'<text x="{left}" y="{height - 6}" font-size="10">{html.escape(y_label)}</text>']
    if threshold is not None:
        out.append(f'<line x1="{left}" y1="{sy(threshold):.1f}" x2="{left + pw}" y2="{sy(threshold):.1f}" '
                   f'stroke="#cf222e" stroke-dasharray="4 3"/>')
    for i, (name, s) in enumerate(sorted(series.items())):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s if math.isfinite(y))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        finite = [(x, y) for x, y in s if math.isfinite(y)]
        if len(finite) < 30:  # few samples (a young series): mark each one, a single point has no line
            out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>' for x, y in finite]
        ly = top + 12 + 14 * i
        out.append(f'<rect x="{left + pw + 8}" y="{ly - 8}" width="10" height="3" fill="{colour}"/>'
                   f'<text x="{left + pw + 22}" y="{ly}" font-size="11">{html.escape(name[:20])}</text>')
    out.append("</svg>")
    return "".join(out)
