"""The Kubernetes API, for the controllers: custom objects, server-side apply, status, events, discovery.

Blocking (the official `kubernetes` client); handlers call it from a bounded thread pool.
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
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.apiext = client.ApiextensionsV1Api(self.api)
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
                self.custom.create_namespaced_custom_object(group, version, namespace, plural, dict(probe),
                                                            dry_run="All", field_validation="Strict")
            except ApiException as exc:
                if exc.status == 404:
                    return False  # the CRD is not installed at all
                return f'unknown field "{field}"' not in (exc.body or "")
            return True
        value: bool = self._cached(f"field:{group}/{version}/{plural}:{field}", load)
        return value

    def config_map_value(self, namespace: str, name: str, key: str) -> str | None:
        def load() -> str | None:
            try:
                cm = self.core.read_namespaced_config_map(name, namespace)
            except ApiException as exc:
                if exc.status in (403, 404):
                    return None
                raise
            return (cm.data or {}).get(key)
        value: str | None = self._cached(f"cm:{namespace}/{name}:{key}", load)
        return value

    def secret_values(self, namespace: str, name: str) -> dict[str, str]:
        secret = self.core.read_namespaced_secret(name, namespace)
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    # ------------------------------------------------------------------------------ custom objects
    def get(self, group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def apply(self, group: str, version: str, plural: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply with modelops' field manager (force: modelops owns what it writes)."""
        meta = manifest["metadata"]
        obj: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            group, version, meta["namespace"], plural, meta["name"], manifest,
            field_manager=FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml")
        return obj

    def patch_status(self, group: str, version: str, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any], resource_version: str | None) -> dict[str, Any]:
        """Merge-patch the status subresource; with `resource_version`, only if the object is unchanged."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            obj: dict[str, Any] = self.custom.patch_namespaced_custom_object_status(
                group, version, namespace, plural, name, body, _content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"{plural}/{name} changed while it was reconciled") from exc
            raise
        return obj

    def event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str,
              component: str = "modelops") -> None:
        meta = involved["metadata"]
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(api_version=involved["apiVersion"], kind=involved["kind"],
                                                     name=meta["name"], namespace=meta["namespace"],
                                                     uid=meta["uid"]),
            reason=reason, message=message[:1024], type=type_, first_timestamp=now, last_timestamp=now, count=1,
            source=client.V1EventSource(component=component), reporting_component=component,
            reporting_instance=component)
        self.core.create_namespaced_event(meta["namespace"], body)


def api_error_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (ValueError, KeyError, TypeError):
        return f"{exc.status} {exc.reason}"
