"""Model quality in the control loop, purely: PromQL over the drift exporter's quality series, and the
RetrainSchedule `performance` trigger.

The series (the contract between the exporter and the operator, labels `model_namespace`, `model` = the
InferenceService / ModelDeployment name, `version` = the MLflow model version):

- `modelops_quality_realised{metric}`: realised quality over the window of joined (prediction, label) rows;
  ABSENT while the window has fewer joined rows than the exporter's `--quality-min-labels`;
- `modelops_quality_estimated{metric}`: the label-free estimate (CBPE / DLE); absent without a calibrator;
- `modelops_quality_joined_labels`: joined rows in the quality window now (0 when none);
- `modelops_quality_window_rows`: predictions in the estimation window.

Canary analysis (`spec.rollout.analysis.metrics[].quality` of a ModelDeployment): the query templates below
use the analysis placeholders ({{namespace}}, {{name}}, {{version}}); `analysis.evaluate_quality` judges.

Performance trigger (`spec.triggers.performance` of a RetrainSchedule), with the drift trigger's semantics:
  * Every `checkInterval` the handler asks Prometheus which version to judge (the pinned `version`, else the
    version with the most predictions in the exporter's window: the one serving most traffic), then its
    quality value and (realised) its joined-label count.
  * The condition is "quality is worse than `threshold`" or "quality is worse than the version's training
    metric by more than `maxDrop`" (worse: lower for auc/accuracy/f1, higher for log_loss/brier/rmse/mae).
    The training metric is the one this schedule's run recorded for that version (status.runs[].value with
    the same metric); without it only `threshold` is judged, and the condition says so.
  * Fewer joined labels than `minLabels` (realised), no series, or a failed query: the condition was not
    observed, `holdingSince` is cleared and nothing fires (reason NotEnoughLabels, NoData, or the query's).
  * It fires at a check where the condition has held for `for` and the previous performance firing is at
    least `cooldown` ago; blocked by Forbid or suspend, nothing is consumed (`decide.hold`, the drift
    trigger's evaluator too). A check that judges another version than the previous one starts a new hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from modelops.api.times import format_time, parse_duration, parse_time
from modelops.api.types import Sample
from modelops.decide import hold
from modelops.decide.hold import held
from modelops.formats.quality import (
    DEFAULT_QUALITY_MIN_LABELS,
    ESTIMATED_SERIES,
    JOINED_LABELS_SERIES,
    QUALITY_HIGHER_IS_BETTER,
    REALISED_SERIES,
    WINDOW_ROWS_SERIES,
)

REALISED = REALISED_SERIES
ESTIMATED = ESTIMATED_SERIES
JOINED_LABELS = JOINED_LABELS_SERIES
WINDOW_ROWS = WINDOW_ROWS_SERIES
SERIES = {"realised": REALISED, "estimated": ESTIMATED}
#: joined labels needed when a realised check or trigger names none (the exporter's --quality-min-labels default)
DEFAULT_MIN_LABELS = DEFAULT_QUALITY_MIN_LABELS
#: the trainer's metric names that the exporter spells otherwise
TRAINING_METRIC_NAMES = {"logloss": "log_loss"}

Source = Literal["realised", "estimated"]


def higher_is_better(metric: str) -> bool:
    if metric not in QUALITY_HIGHER_IS_BETTER:
        raise ValueError(f"unknown quality metric {metric!r}; known: {', '.join(sorted(QUALITY_HIGHER_IS_BETTER))}")
    return QUALITY_HIGHER_IS_BETTER[metric]


def worse_by(metric: str, reference: float, value: float) -> float:
    """How much worse `value` is than `reference` (positive: worse, negative: better), in metric units."""
    return reference - value if higher_is_better(metric) else value - reference


def worse_than(metric: str, value: float, threshold: float) -> bool:
    return value < threshold if higher_is_better(metric) else value > threshold


def quote(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(namespace: str, model: str, version: str | None = None, metric: str | None = None) -> str:
    parts = [f"model_namespace={quote(namespace)}", f"model={quote(model)}"]
    if version is not None:
        parts.append(f"version={quote(version)}")
    if metric is not None:
        parts.append(f"metric={quote(metric)}")
    return "{" + ",".join(parts) + "}"


def value_promql(source: str, metric: str, namespace: str, model: str, version: str) -> str:
    """One sample: the quality of one version (max: an exporter scraped twice is still one value)."""
    return f"max({SERIES[source]}{selector(namespace, model, version, metric)})"


def labels_promql(namespace: str, model: str, version: str) -> str:
    return f"max({JOINED_LABELS}{selector(namespace, model, version)})"


def busiest_version_promql(namespace: str, model: str) -> str:
    """The series (with its `version` label) of the version with the most predictions in the window."""
    return f"topk(1, max by (version) ({WINDOW_ROWS}{selector(namespace, model)}))"


# --- canary analysis templates -----------------------------------------------------------------------------
# Rendered by `analysis.render` per side: {{namespace}}, {{name}} and {{version}} (the side's MLflow version).

def analysis_value_template(quality: Mapping[str, Any]) -> str:
    source = str(quality.get("source", "realised"))
    metric = str(quality["metric"])
    return (f"max({SERIES[source]}{{model_namespace=\"{{{{namespace}}}}\",model=\"{{{{name}}}}\","
            f"version=\"{{{{version}}}}\",metric={quote(metric)}}})")


def analysis_labels_template() -> str:
    return f"max({JOINED_LABELS}{{model_namespace=\"{{{{namespace}}}}\",model=\"{{{{name}}}}\",version=\"{{{{version}}}}\"}})"


def min_labels(quality: Mapping[str, Any]) -> int | None:
    """Joined labels a realised check needs (None: an estimated check needs none)."""
    if quality.get("source", "realised") != "realised":
        return None
    return int(quality.get("minLabels", DEFAULT_MIN_LABELS))


# --- the performance trigger -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PerformanceConfig:
    model: str
    namespace: str
    metric: str
    source: str = "realised"
    version: str = ""
    threshold: float | None = None
    max_drop: float | None = None
    min_labels: int = DEFAULT_MIN_LABELS
    for_seconds: float = 600.0
    cooldown_seconds: float = 3600.0
    check_interval_seconds: float = 60.0


def performance_config(spec: Mapping[str, Any], namespace: str) -> PerformanceConfig | None:
    p = (spec.get("triggers") or {}).get("performance")
    if not p:
        return None
    return PerformanceConfig(
        model=str(p["model"]), namespace=str(p.get("namespace") or namespace), metric=str(p["metric"]),
        source=str(p.get("source", "realised")), version=str(p.get("version") or ""),
        threshold=float(p["threshold"]) if p.get("threshold") is not None else None,
        max_drop=float(p["maxDrop"]) if p.get("maxDrop") is not None else None,
        min_labels=int(p.get("minLabels", DEFAULT_MIN_LABELS)),
        for_seconds=parse_duration(p.get("for", "10m")), cooldown_seconds=parse_duration(p.get("cooldown", "1h")),
        check_interval_seconds=parse_duration(p.get("checkInterval", "1m")))


@dataclass(frozen=True)
class PerformanceObservation:
    """What the handler read from Prometheus for one check."""

    #: the judged version ("" when none could be found) and the sample that named it (for its error)
    version: str
    version_sample: Sample
    quality: Sample | None = None
    #: joined labels of that version (realised only)
    labels: Sample | None = None


@dataclass(frozen=True)
class PerformanceState:
    """What `status.performance` persists between checks."""

    last_check: datetime | None = None
    version: str = ""
    value: float | None = None
    joined_labels: float | None = None
    training_value: float | None = None
    holding_since: datetime | None = None
    last_fired: datetime | None = None
    message: str = ""


@dataclass(frozen=True)
class PerformanceDecision:
    state: PerformanceState
    #: "True" the quality condition holds, "False" it does not, "Unknown" it could not be observed
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    fire: bool = False
    #: deterministic key of this firing (the moment it became eligible), set when `fire`
    key: str = ""


def performance_state(status: Mapping[str, Any]) -> PerformanceState:
    d = status.get("performance") or {}

    def num(key: str) -> float | None:
        v = d.get(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    return PerformanceState(parse_time(d.get("lastCheckTime")), str(d.get("version") or ""), num("value"),
                            num("joinedLabels"), num("trainingValue"), parse_time(d.get("holdingSince")),
                            parse_time(d.get("lastFiredTime")), str(d.get("message") or ""))


def performance_status(state: PerformanceState) -> dict[str, Any]:
    out: dict[str, Any] = {"message": state.message}
    for key, t in (("lastCheckTime", state.last_check), ("holdingSince", state.holding_since),
                   ("lastFiredTime", state.last_fired)):
        if t is not None:
            out[key] = format_time(t)
    if state.version:
        out["version"] = state.version
    for key, v in (("value", state.value), ("joinedLabels", state.joined_labels),
                   ("trainingValue", state.training_value)):
        if v is not None and math.isfinite(v):
            out[key] = v
    return out


def performance_check_due(state: PerformanceState, cfg: PerformanceConfig, now: datetime) -> bool:
    return hold.check_due(state.last_check, cfg.check_interval_seconds, now)


def training_value(runs: Sequence[Mapping[str, Any]], version: str, metric: str) -> float | None:
    """The metric the trainer recorded for `version` on its test split (newest run first), if this schedule
    trained it and measured the same metric."""
    for run in runs:
        if str(run.get("version", "")) != version or not version:
            continue
        name = str(run.get("metric") or "")
        value = run.get("value")
        if TRAINING_METRIC_NAMES.get(name, name) == metric and isinstance(value, int | float) \
                and not isinstance(value, bool) and math.isfinite(float(value)):
            return float(value)
    return None


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def evaluate_performance(state: PerformanceState, cfg: PerformanceConfig, obs: PerformanceObservation,
                         trained: float | None, now: datetime, blocked: str = "") -> PerformanceDecision:
    """Apply one check of the performance trigger. `trained` is the version's training metric (see
    `training_value`); `blocked` names why a firing could not start now (Forbid, suspend)."""
    what = f"{cfg.source} {cfg.metric}"

    def unobserved(reason: str, msg: str, version: str = "", labels: float | None = None) -> PerformanceDecision:
        new = PerformanceState(now, version, None, labels, trained, None, state.last_fired, msg)
        return PerformanceDecision(new, "Unknown", reason, f"{msg}; nothing fires until it is observed")

    if not obs.version:
        s = obs.version_sample
        if s.error is not None:
            return unobserved(s.reason or "QueryFailed", s.message or s.error)
        return unobserved("NoData", f"the exporter has no predictions of model {cfg.namespace}/{cfg.model}"
                          + (f" version {cfg.version}" if cfg.version else ""))
    version = obs.version
    labels: float | None = None
    if cfg.source == "realised":
        ls = obs.labels or Sample(error="not queried")
        if ls.error is not None:
            return unobserved(ls.reason or "QueryFailed", f"joined labels of version {version}: "
                              f"{ls.message or ls.error}", version)
        labels = ls.value if ls.has_value else None
        if labels is None or not math.isfinite(labels) or labels < cfg.min_labels:
            got = "no" if labels is None else f"{labels:.0f}"
            return unobserved("NotEnoughLabels", f"version {version} has {got} joined labels, fewer than "
                              f"minLabels {cfg.min_labels}: its {what} is not judged", version, labels)
    qs = obs.quality or Sample(error="not queried")
    if qs.error is not None:
        return unobserved(qs.reason or "QueryFailed", f"{what} of version {version}: {qs.message or qs.error}",
                          version, labels)
    if not qs.has_value or qs.value is None or not math.isfinite(qs.value):
        return unobserved("NoData", f"no {what} for version {version} (the exporter publishes it once it has "
                          + ("enough joined labels)" if cfg.source == "realised" else "a calibrator and enough rows)"),
                          version, labels)
    value = qs.value
    reasons: list[str] = []
    healthy: list[str] = []
    if cfg.threshold is not None:
        if worse_than(cfg.metric, value, cfg.threshold):
            op = "<" if higher_is_better(cfg.metric) else ">"
            reasons.append(f"{what} {_fmt(value)} {op} threshold {_fmt(cfg.threshold)}")
        else:
            healthy.append(f"{what} {_fmt(value)} within threshold {_fmt(cfg.threshold)}")
    if cfg.max_drop is not None:
        if trained is None:
            healthy.append(f"no training {cfg.metric} recorded for version {version} in this schedule's runs: "
                           "maxDrop not judged")
        else:
            drop = worse_by(cfg.metric, trained, value)
            if drop > cfg.max_drop:
                reasons.append(f"{what} {_fmt(value)} is {_fmt(drop)} worse than its training {_fmt(trained)} "
                               f"(maxDrop {_fmt(cfg.max_drop)})")
            else:
                healthy.append(f"{what} {_fmt(value)} vs training {_fmt(trained)}: drop {_fmt(drop)} <= maxDrop "
                               f"{_fmt(cfg.max_drop)}")
    at = f"version {version}" + (f" ({labels:.0f} joined labels)" if labels is not None else "")
    if not reasons:
        msg = f"{at}: " + "; ".join(healthy)
        new = PerformanceState(now, version, value, labels, trained, None, state.last_fired, msg)
        return PerformanceDecision(new, "False", "QualityHealthy", msg)
    cond = f"{at}: " + "; ".join(reasons)
    # a different version starts its own hold: the condition of the previous one says nothing of it
    h = held(cond, state.holding_since if state.version == version else None, state.last_fired, cfg.for_seconds,
             cfg.cooldown_seconds, now, blocked, "performance")
    new = PerformanceState(now, version, value, labels, trained, h.since, now if h.fire else state.last_fired,
                           f"{cond} since {format_time(h.since)}")
    return PerformanceDecision(new, "True", h.reason, h.message, fire=h.fire, key=h.key)
