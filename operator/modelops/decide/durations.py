"""Go-style durations ("30s", "1m30s", "250ms", "2h"): one parser for both kinds, in `api.times`."""

from __future__ import annotations

from modelops.api.times import format_duration, parse_duration

__all__ = ["format_duration", "parse_duration"]
