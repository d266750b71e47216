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
from dataclasses import dataclass, field

from modelops.formats.drift_url import NAMESPACE_PATH, logger_url, namespace_token

__all__ = ["NAMESPACE_PATH", "Auth", "logger_url", "namespace_token"]

#: verified namespace tokens kept (see Auth._verified)
CACHED_NAMESPACES = 4096


@dataclass(frozen=True)
class Auth:
    """The exporter's side. `secret` empty: authentication is off (only with --no-auth)."""

    secret: str
    # namespace -> its token, for namespaces whose token was presented and verified: an event POST then costs a
    # dict lookup and a constant-time compare instead of an HMAC (bounded: only verified namespaces get in, and
    # the cache is emptied when it reaches CACHED_NAMESPACES)
    _verified: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

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
        presented = token.encode()
        known = self._verified.get(namespace)
        if known is not None:
            return hmac.compare_digest(presented, known)
        expected = namespace_token(self.secret, namespace).encode()
        if not hmac.compare_digest(presented, expected):
            return False
        if len(self._verified) >= CACHED_NAMESPACES:
            self._verified.clear()
        self._verified[namespace] = expected
        return True
