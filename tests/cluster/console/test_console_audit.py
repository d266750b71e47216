"""Audit: 100 decisions (each clicked twice at once, by two approvers) on the real API server -> exactly one
record per decision, with the actor's Kubernetes username, as an Event and an MLflow version tag."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.cluster.console.conftest import Env
from tests.fixtures.console import ConsoleProc, create_with_status, md_status_awaiting, model_deployment

pytestmark = pytest.mark.cluster
N = 100


def test_one_record_per_decision(console_env: Env, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    env, ns = console_env, console_env.namespace
    names = [f"md-{i:03d}" for i in range(N)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: create_with_status(env.kube, ns, "modeldeployments", model_deployment(n, env.model),
                                                   md_status_awaiting("2")), names))
    console = ConsoleProc(env.kube, tmp_path / "console", env.console_token, env.mlflow_uri,
                          env.prometheus_url).start()
    second = env.kube.kubectl("-n", "people", "create", "token", "alice", "--duration=1h").stdout.strip()
    try:
        with httpx.Client(base_url=console.url, timeout=60) as http:
            def click(args: tuple[str, str, str]) -> tuple[str, int]:
                name, decision, token = args
                r = http.post(f"/approvals/modeldeployments/{ns}/{name}/2", data={"decision": decision},
                              headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
                return name, r.status_code

            work = []
            for i, n in enumerate(names):
                decision = "approve" if i % 3 else "reject"
                work += [(n, decision, env.users.alice), (n, decision, second)]
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                results = list(pool.map(click, work))
        per: dict[str, list[int]] = {}
        for name, code in results:
            per.setdefault(name, []).append(code)
        assert all(sorted(c) == [200, 409] for c in per.values()), {k: v for k, v in per.items()
                                                                    if sorted(v) != [200, 409]}
        evs = [e for e in env.kube.core.list_namespaced_event(ns).items if e.reason.startswith("Decision")]
        by_obj: dict[str, list[str]] = {}
        for e in evs:
            by_obj.setdefault(e.involved_object.name, []).append(e.reason)
        assert sorted(by_obj) == names and all(len(v) == 1 for v in by_obj.values())
        assert all(env.users.alice_name in e.message for e in evs)
        for i, n in enumerate(names):
            obj = env.kube.custom.get_namespaced_custom_object("modelops.dev", "v1alpha1", ns, "modeldeployments", n)
            rec = json.loads(obj["metadata"]["annotations"]["modelops.dev/last-decision"])
            assert rec["actor"] == env.users.alice_name and rec["action"] == ("approve" if i % 3 else "reject")
            assert len(rec["evidence_sha256"]) == 64
        # MLflow: one tag per decision on the version (per action and deciding object)
        tags = MlflowClient(tracking_uri=env.mlflow_uri).get_model_version(env.model, "2").tags
        recs = [json.loads(v) for k, v in tags.items() if k.startswith("modelops.dev/decision.")]
        assert len(recs) == N and sorted(r["name"] for r in recs) == names
        assert all(r["actor"] == env.users.alice_name for r in recs)
        exe = Path(sys.executable).with_name("modelops")
        out = subprocess.run([str(exe), "history", env.model, "-n", ns, "--mlflow", env.mlflow_uri, "--json",
                              "--kubeconfig", env.kube.kubeconfig], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)) == N, "one history per ModelDeployment serving the model"
    finally:
        console.stop()
