"""The contracts between the layers: what adapters observe, what `decide/` decides and `desired/` builds.

`decide/` (the state machines) and `desired/` (the manifest builders) both import these and never each
other; adapters return them. All frozen, all plain data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from modelops.api.times import format_time

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class ModelRef:
    """One servable model: an MLflow version (with its resolved artifact URI) or a plain storage URI."""

    storage_uri: str
    version: str = ""
    run_id: str = ""
    alias: str = ""
    #: reason from the version's modelops.dev/rejected tag, if it has one
    rejected: str = ""
    #: sha256 of its artifacts, from the version tag modelops.dev/artifact-sha256 (the model server verifies it)
    digest: str = ""

    def same(self, other: Mapping[str, Any] | None) -> bool:
        if not other:
            return False
        if self.version or other.get("version"):
            return self.version == other.get("version")
        return self.storage_uri == other.get("storageUri")

    def as_status(self, now: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {"storageUri": self.storage_uri, "resolvedAt": format_time(now)}
        for key, value in (("version", self.version), ("runId", self.run_id), ("alias", self.alias),
                           ("sha256", self.digest)):
            if value:
                out[key] = value
        return out

    def label(self) -> str:
        return f"version {self.version}" if self.version else self.storage_uri


def serving_name(ref: ModelRef) -> str:
    """The name a version serves under: "v12", or "u" + 8 hex of a plain storage URI.

    The InferenceService builder names the Standard-mode predictors after it (KServe names their Deployments and
    Services `<isvc>-<name>-predictor`), and the gateway split addresses them by it: a contract between desired/
    and decide/.
    """
    if ref.version:
        return f"v{ref.version}"
    return "u" + hashlib.sha256(ref.storage_uri.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ServingPlan:
    """What the InferenceService must serve: the builder in `desired` turns it into a manifest."""

    stable: ModelRef
    canary: ModelRef | None = None
    weight: int = 0
    #: Knative rollback: keep 100% on the last rolled-out revision while the stable spec is re-created
    pin_stable: bool = False


@dataclass(frozen=True)
class IsvcState:
    """The InferenceService as KServe reports it (status filled by KServe's controller)."""

    ready: bool = False
    #: KServe has observed the current generation, is Ready, and (Knative) the latest revision is ready
    settled: bool = False
    canary_ready: bool = False
    stable_revision: str = ""
    canary_revision: str = ""
    url: str = ""
    message: str = ""
    #: an InferenceService of this name exists but is not owned by this ModelDeployment
    foreign: bool = False
    #: the storage URI of the canary predictor in the InferenceService's spec ("" for none), read from the spec,
    #: not from metadata (KServe copies InferenceService metadata into the predictors' pod templates, issue 13);
    #: None when the caller does not know (hand-built states in tests). A rollout advances only when it is the
    #: canary of status.
    canary_uri: str | None = None


@dataclass(frozen=True)
class JobView:
    """What the controller observed of one training Job and its latest Pod."""

    name: str
    #: "" while running, else the Job's final condition: "Complete" or "Failed"
    finished: str = ""
    start_time: str | None = None
    completion_time: str | None = None
    #: reason / message of the Job's Failed condition (BackoffLimitExceeded, DeadlineExceeded, ...)
    reason: str = ""
    job_message: str = ""
    #: the trainer container's terminated state in the latest Pod
    pod_reason: str = ""
    exit_code: int | None = None
    termination_message: str = ""


@dataclass(frozen=True)
class Sample:
    """What one PromQL instant query returned: a value, no data, or an error.

    `reason` is a CamelCase word when there is no value (NoData, QueryFailed, PrometheusUnreachable,
    AmbiguousResult) and `message` says why; `error` is set when the query itself failed (the canary
    analysis counts errors apart from no data). A NaN value (0/0 rates) is kept as NaN: `has_value` is
    False for it.
    """

    value: float | None = None
    reason: str = ""
    message: str = ""
    error: str | None = None
    #: the labels of the one series a vector answer held (sorted name/value pairs; empty for a scalar)
    labels: tuple[tuple[str, str], ...] = ()

    def label(self, name: str) -> str:
        return next((v for k, v in self.labels if k == name), "")

    @property
    def has_value(self) -> bool:
        return self.error is None and self.value is not None and not math.isnan(self.value)


@dataclass(frozen=True)
class Buckets:
    """What one PromQL instant query over a histogram's buckets returned (`sum by (le) (increase(..._bucket[w]))`):
    each `le` bucket's cumulative count, no data, or an error.

    `counts` are (upper bound, cumulative count) pairs sorted by bound, the `le` label read as a number ("+Inf"
    is `math.inf`); equal bounds written differently ("1", "1.0") are summed into one. The counts are
    Prometheus' own: `increase()` extrapolates to the window's edges, so they need not be integers. `reason`,
    `message` and `error` mean what they mean on a `Sample`.
    """

    counts: tuple[tuple[float, float], ...] = ()
    reason: str = ""
    message: str = ""
    error: str | None = None

    @property
    def has_data(self) -> bool:
        return self.error is None and bool(self.counts)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event a tick decided to post on its object."""

    type: EventType
    reason: str
    message: str


#: One outbox item in status (`status.outbox[]`), the same envelope for both kinds:
#: `id` (unique within the object, deterministic), `kind` (what to do), the kind's fields, and the
#: executor's bookkeeping `attempts`, `lastError`, `notBefore` (next attempt), `createdTime`.
#: Kinds: `Event` (type, reason, message: posted exactly once under a name derived from the id),
#: `Notify`/`notify` (webhooks), `SetAlias`/`DeleteAlias`/`TagVersion`/`approve`/`reject` (MLflow).
OutboxItem = dict[str, Any]
#: Outbox kinds that write to the MLflow registry: they run strictly in order.
REGISTRY_KINDS = frozenset({"SetAlias", "DeleteAlias", "TagVersion", "approve", "reject"})
NOTIFY_KINDS = frozenset({"Notify", "notify"})
EVENT_KIND = "Event"


#: KServe's predictor Service port (constants.CommonDefaultHttpPort).
PREDICTOR_PORT = 80
#: KServe's logger/batcher agent port in a predictor Pod (constants.InferenceServiceDefaultAgentPort)
AGENT_PORT = 9081


@dataclass(frozen=True)
class Backend:
    """One weighted backend of modelops' HTTPRoute: a KServe predictor Service."""

    service: str
    weight: int
    predictor: str


@dataclass(frozen=True)
class Split:
    """The weighted backends of modelops' route and why a backend is missing (for status): decided in
    decide/traffic_split.py, rendered by desired/http_route.py."""

    backends: tuple[Backend, ...]
    note: str = ""

    def weights(self) -> dict[str, int]:
        return {b.predictor: b.weight for b in self.backends}


#: KServe's model container in a predictor (constants.InferenceServiceContainerName) and the variable that
#: carries the model's URI when the predictor is written as containers (constants.CustomSpecStorageUriEnvVarKey)
KSERVE_CONTAINER = "kserve-container"
STORAGE_URI_ENV = "STORAGE_URI"


def predictor_storage_uri(predictor: Mapping[str, Any]) -> str:
    """The model URI a KServe predictor spec serves: ``model.storageUri``, else the ``STORAGE_URI`` variable
    of its ``kserve-container``; "" when it names none."""
    model = predictor.get("model") or {}
    if model.get("storageUri"):
        return str(model["storageUri"])
    for c in predictor.get("containers") or []:
        if c.get("name") == KSERVE_CONTAINER:
            for e in c.get("env") or []:
                if e.get("name") == STORAGE_URI_ENV:
                    return str(e.get("value") or "")
    return ""
