"""Webhook payloads for run events (pure): a plain JSON document, or a Slack-compatible message.

Slack's incoming webhooks (and Mattermost, Rocket.Chat, Teams' Slack-compatible connectors) accept
`{"text": ..., "attachments": [...]}`; the JSON form is for programs and carries every run field.
Neither contains a credential: runs hold references only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: attachment colour per event (Slack accepts good / warning / danger or a hex colour)
COLOURS = {"RunStarted": "#439FE0", "RunSucceeded": "good", "Approved": "good", "AwaitingApproval": "warning",
           "GateFailed": "warning", "Rejected": "danger", "RunFailed": "danger"}

_TITLES = {"RunStarted": "training started", "RunSucceeded": "new challenger registered",
           "GateFailed": "new version did not beat the champion", "RunFailed": "training failed",
           "AwaitingApproval": "new version awaits approval", "Approved": "version approved",
           "Rejected": "version rejected"}


def summary(event: str, namespace: str, name: str, model: str, run: Mapping[str, Any]) -> str:
    """One line a person can act on."""
    text = f"[{namespace}/{name}] {model}: {_TITLES.get(event, event)}"
    if run.get("version"):
        text += f", version {run['version']}"
    if run.get("value") is not None:
        text += f", {run.get('metric')} {float(run['value']):.4g}"
        if run.get("championValue") is not None:
            text += f" vs champion v{run.get('championVersion')} {float(run['championValue']):.4g}"
    if event in ("RunFailed", "GateFailed") and run.get("message"):
        text += f": {run['message']}"
    if event == "AwaitingApproval":
        text += f" (modelops approve {name} {run.get('version')} -n {namespace})"
    return f"{text} [run {run.get('id')}, {run.get('trigger')}]"


def webhook_payload(fmt: str, event: str, namespace: str, name: str, model: str, run: Mapping[str, Any],
                    time: str) -> dict[str, Any]:
    text = summary(event, namespace, name, model, run)
    if fmt == "slack":
        fields = [{"title": k, "value": str(run[k]), "short": True}
                  for k in ("trigger", "job", "version", "metric", "value", "championVersion", "championValue",
                            "verdict", "runId") if run.get(k) is not None]
        return {"text": text, "attachments": [{"color": COLOURS.get(event, "#808080"), "fallback": text,
                                               "title": f"{model}: {_TITLES.get(event, event)}",
                                               "fields": fields, "ts": time}]}
    return {"event": event, "time": time, "retrainSchedule": {"namespace": namespace, "name": name},
            "model": model, "summary": text, "run": dict(run)}


def event_payload(fmt: str, event: str, message: str, subject: Mapping[str, Any]) -> dict[str, Any]:
    """A ModelDeployment rollout event: `{"text": ...}` for Slack, else the event, message and subject."""
    if fmt == "slack":
        where = "/".join(str(subject[k]) for k in ("namespace", "name") if subject.get(k))
        kind = subject.get("kind", "")
        return {"text": f"*{event}* {kind} `{where}`: {message}"}
    return {"event": event, "message": message, **subject}
