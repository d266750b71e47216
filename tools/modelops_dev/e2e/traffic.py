"""The e2e traffic client: churn rows from `modelops generate-data`'s generator, sent to the served model.

Two things KServe's data plane would do are done here instead, and said so:

- Traffic split. KServe's Standard mode splits by weighted Gateway API HTTPRoute backendRefs; the KServe
  stand-in has no gateway. Each batch goes to the stable or the canary predictor Service, chosen at random
  (seeded) with the canary's trafficPercent read from the InferenceService (`spec.canary[]`, which the
  stand-in mirrors in `status.canaryStatuses[]`).
- Payload logging. KServe's logger is an agent sidecar its controller injects; the stand-in injects none.
  After each inference the client posts the request and the response to the drift exporter exactly as
  KServe's agent does (CloudEvents v1.0, binary mode: `ce-*` headers, the inference body as the body, the
  request and the response sharing `ce-id`, `ce-endpoint` default|canary, `ce-inferenceservicename`).

All HTTP goes through the API server's service proxy (modelops_dev.e2e.kube.Kube.proxy).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelops_dev.e2e.kube import Kube

ISVC = ("serving.kserve.io", "inferenceservices")


def v2_inputs(frame: Any) -> list[dict[str, Any]]:
    """Open Inference Protocol tensors, one per column (the pandas codec's layout)."""
    out = []
    for name in frame.columns:
        col = frame[name]
        if col.dtype == object:
            out.append({"name": name, "datatype": "BYTES", "shape": [len(frame)],
                        "data": [None if isinstance(v, float) else str(v) for v in col.tolist()]})
        elif col.dtype.kind in "iu":
            out.append({"name": name, "datatype": "INT64", "shape": [len(frame)], "data": [int(v) for v in col]})
        else:
            out.append({"name": name, "datatype": "FP64", "shape": [len(frame)],
                        "data": [None if math.isnan(v) else float(v) for v in col.tolist()]})
    return out


def logger_headers(event_id: str, kind: str, isvc: str, namespace: str, endpoint: str,
                   version: str | None) -> dict[str, str]:
    """The headers KServe's agent sends with a logged request or response (pkg/logger/worker.go)."""
    headers = {
        "Ce-Specversion": "1.0", "Ce-Id": event_id, "Ce-Source": f"http://localhost:9081/{isvc}",
        "Ce-Type": f"org.kubeflow.serving.inference.{kind}",
        "Ce-Time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "Ce-Inferenceservicename": isvc, "Ce-Namespace": namespace, "Ce-Component": "predictor",
        "Ce-Endpoint": endpoint, "Ce-Metadata": "{}", "Content-Type": "application/json",
    }
    if version:
        headers["Ce-Annotations"] = json.dumps({"modelops.dev/model-version": version})
    return headers


def split(isvc: dict[str, Any] | None) -> tuple[str | None, int]:
    """(canary predictor name, its percent) for a canary that is in the spec *and* ready in status, as a
    gateway routes only to ready backends; (None, 0) otherwise."""
    canaries = ((isvc or {}).get("spec") or {}).get("canary") or []
    ready = {c.get("name") for c in ((isvc or {}).get("status") or {}).get("canaryStatuses") or [] if c.get("ready")}
    if not canaries or canaries[0]["predictor"]["name"] not in ready:
        return None, 0
    c = canaries[0]
    return str(c["predictor"]["name"]), int(c.get("trafficPercent", 0))


@dataclass
class TrafficStats:
    sent: dict[str, int] = field(default_factory=lambda: {"stable": 0, "canary": 0})
    errors: dict[str, int] = field(default_factory=lambda: {"stable": 0, "canary": 0})
    rerouted: int = 0
    logged: int = 0
    log_errors: int = 0
    last_error: str = ""


class TrafficClient:
    """A background thread: one batch every `period` seconds at the current `shift`."""

    def __init__(self, kube: Kube, namespace: str, isvc: str, exporter_service: str, *, rows: int = 20,
                 period: float = 0.3, seed: int = 7) -> None:
        self.kube, self.ns, self.isvc, self.exporter = kube, namespace, isvc, exporter_service
        self.rows, self.period = rows, period
        self.shift = 0.0
        self.rng = random.Random(seed)
        self.stats = TrafficStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-traffic", daemon=True)
        self._pools: dict[float, Any] = {}
        self._cursor = 0
        self._split: tuple[str | None, int] = (None, 0)
        self._split_at = 0.0

    def start(self) -> TrafficClient:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _pool(self) -> Any:
        from modelops_pipelines.generate import TARGET, generate_churn

        if self.shift not in self._pools:
            # a different seed from the training data's, the same generator and shift knob
            self._pools[self.shift] = generate_churn(rows=4000, seed=100, shift=self.shift).drop(columns=[TARGET])
        return self._pools[self.shift]

    def _current_split(self) -> tuple[str | None, int]:
        if time.monotonic() - self._split_at > 2.0:
            self._split = split(self.kube.get("inferenceservices.serving.kserve.io", self.isvc, self.ns))
            self._split_at = time.monotonic()
        return self._split

    def send_batch(self) -> None:
        pool = self._pool()
        start = self._cursor % (len(pool) - self.rows)
        self._cursor += self.rows
        frame = pool.iloc[start:start + self.rows]
        canary, percent = self._current_split()
        side = "canary" if canary and self.rng.uniform(0, 100) < percent else "stable"
        service = f"{self.isvc}-{canary}-predictor" if side == "canary" else f"{self.isvc}-predictor"
        event_id = str(uuid.uuid4())
        request = {"id": event_id, "inputs": v2_inputs(frame)}
        status, body = self.kube.proxy(self.ns, service, 80, f"v2/models/{self.isvc}/infer", method="POST",
                                       body=request)
        if status in (404, 503) and side == "canary":
            # the canary left between two reads of the split (promoted or rolled back): route again, as a
            # gateway would after its route changed; the model server never saw this request
            self._split_at = 0.0
            self.stats.rerouted += 1
            side, service = "stable", f"{self.isvc}-predictor"
            status, body = self.kube.proxy(self.ns, service, 80, f"v2/models/{self.isvc}/infer", method="POST",
                                           body=request)
        if status != 200:
            self.stats.errors[side] += 1
            self.stats.last_error = f"{service}: HTTP {status}: {body[:200]!r}"
            return
        self.stats.sent[side] += 1
        response = json.loads(body)
        version = str(response.get("model_version") or "") or None
        endpoint = "canary" if side == "canary" else "default"
        for kind, payload in (("request", request), ("response", response)):
            st, answer = self.kube.proxy(self.ns, self.exporter, 8080, "events", method="POST", body=payload,
                                         headers=logger_headers(event_id, kind, self.isvc, self.ns, endpoint, version))
            if st >= 300:
                self.stats.log_errors += 1
                self.stats.last_error = f"drift exporter: HTTP {st}: {answer[:200]!r}"
            else:
                self.stats.logged += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.send_batch()
            except Exception as exc:
                self.stats.last_error = repr(exc)
            self._stop.wait(max(0.0, self.period - (time.monotonic() - t0)))
