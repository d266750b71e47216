# ruff: noqa: F811  (pytest injects the imported fixtures by parameter name)
"""The SMTP adapter against a real SMTP server process (aiosmtpd): text + HTML, recipients, errors."""

from __future__ import annotations

import pytest

from modelops.console.smtp import SmtpConfig, SmtpSendError, send
from modelops.desired.approval_message import Evidence, Links, MetricRow, email
from tests.fixtures.smtp_server import SmtpServer, smtp_server, text_part  # noqa: F401

pytestmark = pytest.mark.integration


def test_approval_email_is_delivered(smtp_server: SmtpServer) -> None:
    ev = Evidence(kind="retrainschedules", namespace="ml", name="churn", model="churn", version="2",
                  reason="passed the gate", champion_version="1", metrics=(MetricRow("roc_auc", 0.9, 0.8),))
    cfg = SmtpConfig.from_mapping({"host": "127.0.0.1", "port": str(smtp_server.port), "security": "none",
                                   "from": "modelops@example.com", "to": "ml-team@example.com"})
    send(cfg, email(ev, Links(view="http://console/approvals/x", approve="http://console/a?token=t")))
    (msg,) = smtp_server.wait_for(1, 10)
    assert msg["To"] == "ml-team@example.com" and "churn version 2" in msg["Subject"]
    assert "roc_auc" in text_part(msg, "plain") and "http://console/a?token=t" in text_part(msg, "plain")
    assert "<table" in text_part(msg, "html")


def test_unreachable_server_is_a_clear_error(smtp_server: SmtpServer) -> None:
    smtp_server.stop()
    cfg = SmtpConfig.from_mapping({"host": "127.0.0.1", "port": str(smtp_server.port), "security": "none",
                                   "from": "a@example.com", "to": "b@example.com"})
    with pytest.raises(SmtpSendError, match=f"127.0.0.1:{smtp_server.port}"):
        send(cfg, email(Evidence("modeldeployments", "n", "m", "m", "1", "r"), Links(view="v")))
