"""The ModelDeployment state machine: one pure `tick(spec, status, observed, now) -> Decision`.

Flagger's lesson (STYLE.md): one idempotent tick per interval, and *every* bit of progress persisted in
status, so that an operator killed at any instant resumes exactly where it was. Here that is:

- `status.stable` / `status.canary`: the versions serving the two shares (`canary` set iff a rollout runs);
- `status.rollout`: state, step, weight, step/rollout start, last analysis time and verdicts, failed checks,
  consecutive errors, inconclusive count, passes in this step, the serving-spec hash it applies, since when
  the canary serves (`canaryServingSince`: analysis waits `initialDelay` after it, see `analysis_due`);
- the registry changes and notifications a tick decides come out in `Decision.status["pendingActions"]`;
  the controller moves them (and the tick's Events) into `status.outbox` (see decide/outbox.py) and writes
  status *before* touching anything else, then performs the outbox in order and clears it; every action is
  idempotent (set alias if it still points at the old version, tag, compare-and-delete), so a crash
  anywhere re-runs at most an idempotent action and never decides a promotion twice;
- `status.history`: finished rollouts, newest first.

The InferenceService is derived from status alone (`Decision.plan`), so it is re-applied identically after
a restart and a traffic split never exists without the status that owns it.

Rollout states (`status.rollout.state`): Progressing -> (AwaitingApproval) -> promoted (rollout cleared);
any state -> RollingBack -> cleared once KServe reports the InferenceService settled on the stable version;
Paused while spec.rollout.paused or the modelops.dev/pause annotation is set.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from modelops.api.audit import ANN_LAST_DECISION, OPERATOR_ACTOR, Record
from modelops.api.times import format_time, parse_duration
from modelops.api.types import Event, EventType, IsvcState, ModelRef, ServingPlan
from modelops.api.vocabulary import (
    ANN_ABORT,
    ANN_APPROVE,
    ANN_PAUSE,
    ANN_REJECT,
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    TAG_PREVIOUS,
    TAG_PROMOTED_AT,
    TAG_REJECTED,
)
from modelops.decide import analysis
from modelops.decide.conditions import Condition, merge_conditions
from modelops.decide.finite import finite
from modelops.decide.slo import BudgetState

#: Alias the operator tracks when the spec names neither alias nor version.
DEFAULT_ALIAS = CHAMPION_ALIAS
#: Alias the trainer sets on a version that beat the champion; it starts a rollout when the tracked alias
#: is "champion", and is cleared after a rollback (or a promotion).
CANDIDATE_ALIAS = CHALLENGER_ALIAS
#: Accepts a changed artifact location of the version that serves: the value must be the new storage URI.
ANN_ACCEPT_ARTIFACT = "modelops.dev/accept-artifact"
#: How long a canary may stay not ready (never served) before it is rolled back (spec.rollout.progressDeadline).
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600.0

DEFAULT_STEPS: list[dict[str, Any]] = [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}]

State = Literal["Progressing", "AwaitingApproval", "Paused", "RollingBack"]


@dataclass(frozen=True)
class Resolution:
    """What the registry said this tick: the tracked alias / pinned version / URI, and the candidate alias."""

    tracked: ModelRef | None = None
    candidate: ModelRef | None = None
    error: str = ""
    #: AliasNotFound, RegistryUnreachable, VersionNotFound, ...
    reason: str = ""


@dataclass(frozen=True)
class Observed:
    generation: int
    resolution: Resolution
    isvc: IsvcState | None
    mode: str = "Knative"
    #: False when a canary cannot be expressed in this cluster (Standard mode without spec.canary)
    canary_supported: bool = True
    canary_unsupported: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    #: verdicts of the analysis the handler ran for this tick (None: none was due)
    checks: Sequence[analysis.Check] | None = None
    spec_problems: Sequence[str] = ()
    #: storage URI prefixes the operator may hand to KServe (MODELOPS_ALLOWED_STORAGE_URI_PREFIXES); empty: any
    allowed_storage_uris: Sequence[str] = ()
    #: the object's namespace and name (they name the audit records' MLflow tags)
    namespace: str = ""
    name: str = ""
    #: [issue 14] the SLO fast-burn gate (decide/slo.py); None: the spec declares no SLO
    budget: BudgetState | None = None


@dataclass
class Decision:
    status: dict[str, Any]
    plan: ServingPlan | None
    events: list[Event]
    requeue_after: float

    @property
    def actions(self) -> list[dict[str, Any]]:
        return list(self.status.get("pendingActions") or [])


# ----------------------------------------------------------------------------------------- helpers
def ts(now: datetime) -> str:
    """RFC 3339 in UTC (`api.times.format_time`, the one format of both kinds)."""
    return format_time(now)


def parse_ts(text: str | None) -> datetime | None:
    """A naive UTC datetime (the tick compares against naive `now`)."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def _age(now: datetime, text: str | None) -> float | None:
    t = parse_ts(text)
    if t is None:
        return None
    return (now.replace(tzinfo=None) - t).total_seconds()


def serving_hash(spec: Mapping[str, Any]) -> str:
    """Hash of everything in the spec that shapes the InferenceService except the model itself."""
    relevant = {"serving": spec.get("serving") or {}, "logger": spec.get("logger") or {}}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def storage_uri_allowed(uri: str, prefixes: Sequence[str]) -> bool:
    """Whether `uri` starts with one of the allowed prefixes (no prefixes: every URI is allowed)."""
    return not prefixes or any(uri.startswith(p) for p in prefixes if p)


def steps_of(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(((spec.get("rollout") or {}).get("steps")) or DEFAULT_STEPS)


def tracked_alias(spec: Mapping[str, Any]) -> str:
    model = spec.get("model") or {}
    if model.get("storageUri") or model.get("version"):
        return ""
    return str(model.get("alias") or DEFAULT_ALIAS)


def uses_candidate_alias(spec: Mapping[str, Any]) -> bool:
    return tracked_alias(spec) == DEFAULT_ALIAS


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "yes", "1")


def _seconds(text: Any, default: float) -> float:
    try:
        return parse_duration(str(text) if text else None, default)
    except ValueError:
        return default


def analysis_interval(spec: Mapping[str, Any]) -> float:
    return _seconds(((spec.get("rollout") or {}).get("analysis") or {}).get("interval"), 30.0)


def poll_interval(spec: Mapping[str, Any]) -> float:
    return _seconds((spec.get("registry") or {}).get("pollInterval"), 30.0)


def metrics_of(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(((spec.get("rollout") or {}).get("analysis") or {}).get("metrics") or [])


def initial_delay(spec: Mapping[str, Any]) -> float:
    """`spec.rollout.analysis.initialDelay` in seconds; unset: one analysis interval."""
    an = (spec.get("rollout") or {}).get("analysis") or {}
    return _seconds(an.get("initialDelay"), analysis_interval(spec))


def analysis_starts_at(spec: Mapping[str, Any], status: Mapping[str, Any]) -> datetime | None:
    """When the canary's traffic starts to count: `initialDelay` after it began serving
    (`status.rollout.canaryServingSince`); None while it does not serve."""
    since = parse_ts((status.get("rollout") or {}).get("canaryServingSince"))
    return None if since is None else since + timedelta(seconds=initial_delay(spec))


def analysis_due(spec: Mapping[str, Any], status: Mapping[str, Any], now: datetime) -> bool:
    """Whether the handler should query Prometheus before this tick.

    Only a canary that serves is analysed (Flagger's rule: its metrics mean something only once it gets
    traffic), and not during `initialDelay` after it began serving (Argo Rollouts' `initialDelay`): a
    just-started predictor's first requests (cold caches, new connections through the gateway and KServe's
    agent, a node still busy starting it) are not what it will serve like, and a check over them would fail
    a healthy version or pass a bad one. The rollout holds its step meanwhile. Each analysis then covers a
    full interval of traffic that is all past the delay and at the step's weight: it comes one interval
    after the latest of the delay's end, the step's start and the previous analysis.
    """
    ro = status.get("rollout") or {}
    if ro.get("state") not in ("Progressing", "AwaitingApproval") or not metrics_of(spec):
        return False
    starts = analysis_starts_at(spec, status)
    if starts is None:
        return False
    naive = now.replace(tzinfo=None)
    since = [a for a in (_age(now, ro.get("lastAnalysisAt")), _age(now, ro.get("stepStartedAt")),
                         (naive - starts).total_seconds()) if a is not None]
    return min(since) >= analysis_interval(spec) - 0.05


def target_of(spec: Mapping[str, Any], resolution: Resolution) -> ModelRef | None:
    """The version that should serve: a non-rejected candidate (challenger) beats the tracked alias."""
    cand = resolution.candidate
    if cand is not None and uses_candidate_alias(spec) and not cand.rejected:
        tracked = resolution.tracked
        if tracked is None or cand.version != tracked.version:
            return cand
    return resolution.tracked


# ----------------------------------------------------------------------------------------- the tick
class _Tick:
    """One evaluation. Kept as a small object so each branch is a short method, not a 350-line function."""

    def __init__(self, spec: Mapping[str, Any], status: Mapping[str, Any], obs: Observed, now: datetime):
        self.spec, self.obs, self.now = spec, obs, now
        self.st: dict[str, Any] = copy.deepcopy(dict(status))
        self.events: list[Event] = []
        self.conds: list[Condition] = []
        self.rollout_spec: Mapping[str, Any] = spec.get("rollout") or {}
        self.ann = obs.annotations

    # ---- outputs
    def event(self, type_: EventType, reason: str, message: str, notify: bool = True) -> None:
        self.events.append(Event(type_, reason, message))
        if notify:
            self.action({"kind": "Notify", "event": reason, "message": message})

    def action(self, act: dict[str, Any]) -> None:
        self.st.setdefault("pendingActions", []).append(act)

    def history(self, result: str, reason: str, canary: Mapping[str, Any], started: str | None,
                message: str = "", decision: Record | None = None) -> None:
        entry: dict[str, Any] = {"version": canary.get("version") or canary.get("storageUri", ""),
                 "fromVersion": (self.st.get("stable") or {}).get("version")
                 or (self.st.get("stable") or {}).get("storageUri", ""),
                 "result": result, "reason": reason, "finishedAt": ts(self.now)}
        if started:
            entry["startedAt"] = started
        if message:
            entry["message"] = message[:1000]
        if decision is not None:
            entry["decision"] = decision.status_entry()
        limit = int(self.rollout_spec.get("historyLimit", 10))
        self.st["history"] = ([entry, *list(self.st.get("history") or [])])[:limit]

    # ---- audit (issue 18): one record per promote / rollback / abort
    def decision(self, action: str, canary: Mapping[str, Any], reason: str, requested_by: str = "") -> Record:
        """The audit record of a promotion, rollback or abort. What a person asked for (an approval that let
        the promotion happen, a rejection or abort) names that person when the console or the CLI left its
        record in the `modelops.dev/last-decision` annotation for this version (action `requested_by`);
        a bare annotation names no one ("unknown", via "annotation"); everything the operator decides by
        itself names the operator."""
        version = str(canary.get("version") or canary.get("storageUri") or "")
        actor, via, evidence = OPERATOR_ACTOR, "operator", ""
        if requested_by:
            # a bare `kubectl annotate` leaves no name: say so rather than credit the operator
            actor, via = "unknown", "annotation"
            try:
                last = Record.from_json(self.ann.get(ANN_LAST_DECISION) or "")
            except (ValueError, TypeError):
                last = None
            if last is not None and last.action == requested_by and last.version == version:
                actor, via, evidence = last.actor, last.via, last.evidence_sha256
                if last.via == "cli" and last.action in ("approve", "reject"):
                    # the console mirrors its own records; the CLI has no MLflow access and its user no
                    # right to create Events, so the operator mirrors a CLI approval or rejection once, when
                    # it acts on it (an abort is the operator's abort record itself)
                    ev = last.event()
                    self.event(ev["type"], ev["reason"], ev["message"], notify=False)  # type: ignore[arg-type]
                    self.record(last)
        return Record(action=action, actor=actor, time=ts(self.now), kind="modeldeployments",
                      namespace=self.obs.namespace, name=self.obs.name,
                      model=str((self.spec.get("model") or {}).get("name") or ""), version=version,
                      evidence_sha256=evidence, via=via, comment=reason)

    def record(self, rec: Record) -> None:
        """Mirror the record into MLflow version tags (the outbox's TagVersion, so it survives Event expiry);
        the Promoted / RolledBack Event carries it too (`with_record`)."""
        if rec.version and rec.model and rec.namespace and rec.name:
            self.action({"kind": "TagVersion", "model": rec.model, "version": rec.version,
                         "tags": rec.mlflow_tags()})

    # ---- registry effects (executed by the handler from the outbox)
    def promote_actions(self, new: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        version = new.get("version")
        if not version:
            return
        name = (self.spec.get("model") or {}).get("name", "")
        alias = tracked_alias(self.spec)
        if alias:
            act = {"kind": "SetAlias", "model": name, "alias": alias, "version": version}
            if old and old.get("version"):
                act["ifVersion"] = str(old["version"])  # never clobber a move of the alias made meanwhile (M2)
            self.action(act)
        tags = {TAG_PROMOTED_AT: ts(self.now)}
        if old and old.get("version"):
            tags[TAG_PREVIOUS] = str(old["version"])
        self.action({"kind": "TagVersion", "model": name, "version": version, "tags": tags})
        if uses_candidate_alias(self.spec):
            self.action({"kind": "DeleteAlias", "model": name, "alias": CANDIDATE_ALIAS, "ifVersion": version})

    def reject_actions(self, canary: Mapping[str, Any], reason: str, reject: bool) -> None:
        version = canary.get("version")
        if not version:
            return
        name = (self.spec.get("model") or {}).get("name", "")
        if reject:
            self.action({"kind": "TagVersion", "model": name, "version": version,
                         "tags": {TAG_REJECTED: f"{ts(self.now)} {reason}"[:4000]}})
        if uses_candidate_alias(self.spec):
            self.action({"kind": "DeleteAlias", "model": name, "alias": CANDIDATE_ALIAS, "ifVersion": version})
        alias = tracked_alias(self.spec)
        stable = self.st.get("stable") or {}
        if alias and stable.get("version"):
            # someone moved the tracked alias itself to the canary: point it back at what serves
            self.action({"kind": "SetAlias", "model": name, "alias": alias, "version": stable["version"],
                         "ifVersion": version})

    # ---- transitions
    def start(self, target: ModelRef) -> None:
        steps = steps_of(self.spec)
        self.st["canary"] = target.as_status(self.now)
        self.st["rollout"] = {
            "state": "Progressing", "step": 0, "weight": int(steps[0]["weight"]),
            "startedAt": ts(self.now), "stepStartedAt": ts(self.now),
            "failedChecks": 0, "consecutiveErrors": 0, "inconclusive": 0, "passed": 0,
            "specHash": serving_hash(self.spec), "message": f"step 1/{len(steps)} at {steps[0]['weight']}%",
        }
        self.event("Normal", "RolloutStarted",
                   f"canary {target.label()} at {steps[0]['weight']}% (stable {self._stable_label()})")

    def promote(self, reason: str) -> None:
        canary = self.st.pop("canary")
        ro = self.st.pop("rollout", None) or {}
        old = self.st.get("stable")
        approved = (self.rollout_spec.get("approval") or {}).get("required") and reason != "Immediate"
        rec = self.decision("promote", canary, reason, requested_by="approve" if approved else "")
        self.history("Promoted", reason, canary, ro.get("startedAt"), decision=rec)
        self.promote_actions(canary, old)
        # status says what is true now (issue 20): the version serves under the tracked alias that
        # promote_actions moves to it, no longer under the candidate alias it was found by
        alias = tracked_alias(self.spec)
        self.st["stable"] = {**{k: v for k, v in canary.items() if k != "alias"}, **({"alias": alias} if alias else {})}
        self.st.pop("lastRejected", None)
        self.event("Normal", "Promoted", with_record(f"{_label(canary)} promoted to 100% ({reason}); previous "
                                                     f"{_label(old)}", rec))
        self.record(rec)

    def rollback(self, result: str, reason: str, message: str, reject: bool) -> None:
        canary = self.st["canary"]
        ro = self.st["rollout"]
        rec = self.decision("abort" if result == "Aborted" else "rollback", canary, reason,
                            requested_by={"Aborted": "abort", "Rejected": "reject"}.get(reason, ""))
        self.history(result, reason, canary, ro.get("startedAt"), message, decision=rec)
        self.reject_actions(canary, message, reject)
        if reject:
            self.st["lastRejected"] = {k: v for k, v in canary.items() if k in ("version", "storageUri")}
        ro.update({"state": "RollingBack", "weight": 0, "result": result, "reason": reason,
                   "message": message})
        self.event("Warning", "RolledBack", with_record(f"{_label(canary)} rolled back ({reason}): {message}; "
                                                        f"traffic back to {self._stable_label()}", rec))
        self.record(rec)

    def _stable_label(self) -> str:
        return _label(self.st.get("stable"))

    # ---- the evaluation
    def run(self) -> Decision:
        self.st.pop("pendingActions", None)  # the handler executed them before this tick
        if self.obs.spec_problems:
            msg = "; ".join(self.obs.spec_problems)
            self.conds += [Condition("Accepted", "False", "InvalidSpec", msg),
                           Condition("Ready", "False", "InvalidSpec", msg)]
            return self.finish(phase="Failed")
        self.conds.append(Condition("Accepted", "True", "SpecValid",
                                    f"generation {self.obs.generation} accepted"))
        budget = self.obs.budget
        if budget is not None:
            self.conds.append({"exhausted": Condition("BudgetExhausted", "True", "FastBurn", budget.message),
                               "unknown": Condition("BudgetExhausted", "Unknown", "PrometheusUnavailable",
                                                    budget.message)}.get(
                budget.state, Condition("BudgetExhausted", "False", "WithinBudget", budget.message)))
        target = self.resolve()
        if not self.st.get("stable"):
            if target is None or target.rejected:
                return self.finish(phase="Pending")
            self.st["stable"] = target.as_status(self.now)
            self.st["specHash"] = serving_hash(self.spec)
            self.event("Normal", "Deployed", f"serving {target.label()}", notify=False)
            if target.alias == CANDIDATE_ALIAS:
                # the very first version comes from the trainer's challenger: it becomes the champion
                self.promote_actions(self.st["stable"], None)
        ro = self.st.get("rollout")
        if ro and ro.get("state") == "RollingBack":
            self.settle_rollback()
        elif ro:
            self.progress(target)
        else:
            self.idle(target)
        self.st["specHash"] = serving_hash(self.spec)
        return self.finish()

    def resolve(self) -> ModelRef | None:
        res = self.obs.resolution
        target = target_of(self.spec, res)
        if target is None:
            self.conds.append(Condition("ModelResolved", "False", res.reason or "ResolveFailed",
                                        res.error or "the registry returned no version"))
            return None
        if not storage_uri_allowed(target.storage_uri, self.obs.allowed_storage_uris):
            msg = (f"{target.label()} resolves to {target.storage_uri}, which is outside the allowed storage URI "
                   f"prefixes ({', '.join(self.obs.allowed_storage_uris)}); it is not served")
            before: Mapping[str, Any] = next((c for c in self.st.get("conditions") or []
                                              if c.get("type") == "ModelResolved"), {})
            if before.get("reason") != "StorageUriNotAllowed" or before.get("message") != msg:
                self.event("Warning", "StorageUriNotAllowed", msg)
            self.conds.append(Condition("ModelResolved", "False", "StorageUriNotAllowed", msg))
            return None
        via = (f"alias {target.alias} -> " if target.alias else "") + target.label()
        run = f" (run {target.run_id})" if target.run_id else ""
        self.conds.append(Condition("ModelResolved", "True", "Resolved", f"{via}{run}: {target.storage_uri}"))
        return target

    def idle(self, target: ModelRef | None) -> None:
        stable = self.st["stable"]
        if target is None or target.same(stable):
            if (target is not None and target.storage_uri == stable.get("storageUri") and target.digest
                    and not stable.get("sha256")):
                # a digest recorded for the artifacts already served (e.g. status written before digests): adopt it
                self.st["stable"] = {**stable, "sha256": target.digest}
            elif target is not None and _artifacts(target) != _artifacts(stable):
                if self.artifact_changed(target, stable):
                    return
            else:
                self.st.pop("artifactHold", None)
            last = (self.st.get("history") or [{}])[0]
            if last.get("result") in ("RolledBack", "Aborted"):
                # Keep saying how the last rollout ended (the same condition settle_rollback wrote) until
                # another one starts: "Complete" right after a rollback would read as a success.
                self.progressing("False", "RolledBack", f"{last['result']} ({last.get('reason')}): "
                                 f"{_label(stable)} serves 100% of traffic")
            else:
                self.progressing("False", "Complete", f"{_label(stable)} serves 100% of traffic")
            return
        last = self.st.get("lastRejected")
        if target.rejected or target.same(last):
            why = target.rejected or "it was rolled back"
            self.progressing("False", "CandidateRejected",
                             f"{target.label()} is tagged rejected ({why}); register a new version to roll out")
            return
        if self.st.get("lastRejected") and not target.same(last):
            self.st.pop("lastRejected", None)
        if _truthy(str(self.rollout_spec.get("abort", ""))):
            self.progressing("False", "AbortRequested",
                             f"{target.label()} is waiting: clear spec.rollout.abort to roll it out")
            return
        abort = (self.ann.get(ANN_ABORT) or "").strip()
        if _truthy(abort) or (target.version and abort == target.version):
            # a leftover abort annotation holds new rollouts as the spec flag does, instead of starting each
            # one only to abort and reject it on the next tick (issue 16, M1)
            self.progressing("False", "AbortRequested",
                             f"{target.label()} is waiting: remove the annotation {ANN_ABORT}={abort} to roll it out")
            return
        if self.rollout_spec.get("strategy", "Canary") == "Immediate":
            self.st["canary"] = target.as_status(self.now)
            self.st["rollout"] = {"startedAt": ts(self.now)}
            self.promote("Immediate")
            self.progressing("False", "Complete", f"{target.label()} replaced {_label(stable)} at once")
            return
        if not self.obs.canary_supported:
            self.progressing("False", "CanaryUnsupported", self.obs.canary_unsupported)
            self.events.append(Event("Warning", "CanaryUnsupported", self.obs.canary_unsupported))
            return
        if self.budget_hold():
            self.progressing("False", "BudgetExhausted", f"{target.label()} is waiting: {self.budget_hold()}")
            return
        self.start(target)
        self.progressing("True", "RolloutStarted", self.st["rollout"]["message"])

    def progress(self, target: ModelRef | None) -> None:
        ro: dict[str, Any] = self.st["rollout"]
        canary: dict[str, Any] = self.st["canary"]
        version = str(canary.get("version") or "true")
        if _truthy(str(self.rollout_spec.get("abort", ""))) or self.ann.get(ANN_ABORT) in (version, "true"):
            self.rollback("Aborted", "Aborted", "abort requested", reject=True)
            return self.progressing("True", "RollingBack", ro["message"])
        if self.ann.get(ANN_REJECT) == version:
            self.rollback("RolledBack", "Rejected", f"rejected by annotation {ANN_REJECT}={version}", reject=True)
            return self.progressing("True", "RollingBack", ro["message"])
        if target is not None and not target.same(canary):
            if target.same(self.st.get("stable")):
                self.rollback("RolledBack", "TargetReverted",
                              f"the registry points at {target.label()} again", reject=False)
                return self.progressing("True", "RollingBack", ro["message"])
            if not target.rejected:
                self.history("Superseded", "NewVersion", canary, ro.get("startedAt"))
                self.event("Normal", "RolloutSuperseded", f"{_label(canary)} superseded by {target.label()}")
                self.start(target)
                return self.progressing("True", "RolloutStarted", self.st["rollout"]["message"])
        elif target is not None and _artifacts(target) != _artifacts(canary):
            # the canary's artifacts moved under the same version: what was analysed is not what would be
            # promoted, so the rollout starts over with the new location (issue 16, H2)
            self.event("Warning", "ArtifactChanged", f"{_label(canary)}: the registry now points at "
                       f"{target.storage_uri} sha256 {target.digest or '-'} (was {canary.get('storageUri')} sha256 "
                       f"{canary.get('sha256') or '-'}); the rollout restarts at step 1")
            self.st["canary"] = target.as_status(self.now)
            self.restart(ro, "the canary's artifact location changed")
        if ro.get("specHash") != serving_hash(self.spec):
            steps = steps_of(self.spec)
            ro.update({"step": 0, "weight": int(steps[0]["weight"]), "stepStartedAt": ts(self.now), "passed": 0,
                       "specHash": serving_hash(self.spec), "state": "Progressing"})
            ro.pop("lastResult", None)
            ro.pop("canaryServingSince", None)  # KServe restarts the predictors with the new serving spec
            ro["message"] = f"serving spec changed: restarted at step 1/{len(steps)}"
            self.event("Normal", "RolloutRestarted", ro["message"])
        if self.rollout_spec.get("paused") or _truthy(self.ann.get(ANN_PAUSE)):
            if ro.get("state") != "Paused":
                ro["state"] = "Paused"
                ro["message"] = f"paused at step {ro['step'] + 1} ({ro['weight']}%)"
                self.event("Normal", "RolloutPaused", ro["message"], notify=False)
            return self.progressing("False", "Paused", ro["message"])
        if ro.get("state") == "Paused":
            ro.update({"state": "Progressing", "stepStartedAt": ts(self.now), "passed": 0})
            ro.pop("lastResult", None)
            self.event("Normal", "RolloutResumed", f"resumed at step {ro['step'] + 1} ({ro['weight']}%)",
                       notify=False)
        if self.obs.checks is not None and self.analyse(ro, canary, self.obs.checks):
            return None
        self.advance(ro, canary)
        return None

    def restart(self, ro: dict[str, Any], why: str) -> None:
        steps = steps_of(self.spec)
        ro.update({"step": 0, "weight": int(steps[0]["weight"]), "stepStartedAt": ts(self.now), "passed": 0,
                   "failedChecks": 0, "inconclusive": 0, "consecutiveErrors": 0})
        ro.pop("lastResult", None)
        ro.pop("notReadySince", None)
        ro.pop("canaryServingSince", None)  # new artifacts: a new predictor, cold again
        ro["message"] = f"{why}: restarted at step 1/{len(steps)}"

    def artifact_changed(self, target: ModelRef, stable: Mapping[str, Any]) -> bool:
        """The serving version's artifact location changed in the registry (issue 16, H2).

        Nothing is swapped at 100% without a person: the old location keeps serving, a Warning Event says
        what changed, and `modelops.dev/accept-artifact=<new URI>` accepts it. True while it is held.
        """
        new, old = target.storage_uri, str(stable.get("storageUri", ""))
        if target.digest and target.digest != stable.get("sha256"):
            new, old = f"{new}@sha256:{target.digest}", f"{old}@sha256:{stable.get('sha256') or '-'}"
        if (self.ann.get(ANN_ACCEPT_ARTIFACT) or "").strip() == new:
            self.st["stable"] = target.as_status(self.now)
            self.st.pop("artifactHold", None)
            self.event("Normal", "ArtifactAccepted", f"{target.label()} now serves from {new} (was {old}), accepted "
                       f"by {ANN_ACCEPT_ARTIFACT}")
            return False
        hold = {"version": target.version, "storageUri": target.storage_uri, "sha256": target.digest}
        if {k: (self.st.get("artifactHold") or {}).get(k) for k in hold} != hold:
            self.st["artifactHold"] = {**hold, "since": ts(self.now)}
            self.event("Warning", "ArtifactChanged", f"{target.label()}: the registry now points at {new}, not at "
                       f"the served {old}; still serving {old} until a person accepts it")
        self.progressing("False", "ArtifactChangeHeld",
                         f"{target.label()} changed its artifact location to {new} (serving {old}); accept with "
                         f"kubectl annotate modeldeployment <name> {ANN_ACCEPT_ARTIFACT}={new}")
        return True

    def analyse(self, ro: dict[str, Any], canary: Mapping[str, Any], checks: Sequence[analysis.Check]) -> bool:
        """Record an analysis; True when it rolled the canary back."""
        limits = self.rollout_spec.get("analysis") or {}
        verdict = analysis.overall(checks)
        ro["lastAnalysisAt"] = ts(self.now)
        ro["lastChecks"] = [c.as_status() for c in checks]
        ro["lastResult"] = verdict
        detail = "; ".join(f"{c.name}: {c.message or c.result}" for c in checks if c.result != "Pass")
        if verdict == "Error":
            ro["consecutiveErrors"] = int(ro.get("consecutiveErrors", 0)) + 1
            ro["message"] = f"analysis error: {detail}"
            return False
        ro["consecutiveErrors"] = 0
        if verdict == "Fail":
            ro["failedChecks"] = int(ro.get("failedChecks", 0)) + 1
            ro["inconclusive"] = 0
            ro["message"] = f"analysis failed: {detail}"
            if ro["failedChecks"] > int(limits.get("failureLimit", 2)):
                self.rollback("RolledBack", "AnalysisFailed",
                              f"{ro['failedChecks']} failed analyses (limit {limits.get('failureLimit', 2)}): "
                              f"{detail}", reject=True)
                self.progressing("True", "RollingBack", ro["message"])
                return True
            self.event("Warning", "AnalysisFailed", f"{_label(canary)} at {ro['weight']}%: {detail}")
            return False
        if verdict == "Inconclusive":
            ro["inconclusive"] = int(ro.get("inconclusive", 0)) + 1
            ro["message"] = f"analysis inconclusive (holding): {detail}"
            self.event("Normal", "AnalysisInconclusive", f"{_label(canary)} at {ro['weight']}%: {detail}",
                       notify=ro["inconclusive"] == int(limits.get("inconclusiveLimit", 10)) + 1)
            return False
        ro["inconclusive"] = 0
        ro["passed"] = int(ro.get("passed", 0)) + 1
        ro["message"] = f"analysis passed at {ro['weight']}%"
        return False

    def advance(self, ro: dict[str, Any], canary: Mapping[str, Any]) -> None:
        steps = steps_of(self.spec)
        step = min(int(ro.get("step", 0)), len(steps) - 1)
        limits = self.rollout_spec.get("analysis") or {}
        held = self.hold_reason(ro, limits)
        if held and held[0] == "CanaryNotReady":
            since = ro.setdefault("notReadySince", ts(self.now))
            deadline = _seconds(self.rollout_spec.get("progressDeadline"), DEFAULT_PROGRESS_DEADLINE_SECONDS)
            waited = _age(self.now, since) or 0.0
            if waited > deadline:
                self.rollback("RolledBack", "ProgressDeadlineExceeded",
                              f"the canary was not serving {waited:.0f}s after it was applied (progressDeadline "
                              f"{deadline:.0f}s): {held[1]}", reject=True)
                return self.progressing("True", "RollingBack", ro["message"])
            # a canary that stops serving starts over when it serves again: its first requests are cold again
            ro.pop("canaryServingSince", None)
        else:
            ro.pop("notReadySince", None)
            # from now on it serves (KServe reports it ready; the route sends it traffic): initialDelay counts
            ro.setdefault("canaryServingSince", ts(self.now))
        if held:
            return self.progressing("False", held[0], held[1])
        elapsed = _age(self.now, ro.get("stepStartedAt")) or 0.0
        pause = _seconds(steps[step].get("pause"), 60.0)
        passed = not metrics_of(self.spec) or (int(ro.get("passed", 0)) >= 1 and ro.get("lastResult") == "Pass")
        if elapsed < pause or not passed:
            starts = analysis_starts_at(self.spec, self.st) if metrics_of(self.spec) else None
            delay_left = (starts - self.now.replace(tzinfo=None)).total_seconds() if starts else 0.0
            if not passed and delay_left > 0:
                wait = (f"initialDelay: no analysis for {delay_left:.0f}s more (the canary serves since "
                        f"{ro['canaryServingSince']}; its first requests are not judged)")
            else:
                wait = "waiting for a passing analysis" if elapsed >= pause else f"{pause - elapsed:.0f}s left"
            return self.progressing("True", ro.get("state", "Progressing"),
                                    f"step {step + 1}/{len(steps)} at {ro['weight']}%: {wait}")
        if step + 1 < len(steps):
            nxt = steps[step + 1]
            ro.update({"step": step + 1, "weight": int(nxt["weight"]), "stepStartedAt": ts(self.now), "passed": 0,
                       "message": f"step {step + 2}/{len(steps)} at {nxt['weight']}%"})
            ro.pop("lastResult", None)
            self.event("Normal", "StepAdvanced", f"{_label(canary)} at {nxt['weight']}% "
                       f"(step {step + 2}/{len(steps)})")
            return self.progressing("True", "StepAdvanced", ro["message"])
        version = str(canary.get("version") or "true")
        if (self.rollout_spec.get("approval") or {}).get("required") and self.ann.get(ANN_APPROVE) != version:
            if ro.get("state") != "AwaitingApproval":
                ro["state"] = "AwaitingApproval"
                ro["message"] = (f"analysis passed; waiting for approval: kubectl annotate modeldeployment "
                                 f"<name> {ANN_APPROVE}={version}")
                self.event("Normal", "AwaitingApproval", f"{_label(canary)}: {ro['message']}")
            return self.progressing("True", "AwaitingApproval", ro["message"])
        self.promote("AnalysisPassed" if metrics_of(self.spec) else "StepsCompleted")
        self.progressing("False", "Complete", f"{_label(self.st['stable'])} serves 100% of traffic")
        return None

    def hold_reason(self, ro: Mapping[str, Any], limits: Mapping[str, Any]) -> tuple[str, str] | None:
        """Why the rollout cannot advance right now although nothing failed, if it cannot."""
        isvc = self.obs.isvc
        if isvc is None:
            return "CanaryNotReady", f"holding at {ro['weight']}%: KServe has not reported on the InferenceService"
        canary = _ref(self.st.get("canary") or {})
        if isvc.canary_uri is not None and isvc.canary_uri != canary.storage_uri:
            # the InferenceService KServe reports is not the one with this canary (an apply failed, or KServe
            # has not observed it yet): a canary that never served is never promoted (issue 16, M3)
            return "CanaryNotReady", (f"holding at {ro['weight']}%: the applied InferenceService does not carry the "
                                      f"canary {_label(self.st.get('canary'))} yet")
        if not isvc.canary_ready:
            return "CanaryNotReady", f"holding at {ro['weight']}%: the canary predictor is not ready yet"
        if self.budget_hold():
            return "BudgetExhausted", f"holding at {ro['weight']}%: {self.budget_hold()}"
        if int(ro.get("consecutiveErrors", 0)) > int(limits.get("consecutiveErrorLimit", 3)):
            return ("MetricsUnavailable", f"holding at {ro['weight']}%: {ro['consecutiveErrors']} analyses in a "
                    f"row could not query Prometheus ({ro.get('message', '')}); no promotion without data")
        if int(ro.get("inconclusive", 0)) > int(limits.get("inconclusiveLimit", 10)):
            return ("NoData", f"holding at {ro['weight']}% for a person: {ro['inconclusive']} inconclusive "
                    f"analyses in a row ({ro.get('message', '')})")
        return None

    def budget_hold(self) -> str:
        """Why the SLO gate holds traffic changes now ("" when it does not): the fast-burn alert fires, or
        Prometheus cannot say whether it does (never a pass)."""
        budget = self.obs.budget
        return budget.message if budget is not None and budget.state != "ok" else ""

    def settle_rollback(self) -> None:
        ro = self.st["rollout"]
        isvc = self.obs.isvc
        if isvc is not None and isvc.settled:
            self.st.pop("rollout")
            self.st.pop("canary", None)
            self.progressing("False", "RolledBack", f"{ro.get('result', 'RolledBack')} ({ro.get('reason')}): "
                             f"{self._stable_label()} serves 100% of traffic")
            return
        self.progressing("True", "RollingBack", f"waiting for KServe to settle on {self._stable_label()}")

    def progressing(self, status: Literal["True", "False", "Unknown"], reason: str, message: str) -> None:
        self.conds = [c for c in self.conds if c.type != "Progressing"]
        self.conds.append(Condition("Progressing", status, reason, message))

    # ---- conditions, plan and requeue
    def finish(self, phase: str | None = None) -> Decision:
        isvc, ro = self.obs.isvc, self.st.get("rollout")
        plan = self.plan()
        if self.st.get("stable"):
            if isvc is None:
                self.conds.append(Condition("InferenceServiceReady", "Unknown", "Pending",
                                            "KServe has not reported on the InferenceService yet"))
            elif isvc.foreign:
                self.conds.append(Condition("InferenceServiceReady", "False", "NotOwned", isvc.message))
            elif isvc.ready:
                self.conds.append(Condition("InferenceServiceReady", "True", "Ready", f"serving at {isvc.url}"))
                if isvc.url:
                    self.st["url"] = isvc.url
            else:
                self.conds.append(Condition("InferenceServiceReady", "False", "NotReady",
                                            isvc.message or "KServe reports the InferenceService not ready"))
        self.conds.append(self.analysis_condition(ro))
        if phase is None:
            phase = self.phase()
        if not any(c.type == "Ready" for c in self.conds):
            self.conds.append(self.ready_condition())
        self.st["phase"] = phase
        self.st["observedGeneration"] = self.obs.generation
        self.st["conditions"] = merge_conditions(self.st.get("conditions"), self.conds, self.obs.generation,
                                                 self.now)
        return Decision(finite(self.st), plan, self.events, self.requeue())

    def plan(self) -> ServingPlan | None:
        stable = self.st.get("stable")
        if not stable or (self.obs.isvc is not None and self.obs.isvc.foreign):
            return None
        ro, canary = self.st.get("rollout") or {}, self.st.get("canary")
        if ro.get("state") == "RollingBack":
            return ServingPlan(_ref(stable), None, 0, pin_stable=True)
        if canary:
            return ServingPlan(_ref(stable), _ref(canary), int(ro.get("weight", 0)))
        return ServingPlan(_ref(stable))

    def analysis_condition(self, ro: Mapping[str, Any] | None) -> Condition:
        if not ro or ro.get("state") == "RollingBack":
            last = (self.st.get("history") or [{}])[0]
            if ro and ro.get("reason") == "AnalysisFailed":
                return Condition("AnalysisHealthy", "False", "AnalysisFailed", str(ro.get("message", "")))
            if not ro and last.get("reason") == "AnalysisFailed":
                return Condition("AnalysisHealthy", "False", "AnalysisFailed",
                                 f"the last rollout ({last.get('version')}) failed its analysis")
            return Condition("AnalysisHealthy", "Unknown", "NoRollout", "no canary is under analysis")
        limits = self.rollout_spec.get("analysis") or {}
        result = ro.get("lastResult")
        if not metrics_of(self.spec):
            return Condition("AnalysisHealthy", "Unknown", "NoMetrics",
                             "spec.rollout.analysis.metrics is empty: steps advance on time alone")
        if int(ro.get("consecutiveErrors", 0)) > int(limits.get("consecutiveErrorLimit", 3)):
            return Condition("AnalysisHealthy", "False", "MetricsUnavailable", str(ro.get("message", "")))
        if result == "Error":
            return Condition("AnalysisHealthy", "Unknown", "QueryError", str(ro.get("message", "")))
        if result == "Fail" or (int(ro.get("failedChecks", 0)) > 0 and result != "Pass"):
            return Condition("AnalysisHealthy", "False", "ChecksFailed", str(ro.get("message", "")))
        if result == "Inconclusive":
            return Condition("AnalysisHealthy", "Unknown", "NoData", str(ro.get("message", "")))
        if result == "Pass":
            return Condition("AnalysisHealthy", "True", "ChecksPassed", str(ro.get("message", "")))
        return Condition("AnalysisHealthy", "Unknown", "Pending", "waiting for the first analysis of this step")

    def ready_condition(self) -> Condition:
        if not self.st.get("stable"):
            return Condition("Ready", "False", "NoModel", "no model version resolved yet")
        isvc = self.obs.isvc
        if isvc is not None and isvc.ready and not isvc.foreign:
            return Condition("Ready", "True", "Serving", f"{self._stable_label()} is serving")
        return Condition("Ready", "False", "InferenceServiceNotReady",
                         (isvc.message if isvc else "") or "waiting for KServe to report the InferenceService ready")

    def phase(self) -> str:
        ro = self.st.get("rollout")
        if not self.st.get("stable"):
            return "Pending"
        if ro:
            return {"Paused": "Paused", "AwaitingApproval": "AwaitingApproval",
                    "RollingBack": "RollingBack"}.get(ro.get("state", ""), "Progressing")
        return "Serving"

    def requeue(self) -> float:
        ro = self.st.get("rollout")
        poll = poll_interval(self.spec)
        isvc = self.obs.isvc
        if isvc is None or not isvc.ready:
            # a backstop: the handler also re-runs as soon as KServe reports on the InferenceService
            poll = min(poll, 5.0)
        if not ro:
            if (self.spec.get("model") or {}).get("storageUri") and isvc is not None and isvc.ready:
                # nothing to poll: a plain URI changes only with the spec, and spec changes wake us at once
                return 600.0
            return poll
        if ro.get("state") == "RollingBack":
            return min(poll, 1.0)
        wait = [analysis_interval(self.spec), poll]
        steps = steps_of(self.spec)
        step = min(int(ro.get("step", 0)), len(steps) - 1)
        left = _seconds(steps[step].get("pause"), 60.0) - (_age(self.now, ro.get("stepStartedAt")) or 0.0)
        if left > 0:
            wait.append(left)
        return max(0.2, min(wait))


def with_record(message: str, rec: Record, limit: int = 1024) -> str:
    """An Event message ending in the audit record's JSON (after the last ': {', as the console's Decision
    Events): the human text is shortened so that the record always fits an Event's message."""
    tail = f"; decision: {rec.as_json()}"
    return message[:max(0, limit - len(tail))] + tail


def _ref(s: Mapping[str, Any]) -> ModelRef:
    return ModelRef(storage_uri=str(s.get("storageUri", "")), version=str(s.get("version", "")),
                    run_id=str(s.get("runId", "")), alias=str(s.get("alias", "")), digest=str(s.get("sha256", "")))


def _artifacts(ref: ModelRef | Mapping[str, Any]) -> tuple[str, str]:
    """(storage URI, digest): what a version serves. A change of either under the same version is H2."""
    if isinstance(ref, ModelRef):
        return ref.storage_uri, ref.digest
    return str(ref.get("storageUri", "")), str(ref.get("sha256", ""))


def _label(s: Mapping[str, Any] | None) -> str:
    if not s:
        return "nothing"
    return f"version {s['version']}" if s.get("version") else str(s.get("storageUri", ""))


def tick(spec: Mapping[str, Any], status: Mapping[str, Any], observed: Observed, now: datetime) -> Decision:
    """Decide what the ModelDeployment does next, given what was observed. Pure and deterministic."""
    return _Tick(spec, status, observed, now).run()
