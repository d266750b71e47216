"""The words modelops shares with MLflow and with users, written once.

MLflow aliases and version tags are read and written by the operator, the trainer and people; the
annotations are what `kubectl annotate` sets on a ModelDeployment or RetrainSchedule.
"""

from __future__ import annotations

from modelops.api import GROUP

#: Alias the operator tracks when a ModelDeployment names neither alias nor version.
CHAMPION_ALIAS = "champion"
#: Alias of a version that beat the champion (set by the trainer, or by an approval).
CHALLENGER_ALIAS = "challenger"

#: Version tag marking a version rolled back; such a version is never rolled out again by itself.
TAG_REJECTED = f"{GROUP}/rejected"
TAG_PROMOTED_AT = f"{GROUP}/promoted-at"
TAG_PREVIOUS = f"{GROUP}/previous-version"
#: Version tag the trainer sets to "pending" and an approval decision sets to approved / rejected.
TAG_APPROVAL = f"{GROUP}/approval"
#: Version tag a publisher may set to name the exact URI KServe should load.
TAG_STORAGE_URI = f"{GROUP}/storage-uri"

#: Annotations a person sets on a ModelDeployment.
ANN_APPROVE = f"{GROUP}/approve"
ANN_REJECT = f"{GROUP}/reject"
ANN_PAUSE = f"{GROUP}/pause"
ANN_ABORT = f"{GROUP}/abort"

#: Name of the trainer container in a training Job's Pod.
TRAINER_CONTAINER = "trainer"

#: Value of app.kubernetes.io/managed-by on every child object, and the component of every Event.
MANAGER = "modelops"
#: The Event source (`source.component`, `reportingComponent`) of both kinds.
EVENT_COMPONENT = "modelops"

#: Label a Secret must carry (value "true") before the operator uses it (MLflow credentials, webhook URLs):
#: a resource author can name any Secret, but only those an administrator labelled for modelops are read
#: (issue 16, reliability review M8).
LABEL_SECRET_READABLE = f"{GROUP}/operator-readable"
