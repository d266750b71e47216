"""The training result: one JSON object on stdout (last line) and in the container's termination message.

The operator reads the outcome from the Pod status (`state.terminated.message`) without talking to MLflow;
Kubernetes keeps at most 4096 bytes of it, so the object is shrunk to fit (long message cut, optional
fields dropped) rather than truncated into invalid JSON.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

Status = Literal["succeeded", "failed", "gate_failed", "awaiting_approval"]

#: Kubernetes truncates termination messages beyond this many bytes
TERMINATION_MESSAGE_LIMIT = 4096
#: environment variable naming the termination message file (the --termination-log option wins)
TERMINATION_LOG_ENV = "MODELOPS_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
#: optional keys dropped, in this order, when the result does not fit the limit
_DROPPABLE = ("timings", "metrics", "params", "trialCounts", "artifactUri", "source", "experimentId")


def base_result(model_name: str | None, dataset_uri: str | None) -> dict[str, Any]:
    """Every key the operator may read, with null values until they are known."""
    return {
        "status": "failed",
        "modelName": model_name,
        "version": None,
        "runId": None,
        "metric": None,
        "champion": None,
        "verdict": None,
        "message": "",
        "trials": 0,
        "datasetUri": dataset_uri,
        "datasetHash": None,
    }


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None: JSON has neither (issue 16, H1)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def encode(result: dict[str, Any], limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """Compact, strict JSON of `result` (no NaN/Infinity tokens) that is at most `limit` bytes (UTF-8)."""
    data = _finite(dict(result))
    text = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
    for key in _DROPPABLE:
        if len(text.encode()) <= limit:
            return text
        if key in data:
            data.pop(key)
            text = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
    while len(text.encode()) > limit and data.get("message"):
        msg = str(data["message"])
        excess = len(text.encode()) - limit
        keep = max(0, len(msg) - excess - 20)
        data["message"] = msg[:keep] + " ...[cut]"
        if keep == 0:
            data["message"] = "[cut]"
        text = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
        if keep == 0:
            break
    return text


def termination_log_path(option: str | None) -> Path | None:
    """--termination-log, else $MODELOPS_TERMINATION_LOG, else /dev/termination-log if it exists."""
    if option:
        return Path(option)
    env = os.environ.get(TERMINATION_LOG_ENV)
    if env:
        return Path(env)
    default = Path(DEFAULT_TERMINATION_LOG)
    return default if default.exists() else None


def write_termination_log(text: str, path: Path | None) -> str | None:
    """Write the result; returns an error description instead of raising (the result still goes to stdout)."""
    if path is None:
        return None
    try:
        path.write_text(text)
    except OSError as exc:
        return f"cannot write termination log {path}: {exc}"
    return None
