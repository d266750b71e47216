"""The e2e tier: the whole loop against the *current kubeconfig* (`modelops cluster up --node` locally, or
any real cluster with the images loaded). A missing cluster, node or image fails the test and names the
command that provides it. Each test gets its own namespace; on failure the report gets a dump of the
namespace's events and pods, the operator's, KServe's and Traefik's logs (also written to build/e2e/)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops_dev.e2e.kube import Kube, KubeError
from modelops_dev.e2e.loop import Loop, Timeline

REPO = Path(__file__).resolve().parents[2]
DUMPS = REPO / "build" / "e2e"


@pytest.fixture(scope="session")
def e2e_kube() -> Kube:
    try:
        kube = Kube()
        kube.kubectl("version", "-o", "json", timeout=20)
    except (KubeError, OSError) as exc:
        pytest.fail(f"no cluster reachable with KUBECONFIG={os.environ.get('KUBECONFIG', '~/.kube/config')} "
                    f"({exc}); run: modelops cluster up --node && export KUBECONFIG=$(modelops cluster kubeconfig)",
                    pytrace=False)
    nodes = (kube.get("nodes") or {}).get("items") or []
    if not nodes:
        pytest.fail("the cluster has no node (a control plane alone runs no Pods); run: modelops cluster up --node",
                    pytrace=False)
    return kube


@pytest.fixture
def e2e_loop(e2e_kube: Kube, request: pytest.FixtureRequest) -> Iterator[Loop]:
    # MODELOPS_E2E_NAMESPACE: run in a namespace kept by an earlier run (MODELOPS_E2E_KEEP=1); every install
    # step is idempotent (server-side apply, helm upgrade --install), so a run that failed while installing
    # goes on from there
    ns = os.environ.get("MODELOPS_E2E_NAMESPACE") or f"modelops-e2e-{uuid.uuid4().hex[:6]}"
    work = DUMPS / ns
    loop = Loop(e2e_kube, ns, Timeline(), work_dir=work)
    # MODELOPS_E2E_APPROVAL_WAIT: seconds the held v2 waits for a person to approve it in the console (as
    # `modelops demo` on a terminal; e.g. with modelops_dev.e2e.console_shots --approve) before the loop makes
    # the Approve request itself; either way the decision goes through the console as the demo approver
    loop.approval_wait = float(os.environ.get("MODELOPS_E2E_APPROVAL_WAIT", "0"))
    request.node.e2e_loop = loop
    try:
        yield loop
    finally:
        # what the run measured, passed or not (pytest shows a passing test's output nowhere)
        record = {**loop.tl.to_json(), "measured_splits": loop.splits, "restarts": loop.restarts,
                  "approval": loop.approval, "dashboard": loop.dashboard}
        try:
            record["labels"] = loop.label_report()
        except Exception as exc:  # a report: what failed is in it
            record["labels"] = {"error": repr(exc)[:300]}
        (work / "timeline.json").write_text(json.dumps(record, indent=1, default=str))
        if os.environ.get("MODELOPS_E2E_KEEP"):
            loop.stop_traffic()
        else:
            loop.uninstall()


def dump(loop: Loop) -> str:
    k, ns = loop.kube, loop.ns
    parts = [f"===== namespace {ns} ====="]
    for title, args in (("events", ["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]),
                        ("pods", ["get", "pods", "-n", ns, "-o", "wide"]),
                        ("jobs", ["get", "jobs", "-n", ns]),
                        ("modelops", ["get", "modelops,inferenceservices.serving.kserve.io", "-n", ns, "-o", "yaml"]),
                        ("operator logs", ["logs", "-n", ns, "-l", "app.kubernetes.io/component=operator",
                                           "--tail=300", "--all-containers"]),
                        ("drift exporter logs", ["logs", "-n", ns, "-l", "app.kubernetes.io/component=drift-exporter",
                                                 "--tail=100"]),
                        ("mlflow logs", ["logs", "-n", ns, "-l", "app.kubernetes.io/component=mlflow", "--tail=100"]),
                        ("predictor logs (model server and KServe's agent)",
                         ["logs", "-n", ns, "-l", "serving.kserve.io/inferenceservice", "--tail=60", "--all-containers",
                          "--prefix"]),
                        ("httproutes", ["get", "httproutes", "-n", ns, "-o", "yaml"]),
                        ("KServe manager logs", ["logs", "-n", "kserve", "deployment/kserve-controller-manager",
                                                 "--tail=150"]),
                        ("Traefik logs", ["logs", "-n", "traefik", "deployment/traefik", "--tail=60"])):
        try:
            out = k.kubectl(*args, check=False, timeout=30)
        except Exception as exc:
            out = repr(exc)
        parts.append(f"----- {title} -----\n{out}")
    if loop.traffic:
        parts.append(f"----- traffic at the gateway -----\nanswers {dict(loop.traffic.answers)}\n"
                     f"split {loop.traffic.meter.report()}\nlast error {loop.traffic.last_error}")
    parts.append("----- timeline -----\n" + "\n".join(f"+{e['t']:7.1f}s [{e['stage']}] {e['message']}"
                                                     for e in loop.tl.events))
    return "\n".join(parts)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    loop = getattr(item, "e2e_loop", None)
    if loop is None or not report.failed or report.when not in ("setup", "call"):
        return
    text = dump(loop)
    DUMPS.mkdir(parents=True, exist_ok=True)
    path = DUMPS / f"{loop.ns}-failure.txt"
    path.write_text(text)
    report.sections.append(("e2e dump", f"(also in {path})\n{text[-20000:]}"))
