"""The evidence for one pending approval, and the messages that carry it (pure).

`Evidence` is what a person sees before deciding: the offline gate metrics of the candidate next to the
champion's on the same held-out split (and per-slice deltas when the training run logged them), where
it came from (training run, time, data hash), the live canary analysis (each check's value and
threshold) and drift per feature. The console's approval view, the email (HTML + text) and the Slack
blocks are all rendered from the same `Evidence`, and `digest` (sha256 of its canonical JSON) is what the
audit record stores as "the evidence shown".
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricRow:
    name: str
    candidate: float | None
    champion: float | None = None
    #: True when a larger value is better (accuracy, AUC); False for losses / latencies
    higher_is_better: bool = True

    @property
    def delta(self) -> float | None:
        if self.candidate is None or self.champion is None:
            return None
        return self.candidate - self.champion

    @property
    def better(self) -> bool | None:
        d = self.delta
        if d is None or d == 0:
            return None
        return (d > 0) == self.higher_is_better


@dataclass(frozen=True)
class CheckRow:
    """One canary analysis check as last evaluated."""

    name: str
    value: float | None
    threshold: str
    passed: bool | None


@dataclass(frozen=True)
class Evidence:
    kind: str  # modeldeployments | retrainschedules
    namespace: str
    name: str
    model: str
    version: str
    #: why it waits, in one sentence (the object's condition / rollout message)
    reason: str
    champion_version: str = ""
    metrics: tuple[MetricRow, ...] = ()
    slices: tuple[MetricRow, ...] = ()
    #: training run facts: run id, started, data hash, model type, ...
    training: tuple[tuple[str, str], ...] = ()
    canary: tuple[CheckRow, ...] = ()
    canary_weight: int | None = None
    #: feature -> drift score (share of drifted features is one of them when present)
    drift: tuple[tuple[str, float], ...] = ()
    #: names of the training run's plot artifacts (shown by the console, linked from messages)
    plots: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def digest(evidence: Evidence) -> str:
    """sha256 (hex) of the evidence's canonical JSON: the same evidence always gives the same digest."""
    doc = json.dumps(_clean(evidence.as_dict()), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(doc.encode()).hexdigest()


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def fmt_delta(row: MetricRow) -> str:
    d = row.delta
    if d is None:
        return "-"
    mark = {True: " (better)", False: " (worse)", None: ""}[row.better]
    return f"{d:+.4g}{mark}"


def title(ev: Evidence) -> str:
    what = "rollout held for approval" if ev.kind == "modeldeployments" else "new version awaits approval"
    return f"[{ev.namespace}/{ev.name}] {ev.model} version {ev.version}: {what}"


@dataclass(frozen=True)
class Links:
    """Where the message points: the console's approval view and the signed one-click decisions."""

    view: str
    approve: str = ""
    reject: str = ""


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


def _table_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _metric_rows(rows: Sequence[MetricRow]) -> list[list[str]]:
    return [[r.name, fmt(r.candidate), fmt(r.champion), fmt_delta(r)] for r in rows]


def _check_rows(rows: Sequence[CheckRow]) -> list[list[str]]:
    return [[c.name, fmt(c.value), c.threshold, {True: "pass", False: "FAIL", None: "no data"}[c.passed]]
            for c in rows]


def email(ev: Evidence, links: Links) -> Email:
    """The approval email: a plain-text part and an HTML part carrying the same evidence."""
    champ = f"champion v{ev.champion_version}" if ev.champion_version else "champion"
    mhead = ["metric", f"v{ev.version}", champ, "delta"]
    text: list[str] = [title(ev), "", ev.reason, ""]
    if ev.metrics:
        text += ["Offline gate (same held-out split):", *_table_text(mhead, _metric_rows(ev.metrics)), ""]
    if ev.slices:
        text += ["Per slice:", *_table_text(["slice", *mhead[1:]], _metric_rows(ev.slices)), ""]
    if ev.training:
        text += ["Training:", *(f"  {k}: {v}" for k, v in ev.training), ""]
    if ev.canary:
        w = f" at {ev.canary_weight}%" if ev.canary_weight is not None else ""
        text += [f"Live canary analysis{w}:",
                 *_table_text(["check", "value", "threshold", "result"], _check_rows(ev.canary)), ""]
    if ev.drift:
        text += ["Drift per feature:", *(f"  {k}: {fmt(v)}" for k, v in ev.drift), ""]
    text += [f"Evidence and plots: {links.view}"]
    if links.approve:
        text += [f"Approve: {links.approve}"]
    if links.reject:
        text += [f"Reject: {links.reject}"]
    text += ["", "The links open the console, which asks who you are and checks that you may approve."]

    e = html.escape

    def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        th = "".join(f'<th style="text-align:left;padding:4px 8px;border-bottom:1px solid #ccc">{e(h)}</th>'
                     for h in header)
        body = "".join("<tr>" + "".join(f'<td style="padding:4px 8px">{e(str(c))}</td>' for c in r) + "</tr>"
                       for r in rows)
        return f'<table style="border-collapse:collapse;font-family:monospace"><tr>{th}</tr>{body}</table>'

    parts = [f"<h2>{e(title(ev))}</h2>", f"<p>{e(ev.reason)}</p>"]
    if ev.metrics:
        parts += ["<h3>Offline gate (same held-out split)</h3>", table(mhead, _metric_rows(ev.metrics))]
    if ev.slices:
        parts += ["<h3>Per slice</h3>", table(["slice", *mhead[1:]], _metric_rows(ev.slices))]
    if ev.training:
        parts += ["<h3>Training</h3>", table(["", ""], [[k, v] for k, v in ev.training])]
    if ev.canary:
        w = f" at {ev.canary_weight}%" if ev.canary_weight is not None else ""
        parts += [f"<h3>Live canary analysis{e(w)}</h3>",
                  table(["check", "value", "threshold", "result"], _check_rows(ev.canary))]
    if ev.drift:
        parts += ["<h3>Drift per feature</h3>", table(["feature", "score"], [[k, fmt(v)] for k, v in ev.drift])]
    buttons = [f'<a href="{e(links.view)}">Open the evidence and plots in the console</a>']
    if links.approve:
        buttons.append(f'<a href="{e(links.approve)}" style="background:#1a7f37;color:#fff;padding:8px 16px;'
                       f'text-decoration:none;border-radius:4px">Approve v{e(ev.version)}</a>')
    if links.reject:
        buttons.append(f'<a href="{e(links.reject)}" style="background:#cf222e;color:#fff;padding:8px 16px;'
                       f'text-decoration:none;border-radius:4px">Reject v{e(ev.version)}</a>')
    parts += ["<p>" + " &nbsp; ".join(buttons) + "</p>",
              "<p><small>The links open the console, which asks who you are and checks that you may approve."
              "</small></p>"]
    body = "\n".join(parts)
    return Email(subject=title(ev), text="\n".join(text) + "\n",
                 html=f'<!doctype html><html><body style="font-family:sans-serif">{body}</body></html>')


def slack_blocks(ev: Evidence, links: Links) -> dict[str, Any]:
    """A Slack (Block Kit) message with the same evidence: `{"text": fallback, "blocks": [...]}`."""
    def mrkdwn(text: str) -> dict[str, str]:
        return {"type": "mrkdwn", "text": text[:3000]}

    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{ev.model} v{ev.version} awaits approval"[:150]}},
        {"type": "section", "text": mrkdwn(f"*{ev.namespace}/{ev.name}* ({ev.kind}): {ev.reason}")},
    ]
    if ev.metrics:
        lines = [f"`{r.name}` v{ev.version} *{fmt(r.candidate)}* vs v{ev.champion_version or '?'} "
                 f"{fmt(r.champion)} ({fmt_delta(r)})" for r in ev.metrics]
        blocks.append({"type": "section", "text": mrkdwn("*Offline gate*\n" + "\n".join(lines))})
    if ev.slices:
        lines = [f"`{r.name}` {fmt(r.candidate)} vs {fmt(r.champion)} ({fmt_delta(r)})" for r in ev.slices]
        blocks.append({"type": "section", "text": mrkdwn("*Per slice*\n" + "\n".join(lines))})
    if ev.canary:
        lines = [f"`{c.name}` {fmt(c.value)} ({c.threshold}): "
                 f"{ {True: 'pass', False: 'FAIL', None: 'no data'}[c.passed]}" for c in ev.canary]
        blocks.append({"type": "section", "text": mrkdwn("*Live canary*\n" + "\n".join(lines))})
    if ev.drift:
        blocks.append({"type": "section", "fields": [mrkdwn(f"`{k}` {fmt(v)}") for k, v in ev.drift][:10]})
    if ev.training:
        blocks.append({"type": "context", "elements": [mrkdwn(f"{k}: {v}") for k, v in ev.training][:10]})
    actions: list[dict[str, Any]] = [{"type": "button", "text": {"type": "plain_text", "text": "Evidence"},
                                      "url": links.view}]
    if links.approve:
        actions.append({"type": "button", "style": "primary", "url": links.approve,
                        "text": {"type": "plain_text", "text": f"Approve v{ev.version}"}})
    if links.reject:
        actions.append({"type": "button", "style": "danger", "url": links.reject,
                        "text": {"type": "plain_text", "text": f"Reject v{ev.version}"}})
    blocks.append({"type": "actions", "elements": actions})
    return {"text": title(ev), "blocks": blocks}


def from_objects(kind: str, obj: Mapping[str, Any], version: str, *, model: str = "",
                 run_metrics: Mapping[str, float] | None = None,
                 champion_metrics: Mapping[str, float] | None = None,
                 run_facts: Mapping[str, str] | None = None, plots: Sequence[str] = (),
                 drift: Mapping[str, float] | None = None) -> Evidence:
    """Evidence from a RetrainSchedule / ModelDeployment (`kubectl get -o json` shape) plus what MLflow and
    the drift exporter said. Metrics named `slice.<slice>.<metric>` in the run become per-slice rows."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    model = model or str((spec.get("model") or {}).get("name") or spec.get("modelName") or
                         (spec.get("training") or {}).get("modelName") or meta.get("name", ""))
    run_metrics, champion_metrics = dict(run_metrics or {}), dict(champion_metrics or {})
    lower = ("loss", "error", "rmse", "mae", "mse", "latency", "logloss")
    reason, champion = "", ""
    rows: list[MetricRow] = []
    canary: list[CheckRow] = []
    weight: int | None = None
    if kind == "retrainschedules":
        run: Mapping[str, Any] = next((r for r in status.get("runs") or [] if str(r.get("version")) == version),
                                      {})
        champion = str(run.get("championVersion") or "")
        reason = (f"Run {run.get('id')} ({run.get('trigger', 'manual')}) trained version {version}; it passed the "
                  "champion gate and waits for a person to approve it.")
        if run.get("metric") and run.get("value") is not None:
            rows.append(MetricRow(str(run["metric"]), float(run["value"]),
                                  float(run["championValue"]) if run.get("championValue") is not None else None,
                                  not any(w in str(run["metric"]).lower() for w in lower)))
    else:
        ro = status.get("rollout") or {}
        champion = str((status.get("stable") or {}).get("version") or "")
        reason = str(ro.get("message") or "the rollout waits for approval")
        weight = int(ro["weight"]) if ro.get("weight") is not None else None
        for c in ro.get("checks") or ro.get("lastChecks") or []:
            val = c.get("value")
            canary.append(CheckRow(str(c.get("name")), float(val) if val is not None else None,
                                   str(c.get("threshold") or c.get("message") or
                                       (f"baseline {fmt(c['baseline'])}" if c.get("baseline") is not None else "")),
                                   None if c.get("result") in (None, "Inconclusive") else c.get("result") == "Pass"))
    have = {r.name for r in rows}
    for key in sorted(run_metrics):
        if key.startswith("slice.") or key in have:
            continue
        rows.append(MetricRow(key, run_metrics[key], champion_metrics.get(key),
                              not any(w in key.lower() for w in lower)))
    slices = [MetricRow(key.removeprefix("slice."), run_metrics[key], champion_metrics.get(key),
                        not any(w in key.lower() for w in lower))
              for key in sorted(run_metrics) if key.startswith("slice.")]
    return Evidence(kind=kind, namespace=str(meta.get("namespace", "")), name=str(meta.get("name", "")),
                    model=model, version=version, reason=reason, champion_version=champion,
                    metrics=tuple(rows), slices=tuple(slices),
                    training=tuple(sorted((run_facts or {}).items())), canary=tuple(canary),
                    canary_weight=weight, drift=tuple(sorted((drift or {}).items())), plots=tuple(plots))
