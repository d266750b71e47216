"""Approval by email, end to end: AwaitingApproval -> the console's notifier -> a real SMTP server (aiosmtpd)
-> the signed link, used by an authorised user -> the annotation -> the real operator approves in MLflow."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelops.desired import approval_link as links
from tests.cluster.console.conftest import Env
from tests.fixtures.console import ConsoleProc, retrain_schedule, rs_status_awaiting
from tests.fixtures.operator import Operator
from tests.fixtures.smtp_server import SmtpServer, text_part

pytestmark = pytest.mark.cluster


def _run(env: Env, name: str) -> dict[str, Any]:
    obj = env.kube.custom.get_namespaced_custom_object("modelops.dev", "v1alpha1", env.namespace,
                                                      "retrainschedules", name)
    return next(r for r in obj["status"]["runs"] if r["id"] == "r2")


def test_email_within_10s_signed_link_approves_within_5s(console_env: Env, smtp_server: SmtpServer,
                                                         tmp_path: Path) -> None:
    from mlflow import MlflowClient

    env, ns = console_env, console_env.namespace
    op = Operator(env.kube, tmp_path / "operator.log")
    op.start({"MODELOPS_MLFLOW_TRACKING_URI": env.mlflow_uri, "MODELOPS_PROMETHEUS_URL": env.prometheus_url,
              "MODELOPS_NAMESPACES": ns})
    smtp_dir = tmp_path / "smtp-secret"
    smtp_dir.mkdir()
    for k, v in {"host": "127.0.0.1", "port": str(smtp_server.port), "security": "none",
                 "from": "modelops@example.com", "to": "reviewers@example.com"}.items():
        (smtp_dir / k).write_text(v)
    console = ConsoleProc(env.kube, tmp_path / "console", env.console_token, env.mlflow_uri, env.prometheus_url,
                          {"MODELOPS_CONSOLE_SMTP_SECRET_DIR": str(smtp_dir)}).start()
    try:
        env.kube.custom.create_namespaced_custom_object("modelops.dev", "v1alpha1", ns, "retrainschedules",
                                                        retrain_schedule("churn-train", env.model))
        time.sleep(2)  # let the operator initialise the status first
        env.kube.custom.patch_namespaced_custom_object_status(
            "modelops.dev", "v1alpha1", ns, "retrainschedules", "churn-train",
            {"status": rs_status_awaiting("2", env.run_ids[1])})
        t0 = time.monotonic()
        (msg,) = smtp_server.wait_for(1, 10)
        took_email = time.monotonic() - t0
        assert took_email <= 10
        body, html = text_part(msg, "plain"), text_part(msg, "html")
        assert msg["To"] == "reviewers@example.com" and f"{env.model} version 2" in msg["Subject"]
        for needle in ("test roc_auc", "0.86", "0.83", "tenure", "Approve: ", "Reject: "):
            assert needle in body, needle
        assert "<table" in html and "Approve v2" in html
        approve = re.search(r"^Approve: (\S+)$", body, re.M).group(1)  # type: ignore[union-attr]
        reject = re.search(r"^Reject: (\S+)$", body, re.M).group(1)  # type: ignore[union-attr]
        path = approve.removeprefix(console.url)
        token = re.search(r"token=([^&\s]+)", approve).group(1)  # type: ignore[union-attr]
        reject_token = re.search(r"token=([^&\s]+)", reject).group(1)  # type: ignore[union-attr]

        with httpx.Client(base_url=console.url, timeout=30) as http:
            # the link without a session leads to sign-in and back
            r = http.get(path, headers={"Accept": "text/html"}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
            # bob holds a valid link (forwarded email) but may not approve: 403
            form = {"decision": "approve", "token": token}
            bob = http.post(path.split("?")[0], data=form,
                            headers={"Authorization": f"Bearer {env.users.bob}", "Accept": "application/json"})
            assert bob.status_code == 403
            # the reject token is not an approve token
            mixed = http.post(path.split("?")[0], data={"decision": "approve", "token": reject_token},
                              headers={"Authorization": f"Bearer {env.users.alice}", "Accept": "application/json"})
            assert mixed.status_code == 403 and "another object, version or decision" in mixed.text
            # alice signs in, opens the link, confirms
            http.post("/login", data={"token": env.users.alice, "next": path})
            page = http.get(path, headers={"Accept": "text/html"}).text
            assert "You opened a signed <b>approve</b> link" in page and 'id="link-error"' not in page
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
            sha = re.search(r'name="evidence_sha256" value="([0-9a-f]{64})"', page).group(1)  # type: ignore[union-attr]
            t1 = time.monotonic()
            done = http.post(path.split("?")[0], data={**form, "csrf": csrf, "evidence_sha256": sha},
                             headers={"Accept": "text/html"}, follow_redirects=False)
            assert done.status_code == 303, done.text[:1000]
            deadline = t1 + 5
            while time.monotonic() < deadline and _run(env, "churn-train")["state"] != "Approved":
                time.sleep(0.1)
            took_approval = time.monotonic() - t1
            assert _run(env, "churn-train")["state"] == "Approved", op.log.read_text()[-3000:]
            assert took_approval <= 5
            client = MlflowClient(tracking_uri=env.mlflow_uri)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if client.get_registered_model(env.model).aliases.get("challenger") == "2":
                    break
                time.sleep(0.2)
            assert client.get_registered_model(env.model).aliases.get("challenger") == "2"
            rec = client.get_model_version(env.model, "2").tags[
                f"modelops.dev/decision.approve.retrainschedules.{ns}.churn-train"]
            assert '"via":"link"' in rec and env.users.alice_name in rec
            # the same link again: the approval is over, the token no longer matches anything
            replay = http.post(path.split("?")[0], data={**form, "csrf": csrf}, headers={"Accept": "application/json"})
            assert replay.status_code == 409
        # announced once: the marker on the object, no second email after restarts of the notifier loop
        time.sleep(2.5)
        assert len(smtp_server.messages()) == 1
        print(f"\nemail after {took_email:.2f}s; approval applied by the operator {took_approval:.2f}s after the click")
    finally:
        console.stop()
        if op.proc and op.proc.poll() is None:
            op.kill()


def test_thousand_bad_links_against_the_live_console(console_env: Env, tmp_path: Path) -> None:
    """1,000 forged, replayed, expired or mismatched tokens POSTed by an authorised user: 0 accepted."""
    import random

    from tests.fixtures.console import create_with_status, md_status_awaiting, model_deployment

    env, ns = console_env, console_env.namespace
    create_with_status(env.kube, ns, "modeldeployments", model_deployment("churn", env.model), md_status_awaiting("2"))
    console = ConsoleProc(env.kube, tmp_path / "console", env.console_token, env.mlflow_uri,
                          env.prometheus_url).start()
    try:
        obj = env.kube.custom.get_namespaced_custom_object("modelops.dev", "v1alpha1", ns, "modeldeployments", "churn")
        (pending,) = links.pending_approvals("modeldeployments", obj)
        now = time.time()
        good = links.issue(console.secret, pending, "approve", now, 3600)
        rnd = random.Random(7)
        bad: list[tuple[str, str, str]] = []  # (version in URL, decision, token)
        for i in range(1000):
            k = i % 5
            if k == 0:
                bad.append(("2", "approve", links.issue(rnd.randbytes(32), pending, "approve", now, 3600)))
            elif k == 1:
                bad.append(("2", "approve", links.issue(console.secret, pending, "approve", now - 7200, 3600)))
            elif k == 2:
                stale = links.Pending(pending.kind, ns, "churn", "2", f"2020-01-{1 + i % 28:02d}T00:00:00Z")
                bad.append(("2", "approve", links.issue(console.secret, stale, "approve", now, 3600)))
            elif k == 3:
                bad.append(("2", "reject", good))
            else:
                pos = rnd.randrange(len(good))
                bad.append(("2", "approve", good[:pos] + ("A" if good[pos] != "A" else "B") + good[pos + 1:]))
        headers = {"Authorization": f"Bearer {env.users.alice}", "Accept": "application/json"}
        codes: dict[int, int] = {}
        with httpx.Client(base_url=console.url, timeout=30) as http:
            for version, decision, tok in bad:
                r = http.post(f"/approvals/modeldeployments/{ns}/churn/{version}",
                              data={"decision": decision, "token": tok}, headers=headers)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
            obj = env.kube.custom.get_namespaced_custom_object("modelops.dev", "v1alpha1", ns, "modeldeployments",
                                                              "churn")
            assert not (obj["metadata"].get("annotations") or {}).get("modelops.dev/approve")
            assert not (obj["metadata"].get("annotations") or {}).get("modelops.dev/reject")
            assert sum(codes.values()) == 1000 and 200 not in codes, codes
            # the genuine link is accepted once, then never again
            ok = http.post(f"/approvals/modeldeployments/{ns}/churn/2", data={"decision": "approve", "token": good},
                           headers=headers)
            assert ok.status_code == 200, ok.text
            again = http.post(f"/approvals/modeldeployments/{ns}/churn/2", data={"decision": "approve", "token": good},
                              headers=headers)
            assert again.status_code == 409
        print(f"\n1000 bad tokens -> status codes {codes}")
    finally:
        console.stop()
