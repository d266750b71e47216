"""The Kubernetes API calls of the RetrainSchedule controller (sync client; the handler runs them in threads).

Objects travel as plain JSON dicts (camelCase, as the API server sends them) so the pure layers see the
same shapes as `kubectl get -o json`.
"""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelops.adapters import kube_rest
from modelops.api import (
    GROUP,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    RETRAIN_SCHEDULE,
    RETRAIN_SCHEDULES,
    VERSION,
)
from modelops.decide.retrain import Event, JobView
from modelops.desired.training_job import CONTAINER

_lock = threading.Lock()
_api: client.ApiClient | None = None


class Conflict(RuntimeError):
    """The object changed since it was read; read it again and retry."""


def api_client() -> client.ApiClient:
    """In-cluster credentials if present, else the kubeconfig (KUBECONFIG or ~/.kube/config); made once."""
    global _api
    with _lock:
        if _api is None:
            cfg = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=cfg)
            except config.ConfigException:
                config.load_kube_config(client_configuration=cfg)
            cfg.connection_pool_maxsize = 16
            _api = client.ApiClient(cfg)
        return _api


class Kube:
    def __init__(self, api: client.ApiClient | None = None) -> None:
        # plain JSON through kube_rest: the generated CoreV1Api/BatchV1Api cost ~70 MB of RSS to import
        self.api = api or api_client()

    # the RetrainSchedule
    def get_schedule(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return kube_rest.request(self.api, "GET", kube_rest.group_path(GROUP, VERSION, "namespaces", namespace,
                                                                           RETRAIN_SCHEDULES, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def replace_status(self, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """PUT the status with the resourceVersion that was read: a concurrent change makes this a Conflict."""
        meta = obj["metadata"]
        body = {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
                "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "resourceVersion": meta["resourceVersion"]},
                "spec": obj.get("spec"), "status": status}
        try:
            return kube_rest.request(self.api, "PUT", kube_rest.group_path(
                GROUP, VERSION, "namespaces", meta["namespace"], RETRAIN_SCHEDULES, meta["name"], "status"), body=body)
        except ApiException as exc:
            if exc.status in (404, 409):
                raise Conflict(f"{meta['namespace']}/{meta['name']}: {exc.reason}") from None
            raise

    # training Jobs
    def observe_jobs(self, namespace: str, schedule: str) -> dict[str, JobView]:
        selector = f"{LABEL_OWNER_KIND}={RETRAIN_SCHEDULE},{LABEL_OWNER_NAME}={schedule}"
        query = {"labelSelector": selector}
        jobs = kube_rest.request(self.api, "GET", kube_rest.group_path("batch", "v1", "namespaces", namespace, "jobs"),
                                 query=query)["items"]
        pods = kube_rest.request(self.api, "GET", kube_rest.path("namespaces", namespace, "pods"),
                                 query=query)["items"]
        by_job: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
            if job:
                by_job.setdefault(job, []).append(pod)
        out = {}
        for job in jobs:
            name = job["metadata"]["name"]
            if job["metadata"].get("deletionTimestamp"):
                continue  # being deleted (Replace, history): as good as gone
            out[name] = job_view(job, by_job.get(name, []))
        return out

    def create_if_absent(self, manifest: dict[str, Any]) -> bool:
        """Create; an existing object of that name is fine (the name is the idempotency key). True if created."""
        ns = manifest["metadata"]["namespace"]
        try:
            if manifest["kind"] == "Job":
                kube_rest.request(self.api, "POST", kube_rest.group_path("batch", "v1", "namespaces", ns, "jobs"),
                                  body=manifest)
            elif manifest["kind"] == "ConfigMap":
                kube_rest.request(self.api, "POST", kube_rest.path("namespaces", ns, "configmaps"), body=manifest)
            else:
                raise ValueError(f"unexpected kind {manifest['kind']}")
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job, its Pods (the Pods' processes are stopped) and its spec ConfigMap; absent is fine."""
        for resource_path, query in (
                (kube_rest.group_path("batch", "v1", "namespaces", namespace, "jobs", name),
                 {"propagationPolicy": "Background"}),
                (kube_rest.path("namespaces", namespace, "configmaps", name), {})):
            try:
                kube_rest.request(self.api, "DELETE", resource_path, query=query)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    # secrets, read only when a side effect needs them and never kept
    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        try:
            secret = kube_rest.request(self.api, "GET", kube_rest.path("namespaces", namespace, "secrets", name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        raw = (secret.get("data") or {}).get(key)
        return base64.b64decode(raw).decode() if raw is not None else None

    # Events
    def post_event(self, obj: dict[str, Any], event: Event, now: datetime | None = None) -> None:
        meta = obj["metadata"]
        ts = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion")},
            "type": event.type, "reason": event.reason, "message": event.message[:1024],
            "source": {"component": "modelops-operator"}, "reportingComponent": "modelops.dev/operator",
            "reportingInstance": "modelops-operator", "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
        }
        kube_rest.request(self.api, "POST", kube_rest.path("namespaces", meta["namespace"], "events"), body=body)


def job_view(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobView:
    """Reduce a Job and its Pods to what the tick needs (the latest terminated trainer container)."""
    status = job.get("status") or {}
    finished, reason, message, finished_at = "", "", "", None
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            finished, reason, message = cond["type"], cond.get("reason", ""), cond.get("message", "")
            finished_at = cond.get("lastTransitionTime")
    best: dict[str, Any] | None = None
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if cs.get("name") == CONTAINER and term and (
                    best is None or str(term.get("finishedAt") or "") >= str(best.get("finishedAt") or "")):
                best = term
    return JobView(
        name=job["metadata"]["name"], finished=finished,
        start_time=status.get("startTime") or job["metadata"].get("creationTimestamp"),
        completion_time=status.get("completionTime") or finished_at,
        reason=reason if finished == "Failed" else "", job_message=message if finished == "Failed" else "",
        pod_reason=(best or {}).get("reason", ""), exit_code=(best or {}).get("exitCode"),
        termination_message=(best or {}).get("message", ""),
    )
