"""kube_rest against a local HTTP server: what goes on the wire (method, path, query, content type, body,
auth) and what comes back (JSON, or the client's ApiException with status and body)."""

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
    from kubernetes import client

    from modelops.adapters import kube_rest

    host, seen = server
    cfg = client.Configuration(host=host, api_key={"BearerToken": "Bearer t0k"})
    api = client.ApiClient(cfg)
    path = kube_rest.group_path("serving.kserve.io", "v1beta1", "namespaces", "ns", "inferenceservices", "a/b")
    out = kube_rest.request(api, "PATCH", path, query={"fieldManager": "modelops", "force": "true"},
                            body={"spec": {"x": 1}}, content_type="application/apply-patch+yaml")
    assert out == {"ok": 1}
    assert seen[-1] == {"method": "PATCH", "auth": "Bearer t0k", "ctype": "application/apply-patch+yaml",
                        "path": "/apis/serving.kserve.io/v1beta1/namespaces/ns/inferenceservices/a%2Fb"
                                "?fieldManager=modelops&force=true",
                        "body": {"spec": {"x": 1}}}
    assert kube_rest.request(api, "GET", kube_rest.path("namespaces", "ns", "configmaps", "c")) == {"ok": 1}
    assert seen[-1]["path"] == "/api/v1/namespaces/ns/configmaps/c" and seen[-1]["body"] is None


def test_non_2xx_raises_the_clients_api_exception(server: tuple[str, list[dict[str, Any]]]) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from modelops.adapters import kube_rest
    from modelops.adapters.kube import api_error_message

    host, _seen = server
    api = client.ApiClient(client.Configuration(host=host))
    with pytest.raises(ApiException) as err:
        kube_rest.request(api, "GET", kube_rest.path("namespaces", "ns", "secrets", "missing"))
    assert err.value.status == 404 and api_error_message(err.value) == "nope"
