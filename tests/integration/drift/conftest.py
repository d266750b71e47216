"""The real drift exporter process, fed with CloudEvents exactly as the KServe agent sends them.

`kserve_headers` mirrors kserve/kserve pkg/logger/worker.go: the Go CloudEvents SDK in binary mode sends the
attributes as canonicalized `Ce-*` headers (`Ce-Specversion`, `Ce-Id`, `Ce-Source`, `Ce-Type`, `Ce-Time`),
the extensions `Ce-Inferenceservicename`, `Ce-Namespace`, `Ce-Component`, `Ce-Endpoint`, `Ce-Metadata`
(JSON of the logged metadata headers) and, with metadataAnnotations, `Ce-Annotations`; the body is the
inference payload with the Content-Type of the original request.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelops.formats.reference_profile import write_profile
from modelops_pipelines.profile import build_reference_profile
from tests.fixtures.procs import free_port, http_ok, start, stop, wait_until

#: the shared secret every test exporter starts with (MODELOPS_DRIFT_TOKEN), as the chart's Secret would hold
TOKEN = "test-drift-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

NUMERIC = ["tenure", "charges", "calls", "age"]
CATEGORICAL = ["plan", "region"]
FEATURES = NUMERIC + CATEGORICAL  # model input order


def make_frame(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    """Synthetic churn-like inputs; `shift` moves a numeric feature's mean by that many std."""
    shift = shift or {}
    frame = pd.DataFrame({
        "tenure": rng.normal(24 + 12 * shift.get("tenure", 0), 12, n),
        "charges": rng.lognormal(4 + 0.5 * shift.get("charges", 0), 0.5, n),
        "calls": rng.gamma(2, 2, n) + 2.8 * shift.get("calls", 0),
        "age": rng.normal(45 + 10 * shift.get("age", 0), 10, n),
        "plan": rng.choice(["basic", "plus", "premium"], n, p=[0.6, 0.3, 0.1]),
        "region": rng.choice(["north", "south", "east", "west"], n, p=[0.25, 0.25, 0.25, 0.25]),
    })
    return frame[FEATURES]


def predict(frame: pd.DataFrame) -> np.ndarray:
    return (frame["tenure"].to_numpy() < 18).astype(int)


def kserve_headers(event_id: str, kind: str, model: str, content_type: str = "application/json",
                   version: str | None = None, endpoint: str = "default") -> dict[str, str]:
    headers = {
        "Ce-Specversion": "1.0",
        "Ce-Id": event_id,
        "Ce-Source": "http://localhost:9081/",
        "Ce-Type": f"org.kubeflow.serving.inference.{kind}",
        "Ce-Time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "Ce-Inferenceservicename": model,
        "Ce-Namespace": "default",
        "Ce-Component": "predictor",
        "Ce-Endpoint": endpoint,
        "Ce-Metadata": "{}",
        "Content-Type": content_type,
    }
    if version is not None:
        headers["Ce-Annotations"] = json.dumps({"modelops.dev/model-version": version})
    return headers


def post(url: str, body: bytes | dict[str, Any] | list[Any], headers: dict[str, str] | None = None,
         auth: bool = True) -> tuple[int, Any]:
    """POST with the bearer token (auth=False: without it)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={**(headers or {"Content-Type": "application/json"}),
                                          **(AUTH if auth else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=AUTH), timeout=120) as r:
        return json.loads(r.read())


def metrics_text(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as r:
        return str(r.read().decode())


def sample_value(text: str, name: str, **labels: str) -> float | None:
    """Value of one series in Prometheus text format (labels must match exactly the given subset)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return None


def windows_by_shard(urls: list[str], namespace: str, models: list[str]) -> dict[str, list[tuple[int, float]]]:
    """model -> [(shard index, rows in its window)] over every shard's /metrics (a model held by no shard: [])."""
    out: dict[str, list[tuple[int, float]]] = {m: [] for m in models}
    for i, url in enumerate(urls):
        text = metrics_text(url)
        for m in models:
            rows = sample_value(text, "modelops_drift_window_rows", model_namespace=namespace, model=m)
            if rows is not None:
                out[m].append((i, rows))
    return out


def send_v1(url: str, model: str, frame: pd.DataFrame, rows_per_event: int = 10,
            version: str | None = None) -> None:
    """One request and one response CloudEvent per inference of `rows_per_event` rows (V1 protocol)."""
    preds = predict(frame)
    for start_row in range(0, len(frame), rows_per_event):
        part = frame.iloc[start_row:start_row + rows_per_event]
        event_id = str(uuid.uuid4())
        instances = [[float(r.tenure), float(r.charges), float(r.calls), float(r.age), r.plan, r.region]
                     for r in part.itertuples()]
        status, answer = post(url, {"instances": instances}, kserve_headers(event_id, "request", model,
                                                                            version=version))
        assert status == 200, answer
        status, answer = post(url, {"predictions": [int(p) for p in preds[start_row:start_row + len(part)]]},
                              kserve_headers(event_id, "response", model, version=version))
        assert status == 200, answer


@dataclass
class ExporterProcess:
    url: str
    port: int
    log: Path
    proc: Any


def exporter_cmd(port: int, *args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("modelops")), "drift-exporter", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", *args]


@pytest.fixture(scope="session")
def training_frame() -> pd.DataFrame:
    return make_frame(np.random.default_rng(7), 5000)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, training_frame: pd.DataFrame) -> Path:
    directory = tmp_path_factory.mktemp("model")
    profile = build_reference_profile(training_frame, task="classification", categorical=CATEGORICAL,
                                      predictions=predict(training_frame))
    write_profile(profile, directory)
    return directory


@pytest.fixture(scope="session")
def start_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ExporterProcess]]:
    procs: list[Any] = []

    def make(*args: str) -> ExporterProcess:
        port = free_port()
        log = tmp_path_factory.mktemp("exporter") / "exporter.log"
        proc = start(exporter_cmd(port, *args), log, env={"MODELOPS_DRIFT_TOKEN": TOKEN})
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/healthz"), 120, "drift exporter", proc, log)
        return ExporterProcess(url, port, log, proc)

    try:
        yield make
    finally:
        for proc in procs:
            stop(proc)


@pytest.fixture(scope="session")
def exporter(start_exporter: Callable[..., ExporterProcess], model_dir: Path) -> ExporterProcess:
    """The main exporter: one default reference, small windows so tests stay quick."""
    return start_exporter("--reference", str(model_dir), "--min-rows", "200", "--window-rows", "2000",
                          "--join-timeout", "2", "--max-event-rows", "1000", "--max-body-bytes", "200000")
