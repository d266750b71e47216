"""A small real HTTP model server exposing the modelops model server's Prometheus metrics.

Stand-in for `modelops serve` (not merged into main when these tests were written): it answers the Open
Inference Protocol's infer endpoint and exposes `modelops_server_requests_total{code}` and the
`modelops_server_request_duration_seconds` histogram on /metrics, with injectable errors and latency so a
test can make a canary unhealthy. Run: python model_server.py --port P [--error-rate 0.3] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.buckets = [0] * len(BUCKETS)
        self.count = 0
        self.sum = 0.0

    def observe(self, code: int, seconds: float) -> None:
        with self.lock:
            self.requests[str(code)] = self.requests.get(str(code), 0) + 1
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    self.buckets[i] += 1
            self.count += 1
            self.sum += seconds

    def render(self) -> str:
        with self.lock:
            lines = ["# TYPE modelops_server_requests_total counter"]
            lines += [f'modelops_server_requests_total{{code="{c}"}} {n}' for c, n in sorted(self.requests.items())]
            lines.append("# TYPE modelops_server_request_duration_seconds histogram")
            lines += [f'modelops_server_request_duration_seconds_bucket{{le="{b}"}} {n}'
                      for b, n in zip(BUCKETS, self.buckets, strict=True)]
            lines.append(f'modelops_server_request_duration_seconds_bucket{{le="+Inf"}} {self.count}')
            lines.append(f"modelops_server_request_duration_seconds_count {self.count}")
            lines.append(f"modelops_server_request_duration_seconds_sum {self.sum}")
        return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--error-rate", type=float, default=0.0)
    ap.add_argument("--latency", type=float, default=0.002)
    args = ap.parse_args()
    metrics = Metrics()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, metrics.render().encode(), "text/plain; version=0.0.4")
            else:
                self._send(200, b'{"ready": true}')

        def do_POST(self) -> None:
            start = time.perf_counter()
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(args.latency)
            code = 500 if random.random() < args.error_rate else 200
            body = json.dumps({"outputs": [{"name": "p", "shape": [1], "datatype": "FP32", "data": [0.5]}]})
            self._send(code, body.encode())
            metrics.observe(code, time.perf_counter() - start)

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
