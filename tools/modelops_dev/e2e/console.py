"""The loop's approval step, done in the console (issue 18): the v2 rollout is held for approval after its
analysis passed (`rollout.approval.required` in the loop's ModelDeployment), and a person approves it in
`modelops console` (the chart's console, `console.enabled` in manifests/e2e/values.yaml).

The approver is a ServiceAccount `demo-approver` of the model namespace bound to the chart's approver
ClusterRole (verb `approve` on the modelops kinds); its token is what a person pastes into the console's
sign-in page. The console is reached with `kubectl port-forward` to its Service, whatever the cluster.

`modelops demo` prints the approval view's URL and the token and, on a terminal, waits `wait_for_person`
seconds for the decision to be made there; non-interactive runs (the e2e tier) make the same request the
Approve button makes, with the approver's token as a bearer token: POST
/approvals/modeldeployments/NS/NAME/VERSION decision=approve, through the console's authentication
(TokenReview) and authorisation (SubjectAccessReview), never with kubectl. Either way the decision's audit
record names `system:serviceaccount:NS:demo-approver`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from modelops_dev.e2e.gateway_traffic import port_forward

APPROVER = "demo-approver"
#: the console Service's port (charts/modelops values console.service.port)
CONSOLE_PORT = 80


class _Loop(Protocol):  # what this step uses of modelops_dev.e2e.loop.Loop
    ns: str
    release: str
    work: Path
    kube: Any
    tl: Any

    def md(self) -> dict[str, Any]: ...


def approver_username(namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:{APPROVER}"


def approver_token(loop: _Loop, hours: int = 4) -> str:
    """The demo approver (a ServiceAccount bound to the chart's approver ClusterRole) and a token for it."""
    loop.kube.kubectl("create", "serviceaccount", APPROVER, "-n", loop.ns, check=False)
    loop.kube.kubectl("create", "rolebinding", APPROVER, "-n", loop.ns, f"--clusterrole={loop.release}-approver",
                      f"--serviceaccount={loop.ns}:{APPROVER}", check=False)
    return str(loop.kube.kubectl("create", "token", APPROVER, "-n", loop.ns, f"--duration={hours}h")).strip()


def _decided(loop: _Loop, version: str) -> dict[str, Any] | None:
    """The console's decision record once the approve annotation names `version`."""
    meta = loop.md().get("metadata") or {}
    ann = meta.get("annotations") or {}
    if ann.get("modelops.dev/approve") != version:
        return None
    try:
        rec: dict[str, Any] = json.loads(ann.get("modelops.dev/last-decision") or "{}")
    except ValueError:
        rec = {}
    return rec


def approve(base_url: str, token: str, namespace: str, name: str, version: str) -> dict[str, Any]:
    """What the Approve button does, as the approver: the console checks the token and `approve` itself."""
    req = urllib.request.Request(f"{base_url}/approvals/modeldeployments/{namespace}/{name}/{version}",
                                 data=urllib.parse.urlencode({"decision": "approve"}).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                                          "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            out: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"the console refused the approval: HTTP {exc.code}: {exc.read()[:500]!r}") from None
    return out


def approve_in_console(loop: _Loop, name: str, version: str, wait_for_person: float = 0.0) -> dict[str, Any]:
    """Approve the held rollout of `version` in the console; returns the decision record (what the console
    wrote on the object) and how it was made."""
    token = approver_token(loop)
    token_file = loop.work / "approver-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    kubectl, env = loop.kube.kubectl_bin, loop.kube.env
    with port_forward(kubectl, env, loop.ns, f"{loop.release}-console", CONSOLE_PORT, timeout=60) as port:
        base = f"http://127.0.0.1:{port}"
        view = f"{base}/approvals/modeldeployments/{loop.ns}/{name}/{version}"
        deadline = time.monotonic() + 120  # the console answers (its Pod may still be starting)
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        model_page = read_model_page(base, token, loop.ns, name)
        loop.tl.event("approve", f"the console's model page: HTTP {model_page['status']}, source errors "
                                 f"{model_page['source_errors'] or 'none'}", version=version)
        loop.tl.event("approve", f"v{version} passed analysis and waits for approval in the console: {view} "
                                 f"(sign in as {approver_username(loop.ns)} with the token in {token_file})",
                      version=version)
        how = "person"
        record = None
        end = time.monotonic() + wait_for_person
        while wait_for_person > 0 and time.monotonic() < end and record is None:
            record = _decided(loop, version)
            time.sleep(2)
        if record is None:
            how = "http"
            answer = approve(base, token, loop.ns, name, version)
            record = json.loads(answer["record"])
        loop.tl.event("approve", f"v{version} approved in the console by {record.get('actor')} via "
                                 f"{record.get('via')} ({'in the browser' if how == 'person' else 'the Approve request'}"
                                 f", evidence sha256 {str(record.get('evidence_sha256', ''))[:12]})", version=version)
    return {"record": record, "how": how, "url": view, "token_file": str(token_file), "model_page": model_page}


def read_model_page(base_url: str, token: str, namespace: str, name: str) -> dict[str, Any]:
    """The model's page as the approver sees it: its HTTP status and the sources it could not read (the page
    says each in a `<p class="warn">`: MLflow, the drift exporter, ...)."""
    import html
    import re

    req = urllib.request.Request(f"{base_url}/models/{namespace}/{name}",
                                 headers={"Authorization": f"Bearer {token}", "Accept": "text/html"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, body = resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode(errors="replace")
    warnings = [html.unescape(w) for w in re.findall(r'<p class="warn">(.*?)</p>', body, re.S)]
    return {"status": status, "source_errors": warnings}
