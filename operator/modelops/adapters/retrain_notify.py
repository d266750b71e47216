"""POST a JSON payload to a webhook. Errors name neither the URL (Slack webhook URLs are secrets) nor the body."""

from __future__ import annotations

from typing import Any

import httpx


class NotifyError(RuntimeError):
    pass


def post_json(url: str, payload: dict[str, Any], timeout: float = 5.0) -> None:
    try:
        resp = httpx.post(url, json=payload, timeout=timeout)
    except httpx.HTTPError as exc:
        raise NotifyError(f"webhook unreachable ({type(exc).__name__})") from None
    if not 200 <= resp.status_code < 300:
        raise NotifyError(f"webhook answered HTTP {resp.status_code}")
