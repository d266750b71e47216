"""The modelops API: group, versions, kinds and the annotations users and the operator exchange."""

from __future__ import annotations

#: API group of both custom resources.
GROUP = "modelops.dev"
#: The served and stored version.
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: ModelDeployment: MLflow alias -> KServe InferenceService, canary rollout.
MODEL_DEPLOYMENT = "ModelDeployment"
MODEL_DEPLOYMENTS = "modeldeployments"
#: RetrainSchedule: cron / drift / manual triggers -> training Jobs.
RETRAIN_SCHEDULE = "RetrainSchedule"
RETRAIN_SCHEDULES = "retrainschedules"

#: Setting this annotation to a new value (any string, a timestamp by convention) starts a manual run.
ANNOTATION_RETRAIN_REQUESTED = f"{GROUP}/retrain-requested-at"
#: Approve / reject a version held for approval: the value is the MLflow version number.
ANNOTATION_APPROVE = f"{GROUP}/approve"
ANNOTATION_REJECT = f"{GROUP}/reject"

#: Labels on every child object, so `kubectl get -l` finds what belongs to which resource.
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_OWNER_KIND = f"{GROUP}/owner-kind"
LABEL_OWNER_NAME = f"{GROUP}/owner-name"
