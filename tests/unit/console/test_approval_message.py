"""Evidence messages: the email's text and HTML and the Slack blocks carry the same evidence."""

from __future__ import annotations

import pytest

from modelops.desired.approval_message import (
    CheckRow,
    Evidence,
    Links,
    MetricRow,
    digest,
    email,
    from_objects,
    slack_blocks,
)

pytestmark = pytest.mark.unit


def evidence(**kw: object) -> Evidence:
    base = dict(kind="retrainschedules", namespace="ml", name="churn", model="churn", version="4",
                reason="Run r1 passed the gate", champion_version="3",
                metrics=(MetricRow("roc_auc", 0.91, 0.88), MetricRow("rmse", 1.5, 2.0, higher_is_better=False)),
                slices=(MetricRow("region=eu", 0.9, 0.92),), training=(("data sha256", "abc123"),),
                canary=(CheckRow("error-ratio", 0.0004, "<= 0.001", True),), canary_weight=50,
                drift=(("tenure", 1.7), ("balance", 0.2)), plots=("plots/roc.png",))
    base.update(kw)
    return Evidence(**base)  # type: ignore[arg-type]


def test_email_text_and_html_carry_the_evidence() -> None:
    links = Links(view="https://c/approvals/x", approve="https://c/a?token=T1", reject="https://c/r?token=T2")
    mail = email(evidence(), links)
    assert mail.subject == "[ml/churn] churn version 4: new version awaits approval"
    for part in (mail.text, mail.html):
        for needle in ("roc_auc", "0.91", "0.88", "+0.03 (better)", "-0.5 (better)", "region=eu", "-0.02 (worse)",
                       "error-ratio", "&lt;= 0.001" if part is mail.html else "<= 0.001", "tenure", "1.7",
                       "abc123", "https://c/a?token=T1", "https://c/r?token=T2"):
            assert needle in part, (needle, part[:2000])


def test_html_escapes_everything_from_objects() -> None:
    mail = email(evidence(reason="<script>alert(1)</script>", name="a&b"), Links(view="https://c/?a=1&b=<x>"))
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html and "a&amp;b" in mail.html
    assert "b=&lt;x&gt;" in mail.html


def test_slack_blocks() -> None:
    msg = slack_blocks(evidence(), Links(view="https://c/v", approve="https://c/a", reject="https://c/r"))
    kinds = [b["type"] for b in msg["blocks"]]
    assert kinds[0] == "header" and kinds[-1] == "actions"
    urls = [e["url"] for e in msg["blocks"][-1]["elements"]]
    assert urls == ["https://c/v", "https://c/a", "https://c/r"]
    text = str(msg)
    assert "roc_auc" in text and "error-ratio" in text and "tenure" in text


def test_digest_is_stable_and_sensitive() -> None:
    assert digest(evidence()) == digest(evidence())
    assert digest(evidence()) != digest(evidence(drift=(("tenure", 1.8), ("balance", 0.2))))
    assert len(digest(evidence())) == 64


def test_from_objects_reads_both_kinds() -> None:
    rs = {"metadata": {"namespace": "ml", "name": "churn"}, "spec": {"training": {"modelName": "churn"}},
          "status": {"runs": [{"id": "r1", "state": "AwaitingApproval", "version": "4", "metric": "rmse",
                               "value": 1.5, "championVersion": "3", "championValue": 2.0}]}}
    ev = from_objects("retrainschedules", rs, "4", run_metrics={"slice.eu.rmse": 1.0})
    assert ev.model == "churn" and ev.champion_version == "3"
    assert ev.metrics[0] == MetricRow("rmse", 1.5, 2.0, higher_is_better=False) and ev.metrics[0].better
    assert ev.slices[0].name == "eu.rmse"
    md = {"metadata": {"namespace": "ml", "name": "churn"}, "spec": {"model": {"name": "churn"}},
          "status": {"stable": {"version": "3"}, "canary": {"version": "4"},
                     "rollout": {"state": "AwaitingApproval", "weight": 50, "message": "analysis passed",
                                 "lastChecks": [{"name": "err", "result": "Pass", "value": 0.0},
                                                {"name": "lat", "result": "Inconclusive"}]}}}
    ev = from_objects("modeldeployments", md, "4")
    assert ev.canary == (CheckRow("err", 0.0, "", True), CheckRow("lat", None, "", None))
    assert ev.canary_weight == 50 and ev.champion_version == "3" and ev.reason == "analysis passed"
