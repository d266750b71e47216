"""The Kubernetes API, for the controllers: custom objects, server-side apply, status, events, discovery.

Blocking (the official `kubernetes` client's ApiClient: credentials, TLS, connection pool); handlers call it
from a bounded thread pool. Requests go through `kube_rest` as plain JSON, not through the generated API
classes (see kube_rest for the memory that saves).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelops.adapters import kube_rest

#: Field manager of every server-side apply the operator makes.
FIELD_MANAGER = "modelops"


class Conflict(Exception):
    """The object changed since it was read (optimistic concurrency): re-read and decide again."""


def load_api_client(pool: int = 16) -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)


class Kube:
    def __init__(self, api: client.ApiClient | None = None, cache_ttl: float = 60.0) -> None:
        self.api = api or load_api_client()
        self._ttl = cache_ttl
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------ cached lookups
    def _cached(self, key: str, load: Any) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and now - hit[0] < self._ttl:
                return hit[1]
        value = load()
        with self._lock:
            self._cache[key] = (now, value)
        return value

    def accepts_field(self, group: str, version: str, plural: str, namespace: str, probe: Mapping[str, Any],
                      field: str) -> bool:
        """Whether the installed CRD declares `field` (e.g. "spec.canary"): a server-side dry-run create of
        `probe` with strict field validation, which names unknown fields. Nothing is stored, and it costs
        one small request instead of reading the CRD itself (KServe's is ~2 MB of JSON to parse)."""
        def load() -> bool:
            try:
                kube_rest.request(self.api, "POST", kube_rest.group_path(group, version, "namespaces", namespace, plural),
                                  query={"dryRun": "All", "fieldValidation": "Strict"}, body=dict(probe))
            except ApiException as exc:
                if exc.status == 404:
                    return False  # the CRD is not installed at all
                return f'unknown field "{field}"' not in (exc.body or "")
            return True
        value: bool = self._cached(f"field:{group}/{version}/{plural}:{field}", load)
        return value

    def group_version_served(self, group: str, version: str) -> bool:
        """Whether the API server serves group/version (discovery; cached like the other lookups)."""
        def load() -> bool:
            try:
                kube_rest.request(self.api, "GET", f"/apis/{group}/{version}")
            except ApiException as exc:
                if exc.status in (403, 404):
                    return False
                raise
            return True
        value: bool = self._cached(f"gv:{group}/{version}", load)
        return value

    def config_map_value(self, namespace: str, name: str, key: str) -> str | None:
        def load() -> str | None:
            try:
                cm = kube_rest.request(self.api, "GET", kube_rest.path("namespaces", namespace, "configmaps", name))
            except ApiException as exc:
                if exc.status in (403, 404):
                    return None
                raise
            value: str | None = (cm.get("data") or {}).get(key)
            return value
        value: str | None = self._cached(f"cm:{namespace}/{name}:{key}", load)
        return value

    def service_ready(self, namespace: str, service: str) -> bool:
        """Whether a Service has at least one ready endpoint (its EndpointSlices, discovery.k8s.io/v1)."""
        slices = kube_rest.request(self.api, "GET", kube_rest.group_path("discovery.k8s.io", "v1", "namespaces",
                                                                         namespace, "endpointslices"),
                                   query={"labelSelector": f"kubernetes.io/service-name={service}"})
        return any((ep.get("conditions") or {}).get("ready") is not False and ep.get("addresses")
                   for sl in slices.get("items") or [] for ep in sl.get("endpoints") or [])

    def secret_values(self, namespace: str, name: str) -> dict[str, str]:
        secret = kube_rest.request(self.api, "GET", kube_rest.path("namespaces", namespace, "secrets", name))
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    # ------------------------------------------------------------------------------ custom objects
    def get(self, group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = kube_rest.request(self.api, "GET", kube_rest.group_path(group, version, "namespaces", namespace,
                                                                          plural, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def apply(self, group: str, version: str, plural: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply with modelops' field manager (force: modelops owns what it writes)."""
        meta = manifest["metadata"]
        return kube_rest.request(
            self.api, "PATCH", kube_rest.group_path(group, version, "namespaces", meta["namespace"], plural,
                                                    meta["name"]),
            query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=dict(manifest),
            content_type="application/apply-patch+yaml")

    def patch_status(self, group: str, version: str, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any], resource_version: str | None) -> dict[str, Any]:
        """Merge-patch the status subresource; with `resource_version`, only if the object is unchanged."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            obj = kube_rest.request(self.api, "PATCH", kube_rest.group_path(group, version, "namespaces", namespace,
                                                                            plural, name, "status"),
                                    body=body, content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"{plural}/{name} changed while it was reconciled") from exc
            raise
        return obj

    def event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str,
              component: str = "modelops") -> None:
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "reason": reason, "message": message[:1024], "type": type_, "firstTimestamp": now,
            "lastTimestamp": now, "count": 1, "source": {"component": component},
            "reportingComponent": component, "reportingInstance": component,
        }
        kube_rest.request(self.api, "POST", kube_rest.path("namespaces", meta["namespace"], "events"), body=body)


def api_error_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (ValueError, KeyError, TypeError):
        return f"{exc.status} {exc.reason}"
