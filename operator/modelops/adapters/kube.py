"""The Kubernetes API, for both controllers: custom objects, server-side apply, status, Jobs, Secrets,
Events, Leases and discovery.

Blocking (one httpx connection pool, credentials from modelops.kubeconfig); the controller calls it from
its bounded thread pool. Requests go through `kube_rest` as plain JSON (see kube_rest for why not the
`kubernetes` package). Every failure leaves this module as a `KubeError` (status code and the API
server's message), a write that lost a race as its subclass `Conflict`; callers never see httpx's types.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from modelops import kubeconfig
from modelops.adapters import kube_rest
from modelops.api.times import format_time
from modelops.api.vocabulary import EVENT_COMPONENT, LABEL_SECRET_READABLE, MANAGER

#: Field manager of every server-side apply the operator makes.
FIELD_MANAGER = MANAGER
T = TypeVar("T")


class KubeError(Exception):
    """The API server refused or could not be reached. `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Conflict(KubeError):
    """The object changed since it was read (optimistic concurrency): re-read and decide again."""


def connect(kubeconfig_file: str = "", pool: int = 16) -> kube_rest.Transport:
    """In-cluster credentials if present, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    return kube_rest.Transport(kubeconfig.load(kubeconfig_file), pool=pool)


_PATHS = {("batch/v1", "Job"): ("batch", "v1", "jobs"), ("v1", "ConfigMap"): ("", "v1", "configmaps"),
          ("v1", "Event"): ("", "v1", "events")}


def _collection(api_version: str, kind: str, namespace: str) -> str:
    group, version, plural = _PATHS[(api_version, kind)]
    if group:
        return kube_rest.group_path(group, version, "namespaces", namespace, plural)
    return kube_rest.path("namespaces", namespace, plural)


def event_name(involved_name: str, key: str) -> str:
    """A deterministic Event name for one outbox item, so posting it twice is a 409, not a second Event."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{involved_name[:200]}.{digest}"


class Kube:
    def __init__(self, transport: kube_rest.Transport | None = None, cache_ttl: float = 60.0) -> None:
        self.transport = transport or connect()
        self._ttl = cache_ttl
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------ plumbing
    def request(self, method: str, resource_path: str, *, query: Mapping[str, str] | None = None,
                body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        try:
            return self.transport.request(method, resource_path, query=query, body=body,
                                          content_type=content_type)
        except kube_rest.ApiError as exc:
            cls = Conflict if exc.status == 409 else KubeError
            raise cls(exc.status, exc.message) from None
        except (httpx.TransportError, OSError, ValueError) as exc:  # refused/reset, TLS, timeout, not JSON
            raise KubeError(0, f"Kubernetes API: {type(exc).__name__}: {exc}") from None

    def _get_or_none(self, resource_path: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", resource_path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def _cached(self, key: str, load: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and now - hit[0] < self._ttl:
                value: T = hit[1]
                return value
        loaded = load()
        with self._lock:
            self._cache[key] = (now, loaded)
        return loaded

    # ------------------------------------------------------------------------------ discovery
    def accepts_field(self, group: str, version: str, plural: str, namespace: str, probe: Mapping[str, Any],
                      field: str) -> bool:
        """Whether the installed CRD declares `field` (e.g. "spec.canary"): a server-side dry-run create of
        `probe` with strict field validation, which names unknown fields. Nothing is stored, and it costs
        one small request instead of reading the CRD itself (KServe's is ~2 MB of JSON to parse)."""
        def load() -> bool:
            try:
                self.request("POST", kube_rest.group_path(group, version, "namespaces", namespace, plural),
                             query={"dryRun": "All", "fieldValidation": "Strict"}, body=dict(probe))
            except KubeError as exc:
                if exc.status == 404:
                    return False  # the CRD is not installed at all
                return f'unknown field "{field}"' not in str(exc)
            return True
        return self._cached(f"field:{group}/{version}/{plural}:{field}", load)

    def group_version_served(self, group: str, version: str) -> bool:
        """Whether the API server serves group/version (discovery; cached like the other lookups)."""
        def load() -> bool:
            try:
                self.request("GET", f"/apis/{group}/{version}")
            except KubeError as exc:
                if exc.status in (403, 404):
                    return False
                raise
            return True
        return self._cached(f"gv:{group}/{version}", load)

    def config_map_value(self, namespace: str, name: str, key: str) -> str | None:
        def load() -> str | None:
            try:
                cm = self.request("GET", kube_rest.path("namespaces", namespace, "configmaps", name))
            except KubeError as exc:
                if exc.status in (403, 404):
                    return None
                raise
            value: str | None = (cm.get("data") or {}).get(key)
            return value
        return self._cached(f"cm:{namespace}/{name}:{key}", load)

    def service_ready(self, namespace: str, service: str) -> bool:
        """Whether a Service has at least one ready endpoint (its EndpointSlices, discovery.k8s.io/v1)."""
        slices = self.request("GET", kube_rest.group_path("discovery.k8s.io", "v1", "namespaces", namespace,
                                                          "endpointslices"),
                              query={"labelSelector": f"kubernetes.io/service-name={service}"})
        return any((ep.get("conditions") or {}).get("ready") is not False and ep.get("addresses")
                   for sl in slices.get("items") or [] for ep in sl.get("endpoints") or [])

    # ------------------------------------------------------------------------------ Services (a canary's, issue 13)
    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(kube_rest.path("namespaces", namespace, "services", name))

    def apply_service(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of a Service with modelops' field manager."""
        meta = manifest["metadata"]
        return self.request("PATCH", kube_rest.path("namespaces", meta["namespace"], "services", meta["name"]),
                            query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=dict(manifest),
                            content_type="application/apply-patch+yaml")

    def delete_service(self, namespace: str, name: str) -> None:
        """Delete a Service; absent is fine."""
        try:
            self.request("DELETE", kube_rest.path("namespaces", namespace, "services", name))
        except KubeError as exc:
            if exc.status != 404:
                raise

    # ------------------------------------------------------------------------------ secrets (never kept)
    def secret_values(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's data, decoded; KubeError (404 included) when it cannot be read, 403 when it is not
        labelled for modelops (`readable_secret_data`)."""
        secret = self.request("GET", kube_rest.path("namespaces", namespace, "secrets", name))
        return readable_secret_data(secret, namespace, name)

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret; None when the Secret or the key is missing; KubeError(403) when the Secret is
        not labelled for modelops."""
        secret = self._get_or_none(kube_rest.path("namespaces", namespace, "secrets", name))
        if secret is None:
            return None
        return readable_secret_data(secret, namespace, name).get(key)

    # ------------------------------------------------------------------------------ custom objects
    def get(self, group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(kube_rest.group_path(group, version, "namespaces", namespace, plural, name))

    def apply(self, group: str, version: str, plural: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply with modelops' field manager (force: modelops owns what it writes)."""
        meta = manifest["metadata"]
        return self.request(
            "PATCH", kube_rest.group_path(group, version, "namespaces", meta["namespace"], plural, meta["name"]),
            query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=dict(manifest),
            content_type="application/apply-patch+yaml")

    def patch_status(self, group: str, version: str, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any], resource_version: str | None,
                     field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Merge-patch the status subresource; with `resource_version`, only if the object is unchanged
        (Conflict otherwise, also when the object is gone)."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return self.request("PATCH", kube_rest.group_path(group, version, "namespaces", namespace, plural,
                                                              name, "status"),
                                query={"fieldManager": field_manager},
                                body=body, content_type="application/merge-patch+json")
        except KubeError as exc:
            if exc.status in (404, 409):
                raise Conflict(exc.status, f"{plural}/{name} changed while it was reconciled") from None
            raise

    # ------------------------------------------------------------------------------ Jobs and ConfigMaps
    def list_jobs_and_pods(self, namespace: str, selector: str) -> tuple[list[dict[str, Any]],
                                                                         list[dict[str, Any]]]:
        query = {"labelSelector": selector}
        jobs = self.request("GET", kube_rest.group_path("batch", "v1", "namespaces", namespace, "jobs"),
                            query=query).get("items") or []
        pods = self.request("GET", kube_rest.path("namespaces", namespace, "pods"), query=query).get("items") or []
        return jobs, pods

    def create_if_absent(self, manifest: Mapping[str, Any]) -> bool:
        """Create; an existing object of that name is fine (the name is the idempotency key). True if created."""
        meta = manifest["metadata"]
        try:
            self.request("POST", _collection(manifest["apiVersion"], manifest["kind"], meta["namespace"]),
                         body=dict(manifest))
        except Conflict:
            return False
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job, its Pods (the Pods' processes are stopped) and its spec ConfigMap; absent is fine."""
        for resource_path, query in (
                (kube_rest.group_path("batch", "v1", "namespaces", namespace, "jobs", name),
                 {"propagationPolicy": "Background"}),
                (kube_rest.path("namespaces", namespace, "configmaps", name), {})):
            try:
                self.request("DELETE", resource_path, query=query)
            except KubeError as exc:
                if exc.status != 404:
                    raise

    # ------------------------------------------------------------------------------ Events
    def event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str, *, key: str = "",
              now: datetime | None = None, instance: str = EVENT_COMPONENT) -> bool:
        """Post an Event on `involved`, from the one modelops source. With `key` the Event's name is derived
        from it, so a second post of the same key is refused by the API server (409) and nothing is
        duplicated: returns False then, True when posted."""
        meta = involved["metadata"]
        stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        name_meta: dict[str, str] = ({"name": event_name(meta["name"], f"{meta.get('uid')}/{key}")} if key
                                     else {"generateName": f"{meta['name']}."})
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {**name_meta, "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "reason": reason, "message": message[:1024], "type": type_, "firstTimestamp": stamp,
            "lastTimestamp": stamp, "count": 1, "source": {"component": EVENT_COMPONENT},
            "reportingComponent": EVENT_COMPONENT, "reportingInstance": instance[:128],
        }
        try:
            self.request("POST", kube_rest.path("namespaces", meta["namespace"], "events"), body=body)
        except Conflict:
            return False
        return True

    # ------------------------------------------------------------------------------ Leases
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_or_none(kube_rest.group_path("coordination.k8s.io", "v1", "namespaces", namespace,
                                                      "leases", name))

    def create_lease(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Create the Lease; Conflict when someone else created it first."""
        return self.request("POST", kube_rest.group_path("coordination.k8s.io", "v1", "namespaces", namespace,
                                                         "leases"),
                            body={"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                  "metadata": {"name": name, "namespace": namespace}, "spec": dict(spec)})

    def replace_lease(self, lease: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
        """Update the Lease read as `lease` (its resourceVersion): Conflict when it changed meanwhile."""
        meta = lease["metadata"]
        return self.request("PUT", kube_rest.group_path("coordination.k8s.io", "v1", "namespaces",
                                                        meta["namespace"], "leases", meta["name"]),
                            body={"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                  "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                               "resourceVersion": meta["resourceVersion"]},
                                  "spec": dict(spec)})


def readable_secret_data(secret: Mapping[str, Any], namespace: str, name: str) -> dict[str, str]:
    """A Secret's data, decoded, if the Secret is labelled `modelops.dev/operator-readable: "true"`; else
    KubeError(403) naming the label, and nothing of the Secret is kept. Whoever may create a ModelDeployment
    or RetrainSchedule can name any Secret of the namespace; only those an administrator labelled for
    modelops are ever used (sent to MLflow as credentials or posted to as a webhook URL)."""
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_SECRET_READABLE) != "true":
        raise KubeError(403, f"Secret {namespace}/{name} is not labelled {LABEL_SECRET_READABLE}=true; the "
                             "operator uses only Secrets labelled for it")
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def micro_time(t: datetime) -> str:
    """A Lease's MicroTime (RFC 3339 with microseconds, UTC)."""
    return format_time(t)
