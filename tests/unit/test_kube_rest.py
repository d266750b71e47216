"""kube_rest against a local HTTP server: what goes on the wire (method, path, query, content type, body,
auth) and what comes back (JSON, or ApiError with the status and the API server's message; through the
Kube adapter, KubeError)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytestmark = pytest.mark.unit


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen.append({"method": self.command, "path": self.path, "ctype": self.headers.get("Content-Type"),
                         "auth": self.headers.get("Authorization"), "body": json.loads(body) if body else None})
            code, out = (404, {"kind": "Status", "message": "nope"}) if "missing" in self.path else (200, {"ok": 1})
            data = json.dumps(out).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _answer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()


def test_request_sends_json_and_returns_json(server: tuple[str, list[dict[str, Any]]]) -> None:
    from modelops.adapters import kube_rest
    from modelops.kubeconfig import Credentials

    host, seen = server
    api = kube_rest.Transport(Credentials(host, token="t0k"))
    path = kube_rest.group_path("serving.kserve.io", "v1beta1", "namespaces", "ns", "inferenceservices", "a/b")
    out = api.request("PATCH", path, query={"fieldManager": "modelops", "force": "true"},
                      body={"spec": {"x": 1}}, content_type="application/apply-patch+yaml")
    assert out == {"ok": 1}
    assert seen[-1] == {"method": "PATCH", "auth": "Bearer t0k", "ctype": "application/apply-patch+yaml",
                        "path": "/apis/serving.kserve.io/v1beta1/namespaces/ns/inferenceservices/a%2Fb"
                                "?fieldManager=modelops&force=true",
                        "body": {"spec": {"x": 1}}}
    assert api.request("GET", kube_rest.path("namespaces", "ns", "configmaps", "c")) == {"ok": 1}
    assert seen[-1]["path"] == "/api/v1/namespaces/ns/configmaps/c" and seen[-1]["body"] is None


def test_non_2xx_raises_the_status_and_the_api_servers_message(server: tuple[str, list[dict[str, Any]]]) -> None:
    from modelops.adapters import kube_rest
    from modelops.adapters.kube import Kube, KubeError
    from modelops.kubeconfig import Credentials

    host, seen = server
    api = kube_rest.Transport(Credentials(host))
    with pytest.raises(kube_rest.ApiError) as err:
        api.request("GET", kube_rest.path("namespaces", "ns", "secrets", "missing"))
    assert err.value.status == 404 and err.value.message == "nope"
    assert seen[-1]["auth"] is None  # no token, no header
    with pytest.raises(KubeError) as kerr:
        Kube(api).request("GET", kube_rest.path("namespaces", "ns", "secrets", "missing"))
    assert kerr.value.status == 404 and str(kerr.value) == "nope"
    assert Kube(api).get("modelops.dev", "v1alpha1", "modeldeployments", "ns", "missing") is None


def test_no_answer_is_a_kube_error_with_status_0() -> None:
    from modelops.adapters import kube_rest
    from modelops.adapters.kube import Kube, KubeError
    from modelops.kubeconfig import Credentials
    from tests.fixtures.procs import free_port

    kube = Kube(kube_rest.Transport(Credentials(f"http://127.0.0.1:{free_port()}")))
    with pytest.raises(KubeError) as err:
        kube.request("GET", kube_rest.path("namespaces"))
    assert err.value.status == 0 and "ConnectError" in str(err.value)
