"""The console's pages and decisions against a real API server and MLflow (no browser: see
test_console_browser.py for Chromium)."""

from __future__ import annotations

import concurrent.futures
import re
import time
from typing import Any

import httpx
import pytest

from tests.cluster.console.conftest import Env
from tests.fixtures.console import ConsoleProc

pytestmark = pytest.mark.cluster
HTML = {"Accept": "text/html"}


def bearer(token: str, json: bool = True) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json" if json else "text/html"}


def get_obj(env: Env, plural: str, name: str) -> dict[str, Any]:
    return env.kube.custom.get_namespaced_custom_object("modelops.dev", "v1alpha1", env.namespace, plural, name)


def events(env: Env, name: str) -> list[Any]:
    return [e for e in env.kube.core.list_namespaced_event(env.namespace).items
            if e.involved_object.name == name and e.reason.startswith("Decision")]


def test_pages_show_every_object_and_the_evidence(seeded: Env, console: ConsoleProc) -> None:
    env, ns = seeded, seeded.namespace
    with httpx.Client(base_url=console.url, timeout=30) as http:
        # anonymous: the pages send people to sign in, the API says 401
        r = http.get("/", headers=HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        assert http.get("/api/overview").status_code == 401
        assert http.get("/api/overview", headers=bearer("not-a-token")).status_code == 401

        over = http.get("/api/overview", headers=bearer(env.users.bob)).json()
        md = next(d for d in over["deployments"] if d["namespace"] == ns)
        rs = next(d for d in over["schedules"] if d["namespace"] == ns)
        assert (md["name"], md["phase"], md["stable"], md["canary"], md["weight"], md["pending"]) == (
            "churn", "AwaitingApproval", "1", "2", 50, ["2"])
        assert md["drift"] == pytest.approx(1 / 3, abs=1e-6), "drift share read from Prometheus"
        assert (rs["name"], rs["phase"], rs["pending"], rs["model"]) == ("churn-train", "AwaitingApproval", ["2"],
                                                                          env.model)
        page = http.get("/", headers=bearer(env.users.bob, json=False)).text
        assert f'href="/models/{ns}/churn"' in page and f"/approvals/retrainschedules/{ns}/churn-train/2" in page

        model = http.get(f"/models/{ns}/churn", headers=bearer(env.users.bob, json=False))
        assert model.status_code == 200, model.text[:2000]
        text = model.text
        for needle in ("AwaitingApproval", "error-ratio", "&lt;= 0.01", "Pass", "awaiting approval to promote",
                       "champion", "<polyline", "tenure", "Try a prediction"):
            assert needle in text, needle
        assert re.search(r"<td>2</td><td>\d{4}-\d\d-\d\d", text), "versions table with registration time"

        view = http.get(f"/approvals/modeldeployments/{ns}/churn/2", headers=bearer(env.users.bob, json=False))
        assert view.status_code == 200
        v = view.text
        for needle in ("test roc_auc", "0.86", "0.83", "+0.03 (better)", "roc_auc (gate, same split)",
                       "0000000000000000000000000000000000000000000000000000000000000002", "xgboost",
                       "error-ratio", "0.0004", "&lt;= 0.01", "tenure", "1.6", "plots/roc_pr_curves.png",
                       'id="btn-approve"', 'id="not-allowed"'):
            assert needle in v, needle
        img = re.search(r'<img src="(/artifacts/[0-9a-f]{32}/plots/roc_pr_curves.png)"', v)
        assert img, "plot from the training run"
        png = http.get(img.group(1), headers=bearer(env.users.bob))
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        sha = re.search(r'<code id="sha">([0-9a-f]{64})</code>', v)
        assert sha

        rsview = http.get(f"/approvals/retrainschedules/{ns}/churn-train/2", headers=bearer(env.users.alice, False))
        assert "Run r2 (manual) trained version 2" in rsview.text and 'id="not-allowed"' not in rsview.text

        for bad in (f"/models/{ns}/nope", f"/approvals/pods/{ns}/x/1", f"/approvals/modeldeployments/{ns}/Bad_Name/1"):
            assert http.get(bad, headers=bearer(env.users.bob)).status_code == 404, bad


def test_unauthorised_is_refused_and_authorised_decides_once(seeded: Env, console: ConsoleProc) -> None:
    env, ns = seeded, seeded.namespace
    url = f"/approvals/retrainschedules/{ns}/churn-train/2"
    with httpx.Client(base_url=console.url, timeout=30) as http:
        r = http.post(url, data={"decision": "approve"}, headers=bearer(env.users.bob))
        assert r.status_code == 403, r.text
        assert "may not approve" in r.json()["detail"] and env.users.bob_name in r.json()["detail"]
        ann = get_obj(env, "retrainschedules", "churn-train")["metadata"].get("annotations") or {}
        assert "modelops.dev/approve" not in ann and not events(env, "churn-train")

        assert http.post(url, data={"decision": "promote"}, headers=bearer(env.users.alice)).status_code == 400
        assert http.post(url.replace("/2", "/7"), data={"decision": "approve"},
                         headers=bearer(env.users.alice)).status_code == 409

        # two clicks at once: exactly one decision
        def click() -> int:
            return http.post(url, data={"decision": "approve"}, headers=bearer(env.users.alice)).status_code

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            codes = sorted(pool.map(lambda _i: click(), range(2)))
        assert codes == [200, 409], codes
        obj = get_obj(env, "retrainschedules", "churn-train")
        ann = obj["metadata"]["annotations"]
        assert ann["modelops.dev/approve"] == "2"
        assert env.users.alice_name in ann["modelops.dev/last-decision"]
        evs = events(env, "churn-train")
        assert len(evs) == 1 and evs[0].reason == "DecisionApproved" and env.users.alice_name in evs[0].message
        from mlflow import MlflowClient

        tags = MlflowClient(tracking_uri=env.mlflow_uri).get_model_version(env.model, "2").tags
        assert env.users.alice_name in tags[f"modelops.dev/decision.approve.retrainschedules.{ns}.churn-train"]
        # a replay after the decision is refused: the annotation already names the version
        assert click() == 409


def test_restart_mid_approval_loses_nothing(seeded: Env, console: ConsoleProc) -> None:
    """Open the approval view as a signed-in browser would, restart the console, submit the form."""
    env, ns = seeded, seeded.namespace
    url = f"/approvals/modeldeployments/{ns}/churn/2"
    with httpx.Client(base_url=console.url, timeout=30) as http:
        login = http.post("/login", data={"token": env.users.alice, "next": url}, follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == url
        page = http.get(url, headers=HTML).text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
        sha = re.search(r'name="evidence_sha256" value="([0-9a-f]{64})"', page).group(1)  # type: ignore[union-attr]
        console.stop()
        console.start()
        assert http.post(url, data={"decision": "approve", "csrf": "0" * 40, "evidence_sha256": sha},
                         headers=HTML).status_code == 403, "a forged CSRF token is refused"
        r = http.post(url, data={"decision": "approve", "csrf": csrf, "evidence_sha256": sha}, headers=HTML,
                      follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith("?done=approve"), r.text[:500]
        done = http.get(r.headers["location"], headers=HTML).text
        assert "Decided: approve by " + env.users.alice_name in done and sha[:12] in done
    obj = get_obj(env, "modeldeployments", "churn")
    assert obj["metadata"]["annotations"]["modelops.dev/approve"] == "2"
    assert [e.reason for e in events(env, "churn")] == ["DecisionApproved"]


def test_history_prints_serving_intervals_and_decisions(seeded: Env, console: ConsoleProc) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    env, ns = seeded, seeded.namespace
    with httpx.Client(base_url=console.url, timeout=30) as http:
        assert http.post(f"/approvals/modeldeployments/{ns}/churn/2", data={"decision": "reject"},
                         headers=bearer(env.users.alice)).status_code == 200
    exe = Path(sys.executable).with_name("modelops")
    out = subprocess.run([str(exe), "history", env.model, "-n", ns, "--mlflow", env.mlflow_uri, "--json",
                          "--kubeconfig", env.kube.kubeconfig], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (doc,) = json.loads(out.stdout)
    versions = {v["version"]: v for v in doc["versions"]}
    assert versions["1"]["intervals"][0][1] == "", "version 1 still serves"
    assert [d["action"] for d in versions["2"]["decisions"]] == ["reject"]
    assert versions["2"]["decisions"][0]["actor"] == env.users.alice_name
    text = subprocess.run([str(exe), "history", env.model, "-n", ns, "--mlflow", env.mlflow_uri,
                           "--kubeconfig", env.kube.kubeconfig], capture_output=True, text=True, timeout=60).stdout
    assert "version 2" in text and f"reject by {env.users.alice_name} via console" in text
    time.sleep(0)
