"""The canary split at a real Gateway API data plane: Traefik v3 (built from its Go module, `modelops cluster
build-serving traefik`) serving the HTTPRoute that modelops' own builder writes (desired/http_route.py), with
the split measured at the gateway from which predictor answered.

No node here, so Traefik runs as a host process on this control plane's kubeconfig, and each predictor is a
small HTTP server on this machine answering like modelops' model server (`model_version` in the v2 body),
reached through a real Service whose EndpointSlice lists this machine's address (what the EndpointSlice
controller writes for a Pod, written here by the test because there is no Pod). Everything between the
client and those servers is real: the Gateway API CRDs (v1.5.1, standard channel), the GatewayClass and
Gateway, Traefik's Gateway provider reading routes and EndpointSlices, its weighted round robin.

Each step: >= 400 requests to the gateway's address only, measured share within 5 percentage points.

Tier e2e, although it needs only a control plane: Traefik is the e2e data plane and its cold build (~1 h on
2 busy cores) is made by `make e2e`, not by `make test`'s bootstrap (CI's 90 minutes include cold builds).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelops.decide.traffic_split import split
from modelops.desired.http_route import http_route
from tests.fixtures.cluster import Kube
from tests.fixtures.procs import free_port

pytestmark = pytest.mark.e2e

ISVC, HOST = "churn", "churn-gw.example.com"


def _predictor(version: str) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"model_name": ISVC, "model_version": version, "outputs": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def _apply(kube: Kube, objs: list[dict[str, Any]]) -> None:
    kube.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=modelops-tests", "-f", "-",
                 input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


def _backend(name: str, namespace: str, ip: str, port: int) -> list[dict[str, Any]]:
    """A selector-less Service and the EndpointSlice a Pod behind it would get (ready)."""
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{name}-host", "namespace": namespace,
                      "labels": {"kubernetes.io/service-name": name,
                                 "endpointslice.kubernetes.io/managed-by": "modelops-tests"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
         "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}]},
    ]


@pytest.fixture(scope="module")
def traefik(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    from modelops_dev.cluster import versions
    from modelops_dev.cluster.build import serving_ready
    from modelops_dev.cluster.node import node_ip
    from modelops_dev.e2e import gateway

    if not (serving_ready("traefik") and serving_ready("gateway-api")):
        pytest.fail("Traefik or the Gateway API CRDs are not built; run: modelops cluster build-serving traefik "
                    "gateway-api", pytrace=False)
    check = lambda *a, stdin=None, timeout=120: kube.kubectl(*a, input=stdin, timeout=timeout).stdout  # noqa: E731
    gateway.install_crds(check)
    web, ping = free_port(), free_port()
    _apply(kube, gateway.gateway_manifests(port=web))
    log = tmp_path_factory.mktemp("traefik") / "traefik.log"
    proc = subprocess.Popen([str(versions.serving_dir("traefik") / "bin" / "traefik"),
                             *gateway.traefik_args(web_port=web, ping_port=ping, status_ip="127.0.0.1")],
                            env={**os.environ, "KUBECONFIG": kube.kubeconfig}, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            gw = json.loads(kube.kubectl("get", "gateway", "-n", gateway.GATEWAY_NAMESPACE, gateway.GATEWAY_NAME,
                                         "-o", "json").stdout)
            if gateway.gateway_programmed(gw):
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        else:
            pytest.fail(f"Gateway not Programmed by Traefik: {gw.get('status')}\n{log.read_text()[-3000:]}")
        yield web, log
    finally:
        proc.terminate()
        proc.wait(20)
    _ = node_ip  # imported to fail early on a host without a routable address


def test_weighted_route_splits_at_the_gateway(kube: Kube, namespace: str, traefik: tuple[int, Path]) -> None:
    import httpx

    from modelops_dev.cluster.node import node_ip
    from modelops_dev.e2e.gateway_traffic import SplitMeter, weights_key

    web, log = traefik
    ip = node_ip()
    servers = {v: _predictor(v[1:]) for v in ("v1", "v2")}
    try:
        _apply(kube, [obj for v, (_s, port) in servers.items()
                      for obj in _backend(f"{ISVC}-{v}-predictor", namespace, ip, port)])
        ready = {f"{ISVC}-v1-predictor": True, f"{ISVC}-v2-predictor": True}
        meter = SplitMeter()
        seen: list[dict[str, Any]] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{web}", timeout=10) as client:
            for weight in (25, 60, 0, 100):
                s = split(ISVC, "v1", "v2", weight, ready)
                route = http_route(name=ISVC, namespace=namespace, uid="00000000-0000-0000-0000-000000000002",
                                   hostname=HOST, gateway=("kserve", "kserve-ingress-gateway"), split=s)
                route["metadata"].pop("ownerReferences")  # no ModelDeployment object in this test
                _apply(kube, [route])
                key = weights_key(s.weights())
                # the gateway has taken the new weights once a full window of answers matches them
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    probe = SplitMeter()
                    for _ in range(40):
                        r = client.post(f"/v2/models/{ISVC}/infer", headers={"Host": HOST}, content=b"{}")
                        probe.record(key, key, r.json().get("model_version") if r.status_code == 200 else None,
                                     r.status_code)
                    if probe.check(key, tolerance_pp=12.5, min_requests=40) == "":
                        break
                    time.sleep(1)
                for _ in range(400):
                    r = client.post(f"/v2/models/{ISVC}/infer", headers={"Host": HOST}, content=b"{}")
                    meter.record(key, key, r.json().get("model_version") if r.status_code == 200 else None,
                                 r.status_code)
                seen.append({"weights": s.weights(), "measured": meter.measured(key)})
                assert meter.check(key) == "", (meter.report(), log.read_text()[-2000:])
            # a request for another host is not served by this route
            other = client.post(f"/v2/models/{ISVC}/infer", headers={"Host": "other.example.com"}, content=b"{}")
            assert other.status_code == 404
        assert not meter.errors, meter.errors
        print(json.dumps(seen))
    finally:
        for server, _port in servers.values():
            server.shutdown()
