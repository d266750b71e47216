"""Plain-JSON requests to the Kubernetes API through the official client's ApiClient (the operator's only way in).

Why not `client.CoreV1Api` / `client.BatchV1Api`: since kubernetes 35 the generated API classes are
pydantic-validated (`@validate_call` on every method, pydantic models for every type), and importing them
builds all of that. Measured with kubernetes 37 in a fresh interpreter: the ApiClient alone costs ~49 MB of
RSS, with CustomObjectsApi ~58 MB, with CoreV1Api ~129 MB. The operator makes a dozen kinds of calls and
wants JSON anyway (the pure layers see `kubectl get -o json` shapes), so it goes through the two ApiClient
entry points every generated method ends in, `param_serialize` and `call_api`: same credentials, TLS,
connection pool and retries as the generated methods, none of their import cost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from kubernetes.client.exceptions import ApiException


def path(*parts: str) -> str:
    """`/api/v1` + escaped segments, e.g. path("namespaces", ns, "secrets", name)."""
    return "/".join(["/api/v1", *(quote(p, safe="") for p in parts)])


def group_path(group: str, version: str, *parts: str) -> str:
    return "/".join([f"/apis/{group}/{version}", *(quote(p, safe="") for p in parts)])


def request(api: Any, method: str, resource_path: str, *, query: Mapping[str, str] | None = None,
            body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
    """One request; the decoded JSON answer. Non-2xx raises the client's ApiException (status, reason, body),
    exactly as the generated methods do."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    params = api.param_serialize(method=method, resource_path=resource_path, query_params=list((query or {}).items()),
                                 header_params=headers, body=body, auth_settings=["BearerToken"])
    resp = api.call_api(*params)
    data = resp.read()
    if not 200 <= resp.status <= 299:
        raise ApiException.from_response(http_resp=resp, body=data.decode("utf-8", "replace") if data else None,
                                         data=None)
    if not data:
        return {}
    out: dict[str, Any] = json.loads(data)
    return out
