"""Fixtures of the RetrainSchedule cluster tests: the real control plane (shared), a real MLflow server, a
real Prometheus, the kubelet stand-in that runs the real trainer, a webhook sink, and the operator started
with short intervals and the test-only clock file."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kubelet_standin import KubeletStandin
from tests.fixtures.operator import Operator
from tests.fixtures.procs import free_port


class WebhookSink:
    """Collects the JSON bodies POSTed to http://127.0.0.1:PORT/<path>."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.received: list[tuple[str, dict[str, Any]]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [b for p, b in self.received if p == path]


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.server.shutdown()


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small, learnable binary classification table (CSV), so each real training takes seconds."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    n = 400
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] - 0.3 * x[:, 2] + rng.normal(scale=0.7, size=n) > 0).astype(int)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    frame["plan"] = rng.choice(["basic", "pro"], size=n)
    frame["y"] = y
    path = tmp_path_factory.mktemp("data") / "train.csv"
    frame.to_csv(path, index=False)
    return path


class Clock:
    """The operator's test-only clock file (MODELOPS_TEST_CLOCK_FILE)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def freeze(self, iso: str) -> None:
        self._write({"now": iso})

    def real(self) -> None:
        self._write({})

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)


@pytest.fixture
def clock(tmp_path: Path) -> Clock:
    c = Clock(tmp_path / "clock.json")
    c.real()
    return c


@pytest.fixture
def retrain_operator(kube_crds: Any, mlflow_server: Any, kubelet_standin: KubeletStandin,
                     clock: Clock, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(kube_crds, tmp_path / "operator.log")
    op.extra_env = {
        "MODELOPS_MLFLOW_TRACKING_URI": mlflow_server.uri,
        "MODELOPS_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens: set per test
        "MODELOPS_RETRAIN_RESYNC_SECONDS": "2",
        "MODELOPS_HTTP_TIMEOUT_SECONDS": "2",
        "MODELOPS_TEST_CLOCK_FILE": str(clock.path),
        "MODELOPS_TRAINER_IMAGE": "modelops/trainer:test",
        "MODELOPS_LOG_FORMAT": "plain",
    }
    op.start()
    yield op
    if op.proc and op.proc.poll() is None:
        op.kill()
