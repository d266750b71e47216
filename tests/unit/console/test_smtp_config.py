"""SMTP settings from a Secret: clear errors naming the key."""

from __future__ import annotations

import pytest

from modelops.console.smtp import SmtpConfig, SmtpConfigError, message
from modelops.desired.approval_message import Email

pytestmark = pytest.mark.unit


def test_good_config_and_message() -> None:
    cfg = SmtpConfig.from_mapping({"host": "smtp.example.com", "from": "ops@example.com",
                                   "to": "a@example.com, b@example.com", "username": "u", "password": "p"})
    assert cfg.port == 587 and cfg.security == "starttls" and cfg.to == ("a@example.com", "b@example.com")
    msg = message(cfg, Email("subj\nx", "plain", "<p>html</p>"))
    assert msg["Subject"] == "subj x" and msg.is_multipart()
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


@pytest.mark.parametrize(("data", "error"), [
    ({"from": "a@b", "to": "c@d"}, "missing key"),
    ({"host": "h", "from": "a@b", "to": "c@d", "security": "ssl3"}, "security must be"),
    ({"host": "h", "from": "a@b", "to": "c@d", "port": "x"}, "port must be a number"),
    ({"host": "h", "from": "a@b", "to": "c@d", "username": "u"}, "go together"),
    ({"host": "h", "from": "a@b", "to": "c@d", "username": "u", "password": "p", "security": "none"}, "without TLS"),
    ({"host": "h", "from": "nobody", "to": "c@d"}, "not an email address"),
])
def test_bad_config(data: dict[str, str], error: str) -> None:
    with pytest.raises(SmtpConfigError, match=error):
        SmtpConfig.from_mapping(data)
