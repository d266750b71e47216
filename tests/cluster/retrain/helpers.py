"""Helpers of the RetrainSchedule cluster tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelops.api import GROUP, RETRAIN_SCHEDULES, VERSION
from tests.fixtures.operator import Operator

# --- helpers used by the tests ---------------------------------------------------------------------------

def schedule(name: str, dataset: Path, **spec: Any) -> dict[str, Any]:
    training = {"modelName": spec.pop("model", name), "dataset": {"uri": str(dataset), "target": "y",
                                                                  "task": "classification"},
                "search": {"trials": 2, "families": ["linear"], "timeoutSeconds": 60},
                "validation": {"minRows": 50}}
    training.update(spec.pop("training", {}))
    body = {"training": training, "job": {"backoffLimit": 0, "activeDeadlineSeconds": 300,
                                          "ttlSecondsAfterFinished": 3600}}
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RetrainSchedule", "metadata": {"name": name},
            "spec": body}


def create(kube: Any, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = kube.custom.create_namespaced_custom_object(GROUP, VERSION, ns, RETRAIN_SCHEDULES, obj)
    return out


def get(kube: Any, ns: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = kube.custom.get_namespaced_custom_object(GROUP, VERSION, ns, RETRAIN_SCHEDULES, name)
    return out


def patch(kube: Any, ns: str, name: str, body: dict[str, Any]) -> None:
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, RETRAIN_SCHEDULES, name, body)


def annotate(kube: Any, ns: str, name: str, key: str, value: str) -> None:
    patch(kube, ns, name, {"metadata": {"annotations": {key: value}}})


def runs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("runs") or [])


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def jobs(kube: Any, ns: str) -> list[Any]:
    return list(kube.batch.list_namespaced_job(ns).items)


def events(kube: Any, ns: str, name: str) -> list[str]:
    items = kube.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    # creationTimestamp has one-second resolution: events of the same second are ordered by resourceVersion
    # (the etcd revision of their creation, increasing on this single-etcd control plane)
    return [e.reason for e in sorted(items, key=lambda e: (e.metadata.creation_timestamp,
                                                           int(e.metadata.resource_version)))]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.25,
             operator: Operator | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    tail = operator.log.read_text()[-4000:] if operator and operator.log.exists() else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{tail}")


FINISHED = {"Succeeded", "GateFailed", "AwaitingApproval", "Approved", "Rejected", "Failed", "Replaced", "Lost"}
