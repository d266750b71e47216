"""A small async client for the few Kubernetes calls the console makes (httpx, JSON in and out).

Credentials: in-cluster (the Pod's ServiceAccount token, re-read on every call since kubelet rotates it,
and the cluster CA) or a kubeconfig (token, or client certificate and key, inline or as files). No
impersonation: every call is made as the console itself; users are only *asked about* (TokenReview,
SubjectAccessReview).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from modelops import kubeconfig as credentials

GROUP, VERSION = "modelops.dev", "v1alpha1"


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Kube:
    def __init__(self, server: str, ssl_ctx: ssl.SSLContext | bool, token: str = "",
                 token_file: str = "", timeout: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self._token, self._token_file = token, token_file
        self.http = httpx.AsyncClient(base_url=self.server, verify=ssl_ctx, timeout=timeout,
                                      limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))

    @classmethod
    def from_env(cls, kubeconfig: str = "") -> Kube:
        """In-cluster or kubeconfig credentials, as the operator reads them (modelops.kubeconfig)."""
        creds = credentials.load(kubeconfig)
        return cls(creds.server, creds.verify, token=creds.token, token_file=creds.token_file)

    async def close(self) -> None:
        await self.http.aclose()

    def _headers(self) -> dict[str, str]:
        token = self._token
        if self._token_file:
            token = Path(self._token_file).read_text().strip()
        h = {"Accept": "application/json"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      json: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        headers = self._headers()
        content = None
        if json is not None:
            import json as _json

            headers["Content-Type"] = content_type
            content = _json.dumps(json).encode()
        resp = await self.http.request(method, path, params=params, content=content, headers=headers)
        if resp.status_code >= 300:
            try:
                msg = resp.json().get("message", resp.text)
            except ValueError:
                msg = resp.text
            raise KubeError(resp.status_code, str(msg)[:500])
        out: dict[str, Any] = resp.json() if resp.content else {}
        return out

    # ---- our kinds
    @staticmethod
    def custom_path(plural: str, namespace: str | None = None, name: str | None = None,
                    group: str = GROUP, version: str = VERSION) -> str:
        p = f"/apis/{group}/{version}"
        if namespace:
            p += f"/namespaces/{quote(namespace, safe='')}"
        p += f"/{plural}"
        if name:
            p += f"/{quote(name, safe='')}"
        return p

    async def list_objects(self, plural: str, namespaces: list[str] | None = None, group: str = GROUP,
                   version: str = VERSION) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for ns in namespaces or [None]:  # type: ignore[list-item]
            cont = ""
            while True:
                params = {"limit": "500", **({"continue": cont} if cont else {})}
                doc = await self.request("GET", self.custom_path(plural, ns, group=group, version=version),
                                         params=params)
                items += doc.get("items") or []
                cont = (doc.get("metadata") or {}).get("continue") or ""
                if not cont:
                    break
        return items

    async def get(self, plural: str, namespace: str, name: str, group: str = GROUP,
                  version: str = VERSION) -> dict[str, Any]:
        return await self.request("GET", self.custom_path(plural, namespace, name, group, version))

    async def merge_patch(self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", self.custom_path(plural, namespace, name), json=patch,
                                  content_type="application/merge-patch+json")

    # ---- who is asking
    async def token_review(self, token: str) -> dict[str, Any]:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        return (await self.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", json=body)).get(
            "status") or {}

    async def access_review(self, user: Mapping[str, Any], attrs: Mapping[str, str]) -> tuple[bool, str]:
        spec: dict[str, Any] = {"resourceAttributes": dict(attrs), "user": user.get("username", "")}
        for key in ("groups", "uid", "extra"):
            if user.get(key):
                spec[key] = user[key]
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        st = (await self.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", json=body)).get(
            "status") or {}
        return bool(st.get("allowed")) and not st.get("denied"), str(st.get("reason") or "")

    async def create_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str,
                           now: str) -> None:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace", "default")
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta.get('name', 'x')}.", "namespace": ns},
                "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                                   "name": meta.get("name"), "namespace": ns, "uid": meta.get("uid"),
                                   "resourceVersion": meta.get("resourceVersion")},
                "type": type_, "reason": reason, "message": message[:1024], "firstTimestamp": now,
                "lastTimestamp": now, "count": 1, "source": {"component": "modelops-console"},
                "reportingComponent": "modelops-console", "reportingInstance": os.environ.get("HOSTNAME", "console")}
        await self.request("POST", f"/api/v1/namespaces/{quote(ns, safe='')}/events", json=body)

    async def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        doc = await self.request("GET", f"/api/v1/namespaces/{quote(namespace, safe='')}/events",
                                 params={"fieldSelector": f"involvedObject.name={name}"})
        return list(doc.get("items") or [])
