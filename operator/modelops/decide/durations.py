"""Go-style durations ("30s", "1m30s", "250ms", "2h") as the CRDs write them, parsed purely."""

from __future__ import annotations

import re

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None, default: float) -> float:
    """Seconds in `text`, or `default` when it is empty. Raises ValueError on anything else."""
    if not text:
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
