"""The training Job of one run and the ConfigMap holding its spec, as manifest dicts (pure).

Both are named after the run (`decide.triggers.job_name`), so creating them is create-if-absent and a
retried create can never start a second Job for the same firing. The spec travels as a ConfigMap mounted
read-only; credentials only ever travel as references (`env[].valueFrom`, `envFrom`, the MLflow
credentials Secret): nothing secret is copied into the Job, the ConfigMap, status or logs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelops.api import (
    API_VERSION,
    GROUP,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    LABEL_PART_OF,
    RETRAIN_SCHEDULE,
)
from modelops.api.vocabulary import MANAGER, TRAINER_CONTAINER

#: label with the run id on the Job, its Pods and the spec ConfigMap
LABEL_RUN = f"{GROUP}/run-id"
#: label with the trigger (manual, schedule, drift) of the run
LABEL_TRIGGER = f"{GROUP}/trigger"
#: annotation with what made the firing unique (the cron time, the request value, the drift key)
ANNOTATION_FIRING = f"{GROUP}/firing-key"
#: name of the trainer container (the outcome is read from its termination message)
CONTAINER = TRAINER_CONTAINER
#: where the spec ConfigMap is mounted, and the file `modelops train --spec` reads
SPEC_DIR = "/etc/modelops/train"
SPEC_FILE = "spec.json"
#: Kubernetes' default termination message path; the trainer writes its result JSON there
TERMINATION_MESSAGE_PATH = "/dev/termination-log"


@dataclass(frozen=True)
class JobDefaults:
    """Operator-wide defaults a RetrainSchedule may override."""

    trainer_image: str
    mlflow_tracking_uri: str
    image_pull_policy: str = "IfNotPresent"


def labels(schedule: str, rid: str = "", trigger: str = "") -> dict[str, str]:
    out = {LABEL_PART_OF: "modelops", LABEL_MANAGED_BY: MANAGER,
           LABEL_OWNER_KIND: RETRAIN_SCHEDULE, LABEL_OWNER_NAME: schedule}
    if rid:
        out[LABEL_RUN] = rid
    if trigger:
        out[LABEL_TRIGGER] = trigger
    return out


def owner_reference(rs: Mapping[str, Any]) -> dict[str, Any]:
    meta = rs["metadata"]
    return {"apiVersion": API_VERSION, "kind": RETRAIN_SCHEDULE, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def spec_config_map(rs: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """ConfigMap with `spec.training` as the trainer's spec file (named like the Job)."""
    meta = rs["metadata"]
    training = rs["spec"]["training"]
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": run["job"], "namespace": meta["namespace"],
                     "labels": labels(meta["name"], run["id"], run["trigger"]),
                     "ownerReferences": [owner_reference(rs)]},
        "data": {SPEC_FILE: json.dumps(training, indent=2, sort_keys=True) + "\n"},
    }


def _env(rs_spec: Mapping[str, Any], meta: Mapping[str, Any], run: Mapping[str, Any],
         defaults: JobDefaults) -> list[dict[str, Any]]:
    mlflow = rs_spec.get("mlflow") or {}
    env: list[dict[str, Any]] = [
        {"name": "MLFLOW_TRACKING_URI", "value": mlflow.get("trackingUri") or defaults.mlflow_tracking_uri},
        # the trainer's contract: where to write the result JSON, and an idempotency key (a retried Pod of
        # the same Job reports the version already registered instead of training again)
        {"name": "MODELOPS_TERMINATION_LOG", "value": TERMINATION_MESSAGE_PATH},
        {"name": "MODELOPS_RUN_KEY", "value": str(run["job"])},
        {"name": "MODELOPS_RETRAIN_SCHEDULE", "value": f"{meta['namespace']}/{meta['name']}"},
        {"name": "MODELOPS_RUN_ID", "value": str(run["id"])},
        {"name": "MODELOPS_TRIGGER", "value": str(run["trigger"])},
    ]
    # a user variable of the same name replaces ours (e.g. a different MLFLOW_TRACKING_URI per schedule)
    user = [dict(e) for e in rs_spec.get("env") or []]
    names = {u.get("name") for u in user}
    return [e for e in env if e["name"] not in names] + user


def _env_from(rs_spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = [dict(e) for e in rs_spec.get("envFrom") or []]
    creds = (rs_spec.get("mlflow") or {}).get("credentialsSecretRef")
    if creds:
        out.append({"secretRef": {"name": creds["name"]}})
    return out


#: The `restricted` Pod Security Standard (issue 16, L4): a training Pod is admitted in a namespace that
#: enforces it. The images run as UID 10001; an image that runs as root is refused by the kubelet.
POD_SECURITY: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                      "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def training_job(rs: Mapping[str, Any], run: Mapping[str, Any], defaults: JobDefaults) -> dict[str, Any]:
    """The batch/v1 Job that runs `modelops train --spec` for `run` (an entry of status.runs)."""
    meta = rs["metadata"]
    spec = rs["spec"]
    job_settings = spec.get("job") or {}
    lbl = labels(meta["name"], run["id"], run["trigger"])
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.get("image") or defaults.trainer_image,
        "imagePullPolicy": defaults.image_pull_policy,
        "command": ["modelops", "train", "--spec", f"{SPEC_DIR}/{SPEC_FILE}"],
        "env": _env(spec, meta, run, defaults),
        "resources": dict(spec.get("resources") or {}),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        # if the trainer dies before writing its result, the log tail still says why
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": CONTAINER_SECURITY,
    }
    env_from = _env_from(spec)
    if env_from:
        container["envFrom"] = env_from
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": POD_SECURITY,
        "containers": [container],
        "volumes": [{"name": "spec", "configMap": {"name": run["job"]}},
                    {"name": "tmp", "emptyDir": {}}],
    }
    if spec.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = spec["serviceAccountName"]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": run["job"], "namespace": meta["namespace"], "labels": lbl,
                     "annotations": {ANNOTATION_FIRING: str(run.get("firingKey", ""))},
                     "ownerReferences": [owner_reference(rs)]},
        "spec": {
            "backoffLimit": int(job_settings.get("backoffLimit", 1)),
            "activeDeadlineSeconds": int(job_settings.get("activeDeadlineSeconds", 3600)),
            "ttlSecondsAfterFinished": int(job_settings.get("ttlSecondsAfterFinished", 86400)),
            "template": {"metadata": {"labels": lbl}, "spec": pod_spec},
        },
    }
