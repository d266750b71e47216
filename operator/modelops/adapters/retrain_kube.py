"""The Kubernetes API calls of the RetrainSchedule controller (sync client; the handler runs them in threads).

Objects travel as plain JSON dicts (camelCase, as the API server sends them) so the pure layers see the
same shapes as `kubectl get -o json`.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

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


def _json(resp: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resp.data)
    return data


class Kube:
    def __init__(self, api: client.ApiClient | None = None) -> None:
        api = api or api_client()
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)

    # the RetrainSchedule
    def get_schedule(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, RETRAIN_SCHEDULES, name,
                                                                  _preload_content=False))
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
            return _json(self.custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], RETRAIN_SCHEDULES, meta["name"], body, _preload_content=False))
        except ApiException as exc:
            if exc.status in (404, 409):
                raise Conflict(f"{meta['namespace']}/{meta['name']}: {exc.reason}") from None
            raise

    # training Jobs
    def observe_jobs(self, namespace: str, schedule: str) -> dict[str, JobView]:
        selector = f"{LABEL_OWNER_KIND}={RETRAIN_SCHEDULE},{LABEL_OWNER_NAME}={schedule}"
        jobs = _json(self.batch.list_namespaced_job(namespace, label_selector=selector,
                                                    _preload_content=False))["items"]
        pods = _json(self.core.list_namespaced_pod(namespace, label_selector=selector,
                                                   _preload_content=False))["items"]
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
                self.batch.create_namespaced_job(ns, manifest, _preload_content=False)
            elif manifest["kind"] == "ConfigMap":
                self.core.create_namespaced_config_map(ns, manifest, _preload_content=False)
            else:
                raise ValueError(f"unexpected kind {manifest['kind']}")
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job, its Pods (the Pods' processes are stopped) and its spec ConfigMap; absent is fine."""
        for call in (lambda: self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background"),
                     lambda: self.core.delete_namespaced_config_map(name, namespace)):
            try:
                call()
            except ApiException as exc:
                if exc.status != 404:
                    raise

    # secrets, read only when a side effect needs them and never kept
    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        try:
            secret = _json(self.core.read_namespaced_secret(name, namespace, _preload_content=False))
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
        self.core.create_namespaced_event(meta["namespace"], body, _preload_content=False)


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
