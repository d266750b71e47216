"""Webhook notifications: a JSON document or a Slack-compatible message per event, posted with a timeout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

Format = Literal["json", "slack"]


@dataclass(frozen=True)
class Webhook:
    url: str
    format: Format = "json"
    #: event names to send; empty sends all
    events: tuple[str, ...] = ()

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


class NotifyError(Exception):
    pass


class Notifier:
    """Posts one message to each webhook that wants the event. Raises NotifyError listing failures, after
    trying every webhook, so the caller can keep the notification for a retry."""

    def __init__(self, timeout: float = 5.0, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def payload(hook: Webhook, event: str, message: str, subject: Mapping[str, Any]) -> dict[str, Any]:
        if hook.format == "slack":
            where = "/".join(str(subject[k]) for k in ("namespace", "name") if subject.get(k))
            kind = subject.get("kind", "")
            return {"text": f"*{event}* {kind} `{where}`: {message}"}
        return {"event": event, "message": message, **subject}

    def send(self, hooks: Sequence[Webhook], event: str, message: str, subject: Mapping[str, Any]) -> int:
        """Number of webhooks notified."""
        failures: list[str] = []
        sent = 0
        for hook in hooks:
            if not hook.wants(event):
                continue
            try:
                resp = self._http.post(hook.url, json=self.payload(hook, event, message, subject))
                if resp.status_code >= 300:
                    failures.append(f"{hook.url}: HTTP {resp.status_code}")
                else:
                    sent += 1
            except httpx.HTTPError as exc:
                failures.append(f"{hook.url}: {type(exc).__name__}")
        if failures:
            raise NotifyError("; ".join(failures))
        return sent
