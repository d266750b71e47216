"""Traffic to the gateway only, and the canary split measured there.

Requests go to Traefik's Service (the Gateway's data plane), at its ClusterIP when this machine reaches it, else
through `kubectl port-forward` (`service_url`), with the
InferenceService's host (`status.traffic.hostname` of the ModelDeployment, KServe's domain template), so they
take exactly the path a client of the cluster takes: Gateway -> modelops' weighted HTTPRoute -> a predictor
Service -> KServe's agent -> the model server. Which predictor answered is read from the response itself
(`model_version` of the v2 body, set by the model server from its version). The payload logging is KServe's
agent's: nothing here posts CloudEvents. A body with an `id` (the client's business key) is sent with that id
as `Ce-Id` too: KServe's agent names the request's and the response's logged events by it (it makes a UUID
only when the header is absent), so labels sent later by that id join the logged prediction
(modelops_dev.e2e.labels). `on_answer` sees every body with the answer's status and version.

`SplitMeter` (pure) attributes each answer to the route weights that were in force when the request was sent
and finished (a request that straddles a weight change counts for neither), so every canary step gets its own
measured split.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

WeightsKey = tuple[tuple[str, int], ...]


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


def route_weights(route: Mapping[str, Any] | None, isvc: str) -> dict[str, int]:
    """{predictor name: weight} of an HTTPRoute's backendRefs to KServe predictor Services
    (`{isvc}-{predictor}-predictor`) and to modelops' Services of canaries that log (`{isvc}-{predictor}-logged`);
    a ref without a weight has weight 1, as Gateway API says."""
    out: dict[str, int] = {}
    prefix = f"{isvc}-"
    for rule in ((route or {}).get("spec") or {}).get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            name = str(ref.get("name") or "")
            for suffix in ("-predictor", "-logged"):
                if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
                    out[name[len(prefix):-len(suffix)]] = int(ref.get("weight", 1))
    return out


def weights_key(weights: Mapping[str, int]) -> WeightsKey:
    return tuple(sorted((str(k), int(v)) for k, v in weights.items()))


@dataclass
class SplitMeter:
    """Answers per (route weights, version); versions are predictor names without the leading "v"."""

    counts: dict[WeightsKey, Counter[str]] = field(default_factory=dict)
    straddled: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def record(self, before: WeightsKey, after: WeightsKey, version: str | None, status: int) -> None:
        if status != 200 or version is None:
            self.errors[str(status)] += 1
            return
        if before != after:
            self.straddled += 1
            return
        self.counts.setdefault(before, Counter())[version] += 1

    def measured(self, key: WeightsKey) -> dict[str, float]:
        c = self.counts.get(key) or Counter()
        n = sum(c.values())
        return {v: 100.0 * k / n for v, k in c.items()} if n else {}

    def report(self) -> list[dict[str, Any]]:
        """One row per weight setting seen: the route's weights, the answers, the measured percentages."""
        rows = []
        for key, c in self.counts.items():
            rows.append({"weights": dict(key), "requests": sum(c.values()), "answers": dict(c),
                         "measured": {k: round(v, 1) for k, v in self.measured(key).items()}})
        return rows

    def check(self, key: WeightsKey, tolerance_pp: float = 5.0, min_requests: int = 400) -> str:
        """"" when the measured split matches the weights within the tolerance over enough requests, else why."""
        c = self.counts.get(key) or Counter()
        n = sum(c.values())
        if n < min_requests:
            return f"weights {dict(key)}: only {n} answers (< {min_requests})"
        got = self.measured(key)
        for predictor, weight in key:
            share = got.get(predictor.removeprefix("v"), 0.0)
            if abs(share - weight) > tolerance_pp:
                return f"weights {dict(key)}: {predictor} answered {share:.1f}% of {n} (want {weight} +/- {tolerance_pp})"
        return ""


@contextlib.contextmanager
def port_forward(kubectl_bin: str, env: Mapping[str, str], namespace: str, service: str, port: int,
                 timeout: float = 30) -> Iterator[int]:
    """`kubectl port-forward svc/SERVICE :PORT`; yields the local port."""
    proc = subprocess.Popen([kubectl_bin, "port-forward", "-n", namespace, f"svc/{service}", f":{port}",
                             "--address", "127.0.0.1"], env=dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        local = 0
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line or "")
            if m:
                local = int(m.group(1))
                break
            if proc.poll() is not None:
                raise RuntimeError(f"kubectl port-forward svc/{service} exited: {line}")
        if not local:
            raise TimeoutError(f"kubectl port-forward svc/{service} did not start within {timeout:.0f}s")
        # keep draining its output so it never blocks on a full pipe
        threading.Thread(target=lambda: [None for _ in proc.stdout or []], daemon=True).start()
        yield local
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether this process opens a TCP connection to host:port within `timeout`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def service_url(kubectl_bin: str, env: Mapping[str, str], namespace: str, service: str, port: int,
                timeout: float = 30) -> Iterator[tuple[str, str]]:
    """(base URL, how it is reached) of Service `service`:`port` as this process can reach it.

    Its ClusterIP when this machine reaches it (the machine is a node of the cluster, as the local node is, or
    the process runs in a Pod): the path an in-cluster client takes, Service -> kube-proxy -> Pod. Otherwise
    (kind or a remote cluster seen from outside) `kubectl port-forward`, where every byte streams through the
    API server, the kubelet and the runtime: on a 2-core node that path cost ~0.6 of a core at the e2e loop's
    16 requests/s, taken from the predictors whose latency the canary analysis judges."""
    ip = subprocess.run([kubectl_bin, "get", "service", service, "-n", namespace, "-o",
                         "jsonpath={.spec.clusterIP}"], env=dict(env), capture_output=True, text=True,
                        timeout=timeout).stdout.strip()
    if ip and ip != "None" and reachable(ip, port):
        host = f"[{ip}]" if ":" in ip else ip
        yield f"http://{host}:{port}", f"ClusterIP {ip}:{port}"
        return
    with port_forward(kubectl_bin, env, namespace, service, port, timeout) as local:
        yield f"http://127.0.0.1:{local}", f"kubectl port-forward (ClusterIP {ip or '-'} not reachable from here)"


class GatewayTraffic:
    """Background senders: each sends one inference after another to the gateway; the route's weights are
    re-read every `route_period` seconds by `read_weights` (e.g. the HTTPRoute's backendRefs)."""

    def __init__(self, base_url: str, host: str, isvc: str, body: Callable[[], dict[str, Any]],
                 read_weights: Callable[[], Mapping[str, int]], *, senders: int = 4, route_period: float = 1.0,
                 pace: float = 0.0, settle: float = 0.0,
                 on_answer: Callable[[dict[str, Any], int, str | None], None] | None = None) -> None:
        """`pace`: each sender starts a request at most every `pace` seconds. `settle`: answers within this many
        seconds after the route's weights changed count as straddling (the gateway takes the new route after
        its provider's next sync), not for either setting."""
        import httpx

        self.url = f"{base_url}/v2/models/{isvc}/infer"
        self.host, self.body, self.read_weights = host, body, read_weights
        self.on_answer = on_answer
        self.meter = SplitMeter()
        self.route_period, self.pace, self.settle = route_period, pace, settle
        self.answers: Counter[str] = Counter()
        self._weights: WeightsKey = ()
        self._changed_at = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=15.0)
        self._threads = [threading.Thread(target=self._send_loop, daemon=True, name=f"gw-traffic-{i}")
                         for i in range(senders)]
        self._threads.append(threading.Thread(target=self._route_loop, daemon=True, name="gw-route"))
        self.last_error = ""

    def start(self) -> GatewayTraffic:
        self._weights = weights_key(self.read_weights())
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(20)
        self._client.close()

    def _route_loop(self) -> None:
        while not self._stop.wait(self.route_period):
            try:
                new = weights_key(self.read_weights())
                if new != self._weights:
                    self._weights, self._changed_at = new, time.monotonic()
            except Exception as exc:
                self.last_error = f"reading the route: {exc!r}"

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            before = self._weights
            settling = t0 - self._changed_at < self.settle
            body = self.body()
            headers = {"Host": self.host, "Content-Type": "application/json"}
            if body.get("id"):
                headers["Ce-Id"] = str(body["id"])
            try:
                resp = self._client.post(self.url, content=json.dumps(body), headers=headers)
                status, version = resp.status_code, None
                if status == 200:
                    version = str(resp.json().get("model_version") or "") or None
                else:
                    self.last_error = f"HTTP {status}: {resp.text[:200]}"
            except Exception as exc:
                status, version = 0, None
                self.last_error = repr(exc)
            with self._lock:
                self.answers[version or f"HTTP {status}"] += 1
                # an answer while the gateway may still route by the previous weights counts for neither
                self.meter.record(before, () if settling else self._weights, version, status)
            if self.on_answer is not None:
                try:
                    self.on_answer(body, status, version)
                except Exception as exc:
                    self.last_error = f"on_answer: {exc!r}"
            self._stop.wait(max(0.0, self.pace - (time.monotonic() - t0)))
