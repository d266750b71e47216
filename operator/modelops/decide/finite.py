"""Status bodies that are always valid JSON (issue 16, H1).

JSON has no NaN or Infinity. Python's `json.dumps` writes them anyway (`allow_nan=True` by default), the
Kubernetes client sends that text, and the API server refuses the whole status write, so one non-finite
number freezes a controller. Every tick passes its status through `finite()` before handing it back: a
non-finite float is dropped (its key removed, its list item left out), and the message that explains the
verdict keeps the value in words.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """A copy of `value` (dicts, lists, scalars) without non-finite floats."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, float) and not math.isfinite(v):
                continue
            out[k] = finite(v)
        return out
    if isinstance(value, list | tuple):
        return [finite(v) for v in value if not (isinstance(v, float) and not math.isfinite(v))]
    return value


def strict_json(value: Any) -> str:
    """JSON as the API server accepts it: raises ValueError on NaN or Infinity instead of emitting them."""
    return json.dumps(value, allow_nan=False, sort_keys=True)


def finite_number(value: Any) -> float | None:
    """`value` as a finite float, or None (bools, strings, NaN and infinities are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
