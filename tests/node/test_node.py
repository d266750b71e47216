"""The node of `modelops cluster up --node`: Pods really run, get an IP, DNS, Services and the API server.

Runs against the current kubeconfig (any cluster with a schedulable node works); on this machine that is
`modelops cluster up --node --name e2e` (see `make e2e`). Images come from the local Docker daemon and are
loaded with `modelops cluster load-images` when the cluster is the local one.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BASE_IMAGE = os.environ.get("MODELOPS_E2E_BASE_IMAGE", "modelops/base:bookworm-python3.11")
HOW = "start a node with: modelops cluster up --node --name e2e && export KUBECONFIG=$(modelops cluster kubeconfig --name e2e)"


def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
    from modelops_dev.cluster import versions

    exe = versions.bin_dir() / "kubectl"
    proc = subprocess.run([str(exe if exe.exists() else "kubectl"), *args], input=input, text=True,
                          capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


@pytest.fixture(scope="module")
def node() -> str:
    try:
        nodes = json.loads(kubectl("get", "nodes", "-o", "json", timeout=20))["items"]
    except (AssertionError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"no reachable cluster in the current kubeconfig ({exc}); {HOW}")
    ready = [n["metadata"]["name"] for n in nodes
             if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])]
    if not ready:
        pytest.fail(f"the cluster has no Ready node; {HOW}")
    return ready[0]


@pytest.fixture(scope="module")
def image(node: str) -> str:
    """The test image, loaded into the local node when the current cluster is a `modelops cluster`."""
    kc = os.environ.get("KUBECONFIG", "")
    if kc:
        root = Path(kc).parent
        if (root / "node").is_dir():
            from modelops_dev.cluster.node import Node
            from modelops_dev.cluster.versions import bin_dir

            Node(root, bin_dir()).load_images([BASE_IMAGE], progress=print)
    return BASE_IMAGE


@pytest.fixture()
def ns() -> Iterator[str]:
    name = f"node-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _pod(ns: str, name: str, image: str, script: str, *, sa: str = "default", labels: str = "",
         ready_port: int | None = None) -> str:
    # with ready_port, Ready means the port accepts connections (a Service sends traffic to Ready endpoints only)
    probe = (f"\n    readinessProbe: {{tcpSocket: {{port: {ready_port}}}, periodSeconds: 1}}" if ready_port else "")
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}{labels}}}}}
spec:
  serviceAccountName: {sa}
  restartPolicy: Never
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["python3", "-c", {json.dumps(script)}]{probe}
"""


def _wait_phase(ns: str, name: str, phases: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    pod: dict = {}
    while time.monotonic() < deadline:
        pod = json.loads(kubectl("get", "pod", name, "-n", ns, "-o", "json"))
        if pod["status"].get("phase") in phases:
            return pod
        time.sleep(1)
    events = kubectl("get", "events", "-n", ns, check=False)
    raise AssertionError(f"pod {ns}/{name} not in {phases} after {timeout}s: {pod.get('status')}\n{events}")


def _serve_pod(ns: str, image: str) -> None:
    server = ("import http.server,socket\n"
              "class H(http.server.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        b=socket.gethostname().encode(); self.send_response(200); self.end_headers(); self.wfile.write(b)\n"
              "http.server.HTTPServer(('',8080),H).serve_forever()")
    kubectl("apply", "-f", "-", input=_pod(ns, "web", image, server, ready_port=8080).replace(
        "restartPolicy: Never", "restartPolicy: Always"))
    kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
""")
    kubectl("wait", "--for=condition=Ready", "pod/web", "-n", ns, "--timeout=120s")
    # the Service's EndpointSlice lists the Pod as ready; kube-proxy programs the Service's rules from it
    # asynchronously (a connection before that is refused), which is why the clients retry for a bounded time
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        slices = json.loads(kubectl("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web",
                                    "-o", "json"))["items"]
        if any((e.get("conditions") or {}).get("ready") for sl in slices for e in sl.get("endpoints") or []):
            return
        time.sleep(1)
    raise AssertionError(f"Service {ns}/web has no ready endpoint 60 s after its Pod was Ready")


# A client of a just-ready Service: up to 20 s of refused connections while kube-proxy syncs, then the error.
_GET = ("import time,urllib.request,urllib.error\n"
        "def get(url):\n"
        "    end = time.monotonic() + 20\n"
        "    while True:\n"
        "        try:\n"
        "            return urllib.request.urlopen(url, timeout=10).read().decode()\n"
        "        except urllib.error.URLError as e:\n"
        "            if not isinstance(e.reason, ConnectionRefusedError) or time.monotonic() > end: raise\n"
        "            time.sleep(0.5)\n")


def test_pod_runs_with_an_ip_and_logs(ns: str, image: str, node: str) -> None:
    kubectl("apply", "-f", "-", input=_pod(ns, "hello", image, "import socket; print('hello from', socket.gethostname())"))
    pod = _wait_phase(ns, "hello", {"Succeeded", "Failed"})
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert pod["spec"]["nodeName"] == node
    assert pod["status"].get("podIP"), "the CNI gave the Pod no address"
    assert "hello from hello" in kubectl("logs", "hello", "-n", ns)


def test_service_by_dns_name_and_cluster_ip(ns: str, image: str) -> None:
    _serve_pod(ns, image)
    client = (_GET + "import socket\n"
              f"print('dns', socket.gethostbyname('web.{ns}.svc.cluster.local'))\n"
              "print('short', get('http://web'))\n"
              f"print('fqdn', get('http://web.{ns}.svc.cluster.local'))\n")
    kubectl("apply", "-f", "-", input=_pod(ns, "client", image, client))
    pod = _wait_phase(ns, "client", {"Succeeded", "Failed"})
    logs = kubectl("logs", "client", "-n", ns)
    assert pod["status"]["phase"] == "Succeeded", logs
    cluster_ip = json.loads(kubectl("get", "svc", "web", "-n", ns, "-o", "json"))["spec"]["clusterIP"]
    assert f"dns {cluster_ip}" in logs
    assert "short web" in logs and "fqdn web" in logs


def test_pods_reach_the_api_server_with_their_service_account(ns: str, image: str) -> None:
    """The operator's and the training Jobs' path: the `kubernetes` Service, a projected token, RBAC."""
    kubectl("create", "serviceaccount", "reader", "-n", ns)
    kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", ns)
    kubectl("create", "rolebinding", "reader", "--role=pod-reader", f"--serviceaccount={ns}:reader", "-n", ns)
    script = ("import json,os,ssl,urllib.request,urllib.error\n"
              "d='/var/run/secrets/kubernetes.io/serviceaccount/'\n"
              "ctx=ssl.create_default_context(cafile=d+'ca.crt')\n"
              "tok=open(d+'token').read()\n"
              "host='https://kubernetes.default.svc'\n"
              "def get(p):\n"
              "    r=urllib.request.Request(host+p, headers={'Authorization':'Bearer '+tok})\n"
              "    try:\n"
              "        return urllib.request.urlopen(r, context=ctx, timeout=10).status\n"
              "    except urllib.error.HTTPError as e:\n"
              "        return e.code\n"
              f"print('own', get('/api/v1/namespaces/{ns}/pods'))\n"
              "print('secrets', get('/api/v1/secrets'))\n")
    kubectl("apply", "-f", "-", input=_pod(ns, "api", image, script, sa="reader"))
    pod = _wait_phase(ns, "api", {"Succeeded", "Failed"})
    logs = kubectl("logs", "api", "-n", ns)
    assert pod["status"]["phase"] == "Succeeded", logs
    assert "own 200" in logs, logs
    assert "secrets 403" in logs, logs


def test_exec_and_port_forward_reach_the_kubelet(ns: str, image: str) -> None:
    """The API server dials the kubelet (x509 both ways, Node authorizer) for exec, logs and port-forward."""
    _serve_pod(ns, image)
    out = kubectl("exec", "web", "-n", ns, "--", "python3", "-c", "print(6*7)")
    assert out.strip() == "42"
