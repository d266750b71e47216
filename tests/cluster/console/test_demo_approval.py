"""The demo's / e2e loop's approval step (modelops_dev.e2e.console) against the real console on the real API
server: the demo approver (a ServiceAccount bound to the chart's approver ClusterRole) gets a token, and the
Approve request made with it through the console's HTTP endpoint (TokenReview + SubjectAccessReview, no kubectl
annotate) decides the held rollout; the record names the approver. The port-forward to the console's Service
needs a node: the e2e tier runs that part (tests/e2e/test_loop.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelops_dev.e2e import console as demo_console
from modelops_dev.e2e.kube import Kube as E2EKube
from tests.cluster.console.conftest import Env
from tests.fixtures.console import ConsoleProc

pytestmark = pytest.mark.cluster


class _Loop:
    def __init__(self, kube: E2EKube, ns: str, work: Path) -> None:
        self.kube, self.ns, self.work = kube, ns, work
        self.release = "modelops"  # tests.fixtures.console renders the chart as release "modelops"
        self.events: list[str] = []
        self.tl = self

    def event(self, _stage: str, message: str, **_data: Any) -> None:
        self.events.append(message)

    def md(self) -> dict[str, Any]:
        return json.loads(self.kube.kubectl("get", "modeldeployment", "churn", "-n", self.ns, "-o", "json"))


def test_the_demo_approver_approves_through_the_console(seeded: Env, console: ConsoleProc) -> None:
    env, ns = seeded, seeded.namespace
    loop = _Loop(E2EKube(env.kube.kubeconfig), ns, env.tmp)
    token = demo_console.approver_token(loop)
    assert demo_console._decided(loop, "2") is None
    answer = demo_console.approve(console.url, token, ns, "churn", "2")
    record = json.loads(answer["record"])
    assert record["actor"] == demo_console.approver_username(ns) == f"system:serviceaccount:{ns}:demo-approver"
    assert (record["action"], record["via"], record["version"]) == ("approve", "console", "2")
    assert len(record["evidence_sha256"]) == 64
    assert demo_console._decided(loop, "2") == record  # on the object, where the operator reads it
    # a second approval is refused by the console (already decided), not applied twice
    with pytest.raises(RuntimeError, match="HTTP 409"):
        demo_console.approve(console.url, token, ns, "churn", "2")
    # a token of someone without the approver binding is refused with 403 by the console
    with pytest.raises(RuntimeError, match="HTTP 403"):
        demo_console.approve(console.url, env.users.bob, ns, "churn", "2")
