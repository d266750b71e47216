"""Plain-JSON requests to the Kubernetes API over httpx (the operator's only way in).

Why not the official `kubernetes` client: since kubernetes 35 its generated API classes are
pydantic-validated, and importing them builds all of that (measured with kubernetes 37 in a fresh
interpreter: the ApiClient alone ~49 MB of RSS, with CoreV1Api ~129 MB); even the bare `kubernetes.client`
package, which kopf also imports whenever it is installed, is ~28 MB. The operator makes a dozen kinds of
calls and wants JSON anyway (the pure layers see `kubectl get -o json` shapes), and httpx is already
loaded for MLflow, Prometheus and the webhooks. Credentials: modelops.kubeconfig.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from modelops.kubeconfig import Credentials


def path(*parts: str) -> str:
    """`/api/v1` + escaped segments, e.g. path("namespaces", ns, "secrets", name)."""
    return "/".join(["/api/v1", *(quote(p, safe="") for p in parts)])


def group_path(group: str, version: str, *parts: str) -> str:
    return "/".join([f"/apis/{group}/{version}", *(quote(p, safe="") for p in parts)])


class ApiError(Exception):
    """A non-2xx answer: the HTTP status and the API server's message (its Status object's, if any)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_message(status: int, reason: str, data: bytes) -> str:
    try:
        return str(json.loads(data)["message"])
    except (ValueError, KeyError, TypeError):
        return f"{status} {reason}".strip()


class Transport:
    """One connection pool to the API server, shared by the controller's threads (httpx.Client is)."""

    def __init__(self, creds: Credentials, pool: int = 16, timeout: float = 30.0) -> None:
        self.creds = creds
        self.http = httpx.Client(base_url=creds.server, verify=creds.verify,
                                 timeout=httpx.Timeout(timeout, connect=5.0),
                                 limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool))

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, resource_path: str, *, query: Mapping[str, str] | None = None,
                body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        """One request; the decoded JSON answer. Non-2xx raises ApiError; no answer raises httpx's
        TransportError (an OSError-like failure: connection refused or reset, TLS, timeout)."""
        headers = {"Accept": "application/json", **self.creds.headers()}
        content = None
        if body is not None:
            headers["Content-Type"] = content_type
            content = json.dumps(body, separators=(",", ":")).encode()
        resp = self.http.request(method, resource_path, params=dict(query or {}), content=content, headers=headers)
        data = resp.content
        if not 200 <= resp.status_code <= 299:
            raise ApiError(resp.status_code, error_message(resp.status_code, resp.reason_phrase, data))
        if not data:
            return {}
        out: dict[str, Any] = json.loads(data)
        return out
