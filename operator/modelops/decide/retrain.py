"""One reconcile tick of a RetrainSchedule, purely: status + observed Jobs + a drift sample + now -> plan.

The handler reads the object and its Jobs, calls `tick`, writes `plan.status` (with the object's
resourceVersion, so a stale view never overwrites a newer one) and only then creates the Jobs in
`plan.create`. A new run therefore exists in status (state Pending) *before* its Job does, and its Job
name is a function of the firing: after a crash at any point the next tick either finds the Job or
creates it under the same name (create-if-absent), so a firing never gets two Jobs and a Job's outcome is
never lost (see test_kill_during_runs).

Run states: Pending (recorded, Job not seen yet) -> Running (Job exists) -> Succeeded | GateFailed |
AwaitingApproval (-> Approved | Rejected) | Failed; Replaced (stopped by concurrencyPolicy Replace);
Lost (the Job disappeared before its outcome was read).

Side effects that may fail and must be retried (webhook notifications, MLflow registry actions after an
approval) go through `status.outbox`: the tick appends items, the handler performs the due ones and
records the result with `record_outbox`, so they survive a restart and are retried with backoff.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from modelops.api import ANNOTATION_APPROVE, ANNOTATION_REJECT, ANNOTATION_RETRAIN_REQUESTED
from modelops.api.audit import ANN_LAST_DECISION, Record
from modelops.api.types import EVENT_KIND, Event, JobView
from modelops.api.vocabulary import CHALLENGER_ALIAS, TAG_APPROVAL
from modelops.decide import hold, outbox
from modelops.decide.conditions import Condition, merge_conditions
from modelops.decide.finite import finite, finite_number
from modelops.decide.quality import (
    PerformanceObservation,
    PerformanceState,
    evaluate_performance,
    performance_check_due,
    performance_config,
    performance_state,
    performance_status,
    training_value,
)
from modelops.decide.triggers import (
    DriftConfig,
    DriftDecision,
    DriftSample,
    DriftState,
    Firing,
    admit,
    check_due,
    evaluate_cron,
    evaluate_drift,
    format_time,
    job_name,
    parse_duration,
    parse_time,
    run_id,
)

#: a run that still has (or is about to have) a Job running
ACTIVE_STATES = frozenset({"Pending", "Running"})
#: finished runs that count against successfulRunsHistoryLimit (the Job itself succeeded)
SUCCESSFUL_STATES = frozenset({"Succeeded", "GateFailed", "Approved", "Rejected"})
#: finished runs that count against failedRunsHistoryLimit
FAILED_STATES = frozenset({"Failed", "Replaced", "Lost"})
#: trainer result status -> run state
RESULT_STATES = {"succeeded": "Succeeded", "gate_failed": "GateFailed", "awaiting_approval": "AwaitingApproval",
                 "failed": "Failed"}
MAX_NOTIFY_ATTEMPTS = outbox.MAX_NOTIFY_ATTEMPTS
MAX_BACKOFF_SECONDS = outbox.MAX_BACKOFF_SECONDS
#: MLflow tag the trainer sets to "pending" and an approval decision sets to approved / rejected
APPROVAL_TAG = TAG_APPROVAL
#: runs kept waiting for approval; older ones are superseded (rejected) beyond it
DEFAULT_MAX_PENDING_APPROVALS = 5


@dataclass
class Plan:
    status: dict[str, Any]
    #: run entries whose Job (and spec ConfigMap) must exist; create if absent
    create: list[dict[str, Any]] = field(default_factory=list)
    #: Jobs (and their ConfigMaps) to delete: replaced or beyond the history limits
    delete: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: seconds until the next tick is needed for a cron firing or a drift check (None: no hurry)
    requeue_after: float | None = None


@dataclass(frozen=True)
class TickInput:
    obj: Mapping[str, Any]
    jobs: Mapping[str, JobView]
    now: datetime
    #: time cron firings are counted from before the first one (the creation time, or now under a test clock)
    anchor: datetime
    #: result of the operator-side spec checks (spec_checks.retrain_schedule_problems)
    problems: Sequence[str] = ()
    #: the drift query's result when it was evaluated in this tick (see `drift_check_due`)
    drift_sample: DriftSample | None = None
    #: Pending runs whose Job the API server refused to create (run id -> its message): they fail
    create_failed: Mapping[str, str] = field(default_factory=dict)
    #: what Prometheus said of the model's quality when the performance check was due (see `quality_check_due`)
    performance: PerformanceObservation | None = None


# --- small readers ----------------------------------------------------------------------------------------

def drift_config(spec: Mapping[str, Any]) -> DriftConfig | None:
    d = (spec.get("triggers") or {}).get("drift")
    if not d:
        return None
    return DriftConfig(threshold=float(d["threshold"]), comparison=d.get("comparison", ">"),
                       for_seconds=parse_duration(d.get("for", "10m")),
                       cooldown_seconds=parse_duration(d.get("cooldown", "1h")),
                       check_interval_seconds=parse_duration(d.get("checkInterval", "1m")))


def drift_state(status: Mapping[str, Any]) -> DriftState:
    d = status.get("drift") or {}
    value = d.get("value")
    return DriftState(parse_time(d.get("lastCheckTime")), float(value) if value is not None else None,
                      parse_time(d.get("holdingSince")), parse_time(d.get("lastFiredTime")), d.get("message", ""))


def drift_status(state: DriftState) -> dict[str, Any]:
    out: dict[str, Any] = {"message": state.message}
    for key, t in (("lastCheckTime", state.last_check), ("holdingSince", state.holding_since),
                   ("lastFiredTime", state.last_fired)):
        if t is not None:
            out[key] = format_time(t)
    if state.value is not None:
        out["value"] = state.value
    return out


def drift_check_due(obj: Mapping[str, Any], now: datetime, problems: Sequence[str] = ()) -> bool:
    """Whether the handler should query Prometheus before this tick."""
    spec = obj.get("spec") or {}
    cfg = drift_config(spec)
    if cfg is None or spec.get("suspend") or problems:
        return False
    return check_due(drift_state(obj.get("status") or {}), cfg, now)


def quality_check_due(obj: Mapping[str, Any], now: datetime, problems: Sequence[str] = ()) -> bool:
    """Whether the handler should query the performance trigger's quality series before this tick."""
    spec = obj.get("spec") or {}
    cfg = performance_config(spec, str((obj.get("metadata") or {}).get("namespace", "")))
    if cfg is None or spec.get("suspend") or problems:
        return False
    return performance_check_due(performance_state(obj.get("status") or {}), cfg, now)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_result(message: str) -> dict[str, Any] | None:
    """The trainer's result: the last line of the termination message that is a JSON object with a status.

    `NaN`, `Infinity` and `-Infinity` are not JSON (Python's json module accepts them by default): a line
    holding one is not a result (issue 16, H1), so a non-finite metric can never reach status.
    """
    for line in reversed((message or "").strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line, parse_constant=_no_constant)
        except ValueError:
            continue
        if isinstance(data, dict) and "status" in data:
            return data
    return None


#: longest string copied from a trainer result into status
_MAX_RESULT_TEXT = 1000


def _text(value: Any) -> str | None:
    """A scalar as the CRD's string type; objects, lists and None are not copied."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)[:_MAX_RESULT_TEXT]


def _integer(value: Any) -> int | None:
    """An integer, or a string of digits, as the CRD's integer type; anything else is not copied."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def redact_uri(uri: str) -> str:
    """A URI without credentials: userinfo and the query string (presigned URLs) are replaced (issue 16, L7)."""
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def is_active(run: Mapping[str, Any]) -> bool:
    return run.get("state") in ACTIVE_STATES


# --- the tick ---------------------------------------------------------------------------------------------

class _Tick:
    def __init__(self, inp: TickInput) -> None:
        self.inp = inp
        self.obj = inp.obj
        self.spec: Mapping[str, Any] = inp.obj.get("spec") or {}
        self.meta: Mapping[str, Any] = inp.obj.get("metadata") or {}
        self.now = inp.now
        self.old: Mapping[str, Any] = inp.obj.get("status") or {}
        self.st: dict[str, Any] = copy.deepcopy(dict(self.old))
        self.runs: list[dict[str, Any]] = [dict(r) for r in self.old.get("runs") or []]
        self.outbox: list[dict[str, Any]] = [dict(i) for i in self.old.get("outbox") or []]
        self.plan = Plan(status={})
        self.updates: list[Condition] = []
        self.model = (self.spec.get("training") or {}).get("modelName", "")
        self.latest: dict[str, Any] | None = None

    # events and notifications
    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.plan.events.append(Event(type_, reason, message))

    def notify(self, event: str, run: Mapping[str, Any]) -> None:
        hooks = (self.spec.get("notifications") or {}).get("webhooks") or []
        for i, hook in enumerate(hooks):
            wanted = hook.get("events") or []
            if wanted and event not in wanted:
                continue
            self.outbox.append({"id": f"{run.get('id')}/{event}/{i}", "kind": "notify", "event": event,
                                "webhook": i, "run": dict(run), "attempts": 0,
                                "createdTime": format_time(self.now)})

    def registry(self, kind: str, run: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> None:
        item: dict[str, Any] = {"id": f"{run.get('id')}/{kind}", "kind": kind, "model": self.model,
                                "version": str(run.get("version", "")), "attempts": 0,
                                "createdTime": format_time(self.now)}
        if tags:
            item["tags"] = dict(tags)
        self.outbox.append(item)

    @staticmethod
    def cli_record(ann: Mapping[str, str], action: str, version: str) -> Record | None:
        """The audit record `modelops approve|reject` left with its annotation (issue 18), if it is for this
        decision: the operator mirrors it into an Event and an MLflow tag (the console mirrors its own)."""
        try:
            rec = Record.from_json(ann.get(ANN_LAST_DECISION) or "")
        except (ValueError, TypeError):
            return None
        return rec if (rec.via, rec.action, rec.version) == ("cli", action, version) else None

    # 1. what the Jobs say
    def observe_runs(self) -> None:
        for run in self.runs:
            if not is_active(run):
                continue
            job = self.inp.jobs.get(run["job"])
            if job is None:
                if run["state"] == "Pending" and run.get("id") in self.inp.create_failed:
                    run["reason"] = "CreateFailed"
                    self._finish(run, "Failed", f"the Job could not be created: {self.inp.create_failed[run['id']]}"[:1000])
                elif run["state"] == "Pending":
                    self.plan.create.append(run)  # recorded but not created yet (or the create failed)
                else:
                    self._finish(run, "Lost", "the Job disappeared before its outcome was read")
                continue
            if run["state"] == "Pending":
                run["state"] = "Running"
                run["startTime"] = job.start_time or format_time(self.now)
                if not job.finished:
                    self.event("Normal", "RunStarted", f"run {run['id']} ({run['trigger']}) started Job {job.name}")
                    self.notify("RunStarted", run)
            if job.finished:
                self._outcome(run, job)

    def _finish(self, run: dict[str, Any], state: str, message: str, completion: str | None = None) -> None:
        run["state"] = state
        run["message"] = message
        run["completionTime"] = completion or format_time(self.now)
        if state in FAILED_STATES:
            self.event("Warning", "RunFailed" if state != "Replaced" else "RunReplaced",
                       f"run {run['id']} ({run['trigger']}): {state}: {message}")
            self.notify("RunFailed", run)

    def _outcome(self, run: dict[str, Any], job: JobView) -> None:
        result = parse_result(job.termination_message)
        if job.start_time:
            run["startTime"] = job.start_time
        if result:
            # every field coerced to its CRD type or left out: one wrong type would get the whole status
            # write refused (issue 16, H1)
            for key in ("runId", "verdict", "datasetHash"):
                text = _text(result.get(key))
                if text is not None:
                    run[key] = text
            dataset = _text(result.get("datasetUri"))
            if dataset is not None:
                run["datasetUri"] = redact_uri(dataset)
            trials = _integer(result.get("trials"))
            if trials is not None:
                run["trials"] = trials
            version = _text(result.get("version"))
            if version is not None:
                run["version"] = version
            metric: dict[str, Any] = result["metric"] if isinstance(result.get("metric"), dict) else {}
            name = _text(metric.get("name"))
            if name:
                run["metric"] = name
            value = finite_number(metric.get("value"))
            if value is not None:
                run["value"] = value
            champion: dict[str, Any] = result["champion"] if isinstance(result.get("champion"), dict) else {}
            champion_version = _text(champion.get("version"))
            if champion_version is not None:
                run["championVersion"] = champion_version
            champion_value = finite_number(champion.get("value"))
            if champion_value is not None:
                run["championValue"] = champion_value
        if job.exit_code is not None:
            run["exitCode"] = job.exit_code
        completion = job.completion_time or format_time(self.now)
        trainer_msg = str((result or {}).get("message") or "")
        if job.finished == "Complete":
            if result is None:
                run["reason"] = "NoResult"
                self._finish(run, "Failed", "the Job completed but the trainer left no result in its termination "
                             "message", completion)
                return
            state = RESULT_STATES.get(str(result.get("status")), "Failed")
            run["reason"] = str(result.get("status"))
            run["state"], run["completionTime"] = state, completion
            run["message"] = trainer_msg or state
            self._announce(run)
            return
        # the Job failed: the Pod's reason is the most specific one
        parts = [p for p in (job.reason, job.job_message) if p]
        if job.pod_reason or job.exit_code is not None:
            parts.append(f"trainer container {job.pod_reason or 'terminated'} (exit code {job.exit_code})")
        if trainer_msg:
            parts.append(trainer_msg)
        elif job.termination_message and result is None:
            parts.append(job.termination_message.strip().splitlines()[-1][:500])
        run["reason"] = job.pod_reason or job.reason or "Failed"
        self._finish(run, "Failed", "; ".join(parts) or "the Job failed", completion)

    def _announce(self, run: dict[str, Any]) -> None:
        state, rid, version = run["state"], run["id"], run.get("version")
        vs = self._versus(run)
        if state == "Succeeded":
            self.event("Normal", "RunSucceeded", f"run {rid}: version {version} of {self.model} registered{vs}; "
                       f"alias {CHALLENGER_ALIAS} set")
            self.notify("RunSucceeded", run)
        elif state == "GateFailed":
            self.event("Warning", "GateFailed", f"run {rid}: version {version} did not beat the champion{vs}")
            self.notify("GateFailed", run)
        elif state == "AwaitingApproval":
            self.event("Normal", "AwaitingApproval", f"run {rid}: version {version} passed the gate{vs}; "
                       f"approve with `modelops approve {self.meta.get('name')} {version}`")
            self.notify("AwaitingApproval", run)
        else:
            self.event("Warning", "RunFailed", f"run {rid}: {run.get('message')}")
            self.notify("RunFailed", run)

    @staticmethod
    def _versus(run: Mapping[str, Any]) -> str:
        if run.get("value") is None:
            return ""
        out = f" ({run.get('metric')} {run['value']:.6g}"
        if run.get("championValue") is not None:
            out += f" vs champion v{run.get('championVersion')} {run['championValue']:.6g}"
        return out + ")"

    # 2. approvals
    def decide_approvals(self) -> None:
        ann: Mapping[str, str] = self.meta.get("annotations") or {}
        for key, handled_key, state, kind in ((ANNOTATION_APPROVE, "lastApproveRequest", "Approved", "approve"),
                                              (ANNOTATION_REJECT, "lastRejectRequest", "Rejected", "reject")):
            value = (ann.get(key) or "").strip()
            if not value or value == self.st.get(handled_key):
                continue
            self.st[handled_key] = value
            run = next((r for r in self.runs if r.get("state") == "AwaitingApproval"
                        and str(r.get("version")) == value), None)
            if run is None:
                self.event("Warning", "DecisionIgnored",
                           f"{key}={value}: no run of this schedule awaits approval of version {value}")
                continue
            run["state"] = state
            run["decisionTime"] = format_time(self.now)
            run["message"] = f"{state.lower()} via {key}"
            cli = self.cli_record(ann, kind, value)
            self.registry(kind, run, tags=cli.mlflow_tags() if cli else None)
            if cli is not None:
                ev = cli.event()
                self.event(ev["type"], ev["reason"], ev["message"])  # type: ignore[arg-type]
            self.event("Normal", state, f"version {value} of {self.model} {state.lower()}"
                       + (f"; alias {CHALLENGER_ALIAS} will point to it" if kind == "approve"
                          else f"; tagged {APPROVAL_TAG}=rejected"))
            self.notify(state, run)

    def cap_pending_approvals(self) -> None:
        """At most `spec.maxPendingApprovals` runs wait for a person (issue 16, M4).

        Nobody answering must not grow status without bound: beyond the cap the oldest waiting versions are
        superseded by the newer ones, that is rejected (MLflow tag approval=rejected through the outbox, as a
        person's reject), and then pruned by the history limits like any decided run.
        """
        cap = max(1, int(self.spec.get("maxPendingApprovals", DEFAULT_MAX_PENDING_APPROVALS)))
        waiting = [r for r in self.runs if r.get("state") == "AwaitingApproval"]  # newest first
        for run in waiting[cap:]:
            run["state"] = "Rejected"
            run["reason"] = "Superseded"
            run["decisionTime"] = format_time(self.now)
            run["message"] = (f"superseded: more than maxPendingApprovals={cap} versions awaited approval, the "
                              "oldest is rejected")
            self.registry("reject", run)
            self.event("Warning", "ApprovalSuperseded", f"version {run.get('version')} of {self.model}: "
                       f"{run['message']}")
            self.notify("Rejected", run)

    # 3. triggers
    def evaluate_triggers(self) -> None:
        spec, now = self.spec, self.now
        triggers = spec.get("triggers") or {}
        suspended = bool(spec.get("suspend"))
        active = [r["id"] for r in self.runs if is_active(r)]
        adm = admit(spec.get("concurrencyPolicy", "Forbid"), active)
        blocked = "the schedule is suspended" if suspended else adm.blocked
        firings: list[Firing] = []

        # manual: consumed at once, skipped (not queued) when it cannot start
        ann: Mapping[str, str] = self.meta.get("annotations") or {}
        requested = (ann.get(ANNOTATION_RETRAIN_REQUESTED) or "").strip()
        if requested and requested != self.st.get("lastManualRequest"):
            self.st["lastManualRequest"] = requested
            if blocked:
                self.event("Warning", "ManualRunSkipped", f"manual request {requested!r} skipped: {blocked}")
            else:
                firings.append(Firing("manual", requested, f"requested at {requested}"))

        # cron
        schedule = triggers.get("schedule")
        if schedule:
            anchor = parse_time(self.st.get("scheduleAnchorTime")) or self.inp.anchor
            self.st["scheduleAnchorTime"] = format_time(anchor)
            last = parse_time(self.st.get("lastScheduleTime"))
            since = max(anchor, last) if last else anchor
            tz = schedule.get("timeZone", "UTC")
            d = evaluate_cron(schedule["cron"], tz, float(schedule.get("startingDeadlineSeconds", 300)), since, now)
            self.st["nextScheduleTime"] = format_time(d.next_time)
            self._requeue((d.next_time - now).total_seconds())
            if d.due is not None and d.missed:
                self.st["lastScheduleTime"] = format_time(d.due)
            if d.due is not None and d.missed and not suspended:
                # while suspended every firing is skipped on purpose: no Warning for it (issue 16, L10)
                self.event("Warning", "MissedSchedule",
                           f"firing of {format_time(d.due)} skipped: {d.lateness:.0f}s late, more than "
                           f"startingDeadlineSeconds {schedule.get('startingDeadlineSeconds', 300)}")
            elif d.due is not None and not blocked:
                self.st["lastScheduleTime"] = format_time(d.due)
                firings.append(Firing("schedule", format_time(d.due), f"cron {schedule['cron']!r} ({tz}) at "
                                      f"{format_time(d.due)}"))
            if suspended:
                self.updates.append(Condition("Scheduled", "False", "Suspended",
                                              "spec.suspend is true; no cron firing starts"))
            else:
                self.updates.append(Condition("Scheduled", "True", "Scheduled",
                                              f"cron {schedule['cron']!r} in {tz}; next firing at "
                                              f"{format_time(d.next_time)}"
                                              + (f"; the firing of {format_time(d.due)} waits: {blocked}"
                                                 if d.due is not None and not d.missed and blocked else "")))
        else:
            self.updates.append(Condition("Scheduled", "False", "NotConfigured", "spec.triggers.schedule is not set"))

        self.evaluate_drift(firings, blocked, suspended)
        self.evaluate_performance(firings, blocked, suspended)
        if firings and not blocked:
            self._start(firings, adm.replace)

    # the two condition triggers: each observes its own condition; when it fires is decide.hold's
    def evaluate_drift(self, firings: list[Firing], blocked: str, suspended: bool) -> None:
        now = self.now
        cfg = drift_config(self.spec)
        if cfg is None:
            self.updates.append(Condition("DriftTrigger", "False", "NotConfigured", "spec.triggers.drift is not set"))
            return
        state = drift_state(self.st)
        if suspended:
            self.st["drift"] = drift_status(DriftState(state.last_check, state.value, None, state.last_fired,
                                                       "not evaluated while suspended"))
            self.updates.append(Condition("DriftTrigger", "Unknown", "Suspended",
                                          "spec.suspend is true; the drift query is not evaluated"))
            return
        if self.inp.drift_sample is not None:
            dd: DriftDecision = evaluate_drift(state, cfg, self.inp.drift_sample, now, blocked)
            self.st["drift"] = drift_status(dd.state)
            self.updates.append(Condition("DriftTrigger", dd.status, dd.reason, dd.message))
            if dd.fire:
                firings.append(Firing("drift", dd.key, dd.message))
            state = dd.state
        else:
            self._not_evaluated_yet("DriftTrigger", "the drift query")
        self._requeue(hold.next_check(state.last_check, cfg.check_interval_seconds, now))

    def evaluate_performance(self, firings: list[Firing], blocked: str, suspended: bool) -> None:
        now = self.now
        cfg = performance_config(self.spec, str(self.meta.get("namespace", "")))
        if cfg is None:
            self.updates.append(Condition("PerformanceTrigger", "False", "NotConfigured",
                                          "spec.triggers.performance is not set"))
            return
        state = performance_state(self.st)
        if suspended:
            self.st["performance"] = performance_status(PerformanceState(
                state.last_check, state.version, state.value, state.joined_labels, state.training_value, None,
                state.last_fired, "not evaluated while suspended"))
            self.updates.append(Condition("PerformanceTrigger", "Unknown", "Suspended",
                                          "spec.suspend is true; the model's quality is not evaluated"))
            return
        obs = self.inp.performance
        if obs is not None:
            trained = training_value(self.runs, obs.version, cfg.metric)
            pd = evaluate_performance(state, cfg, obs, trained, now, blocked)
            self.st["performance"] = performance_status(pd.state)
            self.updates.append(Condition("PerformanceTrigger", pd.status, pd.reason, pd.message))
            old: Mapping[str, Any] = next((c for c in self.old.get("conditions") or []
                                           if c.get("type") == "PerformanceTrigger"), {})
            if pd.reason != old.get("reason") and not pd.fire:  # why it fires or not, once per change
                self.event("Warning" if pd.status == "True" else "Normal", f"Performance{pd.reason}", pd.message)
            if pd.fire:
                firings.append(Firing("performance", pd.key, pd.message))
            state = pd.state
        else:
            self._not_evaluated_yet("PerformanceTrigger", "the model's quality")
        self._requeue(hold.next_check(state.last_check, cfg.check_interval_seconds, now))

    def _not_evaluated_yet(self, condition: str, what: str) -> None:
        """The trigger's condition Unknown/NotEvaluated until its first check (kept afterwards)."""
        if not any(c.get("type") == condition for c in self.old.get("conditions") or []):
            self.updates.append(Condition(condition, "Unknown", "NotEvaluated", f"{what} has not been evaluated yet"))

    def _start(self, firings: list[Firing], replace: Sequence[str]) -> None:
        uid = str(self.meta.get("uid", ""))
        first = firings[0]
        rid = run_id(uid, first)
        if any(r.get("id") == rid for r in self.runs):
            return  # this very firing is already recorded (cannot normally happen: its state was consumed)
        for old in self.runs:
            if old.get("id") in replace and is_active(old):
                self._finish(old, "Replaced", f"stopped by concurrencyPolicy Replace for run {rid}")
                self.plan.delete.append(old["job"])
        run: dict[str, Any] = {"id": rid, "trigger": first.trigger, "job": job_name(str(self.meta.get("name")), rid),
                               "state": "Pending", "firingKey": first.key, "createdTime": format_time(self.now),
                               "message": first.detail}
        if len(firings) > 1:
            run["coalesced"] = [f.trigger for f in firings[1:]]
        self.runs.insert(0, run)
        self.plan.create.append(run)
        also = f" (also fired: {', '.join(run['coalesced'])})" if len(firings) > 1 else ""
        self.event("Normal", "Triggered", f"{first.trigger} trigger: {first.detail}; creating Job {run['job']}{also}")

    def _requeue(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        if self.plan.requeue_after is None or seconds < self.plan.requeue_after:
            self.plan.requeue_after = seconds

    # 4. history limits
    def prune(self) -> None:
        keep_ok = int(self.spec.get("successfulRunsHistoryLimit", 3))
        keep_failed = int(self.spec.get("failedRunsHistoryLimit", 1))
        # lastRun is taken before pruning (a history limit of 0 still shows the latest outcome); a lastRun
        # whose run was pruned in an earlier tick stays until a newer run finishes
        candidates = [r for r in self.runs if not is_active(r)]
        if self.old.get("lastRun"):
            candidates.append(dict(self.old["lastRun"]))
        self.latest = max(candidates, key=lambda r: str(r.get("completionTime") or ""), default=None)
        kept: list[dict[str, Any]] = []
        ok = failed = 0
        for run in self.runs:  # newest first
            state = run.get("state")
            if state in SUCCESSFUL_STATES:
                ok += 1
                if ok > keep_ok:
                    self.plan.delete.append(run["job"])
                    continue
            elif state in FAILED_STATES:
                failed += 1
                if failed > keep_failed:
                    self.plan.delete.append(run["job"])
                    continue
            kept.append(run)
        self.runs = kept
        # finished Jobs of this schedule that no run refers to any more (an earlier delete failed)
        referenced = {r["job"] for r in self.runs}
        for name, job in self.inp.jobs.items():
            if job.finished and name not in referenced and name not in self.plan.delete:
                self.plan.delete.append(name)

    # 5. summary
    def summarize(self) -> None:
        gen = self.meta.get("generation")
        active = [r for r in self.runs if is_active(r)]
        awaiting = [r for r in self.runs if r.get("state") == "AwaitingApproval"]
        self.st["runs"] = self.runs
        self.st["outbox"] = self.outbox
        self.st["activeCount"] = len(active)
        latest = self.latest
        if latest is not None:
            self.st["lastRun"] = latest
        problems = list(self.inp.problems)
        up = self.updates
        if problems:
            up.append(Condition("Accepted", "False", "InvalidSpec", "; ".join(problems)))
            up.append(Condition("Ready", "False", "InvalidSpec", "no trigger is evaluated until the spec is fixed"))
        else:
            up.append(Condition("Accepted", "True", "SpecValid", f"generation {gen} accepted"))
        up.append(Condition("Training", "True", "JobRunning", "running: " + ", ".join(r["job"] for r in active))
                  if active else Condition("Training", "False", "NoActiveJob", "no training Job is running"))
        up.append(Condition("AwaitingApproval", "True", "VersionPending",
                            "versions awaiting approval: " + ", ".join(str(r.get("version")) for r in awaiting)
                            + f"; decide with `modelops approve|reject {self.meta.get('name')} VERSION`")
                  if awaiting else Condition("AwaitingApproval", "False", "NothingPending",
                                             "no version awaits approval"))
        registry = [i for i in self.outbox if i.get("kind") in ("approve", "reject")]
        failing = [i for i in registry if i.get("lastError")]
        if failing:
            up.append(Condition("RegistrySynced", "False", "RegistryUnavailable",
                                f"{len(registry)} MLflow registry action(s) pending, retried with backoff; last "
                                f"error: {failing[0]['lastError']}"))
        elif registry:
            up.append(Condition("RegistrySynced", "Unknown", "Pending",
                                f"{len(registry)} MLflow registry action(s) pending"))
        else:
            up.append(Condition("RegistrySynced", "True", "Synced", "every registry action is done"))
        suspended = bool(self.spec.get("suspend"))
        if problems:
            phase = "Invalid"
        elif suspended:
            phase = "Suspended"
        elif active:
            phase = "Training"
        elif awaiting:
            phase = "AwaitingApproval"
        elif latest is not None and latest.get("state") in FAILED_STATES:
            phase = "Failed"
        else:
            phase = "Idle"
        if not problems:
            up.append(Condition("Ready", "True", phase, f"controller reconciled generation {gen}: {phase}"))
        self.st["phase"] = phase
        self.st["observedGeneration"] = gen
        self.st["conditions"] = merge_conditions(self.old.get("conditions"), up, gen, self.now)
        # a Pending run replaced in this same tick needs no Job any more
        self.plan.create = [r for r in self.plan.create if is_active(r) and r["job"] not in self.plan.delete]
        self.plan.status = finite(self.st)


def tick(inp: TickInput) -> Plan:
    """Everything one reconcile decides; see the module docstring for the order of effects."""
    t = _Tick(inp)
    t.observe_runs()
    t.decide_approvals()
    t.cap_pending_approvals()
    if not inp.problems:
        t.evaluate_triggers()
    t.prune()
    t.summarize()
    return t.plan


# --- the outbox: one implementation for both kinds, in decide/outbox.py ----------------------------------

def due_outbox(status: Mapping[str, Any], now: datetime) -> list[dict[str, Any]]:
    """Outbox items whose next attempt is due."""
    return outbox.due(status.get("outbox") or [], now)


def record_outbox(status: Mapping[str, Any], results: Mapping[str, str | None],
                  now: datetime) -> tuple[dict[str, Any], list[Event]]:
    """Apply attempt results (item id -> None on success, else the error) to a (fresh) status; see
    `decide.outbox.record`. The Events it queues are returned too (and left out of the outbox)."""
    st = outbox.record(status, results, now, registry_condition="always", nonce="record")
    mine = f"{format_time(now)}/record/outbox/"
    events = [Event(i["type"], i["reason"], i["message"]) for i in st["outbox"] if i.get("kind") == EVENT_KIND
              and i.get("id", "").startswith(mine)]
    st["outbox"] = [i for i in st["outbox"] if not (i.get("kind") == EVENT_KIND and i.get("id", "").startswith(mine))]
    return st, events
