"""Send an approval email over SMTP (stdlib smtplib): multipart/alternative, text and HTML.

Configuration comes from a Kubernetes Secret (mounted as files or read as data) with the keys

    host (required), port (default 587; 465 means implicit TLS), from (required), to (required, comma-
    separated), username, password (optional; both or neither), security: starttls (default) | tls | none

`security: none` is for a relay on localhost or in the Pod's network only; with it a password is refused.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from modelops.desired.approval_message import Email

SECURITY = ("starttls", "tls", "none")


class SmtpConfigError(ValueError):
    pass


class SmtpSendError(Exception):
    pass


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 587
    username: str = ""
    password: str = ""
    security: str = "starttls"
    timeout: float = 10.0

    @staticmethod
    def from_mapping(data: Mapping[str, str]) -> SmtpConfig:
        """From the Secret's (decoded) data; a clear error names the key that is wrong."""
        def get(key: str, default: str = "") -> str:
            return str(data.get(key, default)).strip()

        missing = [k for k in ("host", "from", "to") if not get(k)]
        if missing:
            raise SmtpConfigError(f"SMTP secret: missing key(s) {', '.join(missing)}")
        security = get("security", "starttls").lower()
        if security not in SECURITY:
            raise SmtpConfigError(f"SMTP secret: security must be one of {SECURITY}, not {security!r}")
        try:
            port = int(get("port", "465" if security == "tls" else "587"))
        except ValueError:
            raise SmtpConfigError(f"SMTP secret: port must be a number, not {get('port')!r}") from None
        if not 0 < port < 65536:
            raise SmtpConfigError(f"SMTP secret: port {port} is out of range")
        if bool(get("username")) != bool(get("password")):
            raise SmtpConfigError("SMTP secret: username and password go together")
        if security == "none" and get("password"):
            raise SmtpConfigError("SMTP secret: refusing to send a password without TLS (security: none)")
        to = tuple(a.strip() for a in get("to").split(",") if a.strip())
        bad = [a for a in (get("from"), *to) if "@" not in a or any(c in a for c in "\r\n")]
        if bad:
            raise SmtpConfigError(f"SMTP secret: not an email address: {', '.join(bad)}")
        return SmtpConfig(host=get("host"), sender=get("from"), to=to, port=port, username=get("username"),
                          password=get("password"), security=security)

    @staticmethod
    def from_dir(path: str | Path) -> SmtpConfig:
        """From a Secret mounted as a directory (one file per key)."""
        p = Path(path)
        if not p.is_dir():
            raise SmtpConfigError(f"SMTP secret directory {p} does not exist")
        return SmtpConfig.from_mapping({f.name: f.read_text() for f in p.iterdir()
                                        if f.is_file() and not f.name.startswith(".")})


def message(cfg: SmtpConfig, mail: Email, to: tuple[str, ...] | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = mail.subject.replace("\r", " ").replace("\n", " ")
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(to or cfg.to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=cfg.sender.split("@", 1)[1])
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    return msg


def send(cfg: SmtpConfig, mail: Email, to: tuple[str, ...] | None = None) -> None:
    """Deliver one email; SmtpSendError (with the server's answer) when it was not accepted."""
    msg = message(cfg, mail, to)
    ctx = ssl.create_default_context()
    try:
        if cfg.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=ctx)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        with smtp:
            if cfg.security == "starttls":
                smtp.starttls(context=ctx)
            if cfg.username:
                smtp.login(cfg.username, cfg.password)
            refused = smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise SmtpSendError(f"SMTP {cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}") from None
    if refused:
        raise SmtpSendError(f"SMTP {cfg.host}:{cfg.port} refused recipients: {sorted(refused)}")
