"""A training Job and its Pods reduced to what the RetrainSchedule tick needs (pure; beside kserve_status)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelops.api.types import JobView
from modelops.api.vocabulary import TRAINER_CONTAINER


def job_view(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobView:
    """The Job's final condition and the latest terminated trainer container among its Pods."""
    status = job.get("status") or {}
    finished, reason, message, finished_at = "", "", "", None
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            finished, reason, message = cond["type"], cond.get("reason", ""), cond.get("message", "")
            finished_at = cond.get("lastTransitionTime")
    best: Mapping[str, Any] | None = None
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if cs.get("name") == TRAINER_CONTAINER and term and (
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


def job_views(jobs: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]) -> dict[str, JobView]:
    """Job name -> view, for the Jobs not being deleted (Replace, history: as good as gone)."""
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
        if job:
            by_job.setdefault(job, []).append(pod)
    return {job["metadata"]["name"]: job_view(job, by_job.get(job["metadata"]["name"], []))
            for job in jobs if not job["metadata"].get("deletionTimestamp")}
