"""Webhook notifications: POST a JSON document (built by `desired.notification`) with a timeout.

Errors never name the URL or the body: Slack webhook URLs are secrets (often read from a Secret through
`urlSecretRef`) and these errors end up in logs and in status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from modelops.adapters.breaker import Breaker, CircuitOpen, dependency_of
from modelops.desired.notification import event_payload

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
    """Posts JSON to webhooks, with one client (connection pool) for all of them."""

    def __init__(self, timeout: float = 5.0, transport: httpx.BaseTransport | None = None,
                 breaker: Breaker | None = None) -> None:
        self.timeout = timeout
        #: per webhook host: a host that keeps failing is not posted to while its breaker is open (review
        #: M12); the item stays in the outbox with its backoff
        self.breaker = breaker
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def post_json(self, url: str, payload: Mapping[str, Any], timeout: float | None = None) -> None:
        """One POST; NotifyError (without the URL) unless the webhook answers 2xx."""
        dependency = dependency_of(url)
        if self.breaker is not None:
            try:
                self.breaker.before(dependency)
            except CircuitOpen as exc:  # without the host: the error reaches logs and status
                raise NotifyError(f"webhook unavailable (circuit open after repeated failures; next try in "
                                  f"{exc.retry_in:.0f}s)") from None
        try:
            resp = self._http.post(url, json=dict(payload),
                                   timeout=min(self.timeout, timeout) if timeout is not None else self.timeout)
        except httpx.HTTPError as exc:
            if self.breaker is not None:
                self.breaker.failure(dependency)
            raise NotifyError(f"webhook unreachable ({type(exc).__name__})") from None
        if self.breaker is not None:
            (self.breaker.failure if resp.status_code >= 500 else self.breaker.success)(dependency)
        if not 200 <= resp.status_code < 300:
            raise NotifyError(f"webhook answered HTTP {resp.status_code}")

    @staticmethod
    def payload(hook: Webhook, event: str, message: str, subject: Mapping[str, Any]) -> dict[str, Any]:
        return event_payload(hook.format, event, message, subject)

    def send(self, hooks: Sequence[Webhook], event: str, message: str, subject: Mapping[str, Any],
             timeout: float | None = None) -> int:
        """Post to each webhook that wants the event, trying every one; NotifyError listing the failures by
        position (never by URL) after that. Returns the number notified."""
        failures: list[str] = []
        sent = 0
        for i, hook in enumerate(hooks):
            if not hook.wants(event):
                continue
            try:
                self.post_json(hook.url, self.payload(hook, event, message, subject), timeout)
                sent += 1
            except NotifyError as exc:
                failures.append(f"webhook {i}: {exc}")
        if failures:
            raise NotifyError("; ".join(failures))
        return sent
