"""Time in status, written one way: RFC 3339 in UTC with microseconds, and Go-style durations.

Both kinds (and their conditions) write every timestamp with `format_time`, so `kubectl get -o yaml` shows
one format; `parse_time` reads any RFC 3339 spelling (older objects have seconds or microseconds).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with microseconds, e.g. 2030-01-01T12:00:00.250000Z (naive times are taken as UTC).

    Sub-second precision because tests run steps and firings a second apart; microseconds because a
    round trip through status then loses nothing."""
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    """An aware UTC datetime from any RFC 3339 timestamp; None for empty."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def parse_duration(text: str | None, default: float | None = None) -> float:
    """Seconds in a Go/Prometheus-style duration (`90s`, `10m`, `1h30m`, `250ms`).

    Empty text gives `default` when one is given, else ValueError; anything else that is not a duration
    raises ValueError.
    """
    text = (text or "").strip()
    if not text:
        if default is None:
            raise ValueError("empty duration")
        return default
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h30m")
    return total


def format_duration(seconds: float) -> str:
    """The shortest Go-style spelling PromQL range selectors accept (whole seconds, at least 1s)."""
    s = max(1, round(seconds))
    if s % 3600 == 0:
        return f"{s // 3600}h"
    if s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"
