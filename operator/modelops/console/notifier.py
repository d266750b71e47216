"""Announce each pending approval once, by email (SMTP) and Slack, with the evidence and signed links.

Runs inside the console (which serves the links) when SMTP or Slack is configured. It keeps no state of
its own: which approvals were announced is recorded on the object itself, in the annotation
`modelops.dev/approval-notified` (`<version>/<binding>`, the last few), written after a successful send,
so a restart re-sends at most the message whose marker was not written yet (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import quote

import httpx

from modelops.console import evidence, smtp
from modelops.console.kube import Kube, KubeError
from modelops.console.sources import Mlflow, Prometheus, SourceError
from modelops.desired import approval_link as links
from modelops.desired.approval_message import Links, email, slack_blocks

log = logging.getLogger("modelops.console.notifier")
ANN_NOTIFIED = "modelops.dev/approval-notified"
KEEP = 8


class Notifier:
    def __init__(self, kube: Kube, mlflow: Mlflow, prom: Prometheus, *, public_url: str, secret: bytes | None,
                 smtp_cfg: smtp.SmtpConfig | None, slack_url: str, ttl: float,
                 namespaces: list[str] | None) -> None:
        if not public_url:
            raise ValueError("approval messages need the console's public URL (MODELOPS_CONSOLE_PUBLIC_URL)")
        self.kube, self.mlflow, self.prom = kube, mlflow, prom
        self.public_url = public_url.rstrip("/")
        self.secret, self.smtp, self.slack_url, self.ttl = secret, smtp_cfg, slack_url, ttl
        self.namespaces = namespaces
        self.sent = 0

    def links_for(self, p: links.Pending) -> Links:
        view = f"{self.public_url}/approvals/{p.kind}/{quote(p.namespace)}/{quote(p.name)}/{quote(p.version)}"
        if self.secret is None:
            return Links(view=view)
        now = time.time()
        tok = {d: links.issue(self.secret, p, d, now, self.ttl) for d in links.DECISIONS}
        return Links(view=view, approve=f"{view}?decision=approve&token={tok['approve']}",
                     reject=f"{view}?decision=reject&token={tok['reject']}")

    async def announce(self, kind: str, obj: dict[str, Any], p: links.Pending) -> None:
        ev, _extra = await evidence.gather(kind, obj, p.version, self.mlflow, self.prom)
        where = self.links_for(p)
        if self.smtp is not None:
            await asyncio.to_thread(smtp.send, self.smtp, email(ev, where))
        if self.slack_url:
            async with httpx.AsyncClient(timeout=10.0) as http:
                resp = await http.post(self.slack_url, json=slack_blocks(ev, where))
                if resp.status_code >= 300:
                    raise SourceError(f"Slack webhook: HTTP {resp.status_code}")

    async def once(self) -> int:
        sent = 0
        for kind in links.KINDS:
            for obj in await self.kube.list_objects(kind, self.namespaces):
                meta = obj.get("metadata") or {}
                done = [m for m in str((meta.get("annotations") or {}).get(ANN_NOTIFIED, "")).split(",") if m]
                for p in links.pending_approvals(kind, obj):
                    marker = f"{p.version}/{p.binding}"
                    if marker in done:
                        continue
                    try:
                        await self.announce(kind, obj, p)
                    except (smtp.SmtpSendError, SourceError, httpx.HTTPError) as exc:
                        log.warning("approval message for %s/%s/%s v%s not sent: %s", kind, p.namespace, p.name,
                                    p.version, exc)
                        continue
                    done = [*done, marker][-KEEP:]
                    await self.kube.merge_patch(kind, p.namespace, p.name,
                                                {"metadata": {"annotations": {ANN_NOTIFIED: ",".join(done)}}})
                    sent += 1
                    log.info("approval message sent for %s/%s/%s v%s", kind, p.namespace, p.name, p.version)
        self.sent += sent
        return sent

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.once()
            except KubeError as exc:
                log.warning("pending approvals not listed: %s", exc)
            await asyncio.sleep(interval)
