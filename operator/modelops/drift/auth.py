"""Who may send events to the drift exporter and read its reports (issue 16, M6).

KServe's payload logger has a URL and nothing else: no header, no client certificate. So the logger
authenticates through its URL path, and what it proves is bound to one namespace:

- one secret (the chart's Secret, mounted into the exporter and the operator as MODELOPS_DRIFT_TOKEN);
- the operator points each InferenceService's logger at ``/events/ns/<namespace>/<hmac>``, where ``hmac`` is
  HMAC-SHA256(secret, namespace). The exporter recomputes it and files the events under that namespace,
  whatever ``ce-namespace`` says. A tenant who reads its own InferenceService learns only the token of its
  own namespace: it can feed its own windows, never another namespace's, and never read anything;
- everything else (``POST /events``, ``/ingest``, ``/drift``, ``/reports``) needs
  ``Authorization: Bearer <secret>``; without it the answer is 401.

``/metrics``, ``/healthz`` and ``/readyz`` stay open for Prometheus and the kubelet; the chart's
NetworkPolicy admits only the namespaces it names.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from modelops.formats.drift_url import NAMESPACE_PATH, logger_url, namespace_token

__all__ = ["NAMESPACE_PATH", "Auth", "logger_url", "namespace_token"]

@dataclass(frozen=True)
class Auth:
    """The exporter's side. `secret` empty: authentication is off (only with --no-auth)."""

    secret: str

    @property
    def enabled(self) -> bool:
        return bool(self.secret)

    def bearer_ok(self, authorization: str | None) -> bool:
        if not self.enabled:
            return True
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.secret.encode())

    def namespace_ok(self, namespace: str, token: str) -> bool:
        if not self.enabled:
            return True
        return hmac.compare_digest(token.encode(), namespace_token(self.secret, namespace).encode())
