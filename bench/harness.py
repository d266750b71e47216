"""The set-up the operator benchmarks share (rollout_latency, operator_memory, soak): a real control plane
(`modelops cluster` binaries) with the modelops CRDs and KServe's InferenceService CRD, the KServe stand-in
of tests/fixtures/kserve.py (so InferenceServices report Ready as in a cluster), the operator as a real
process (`modelops operator`, as the chart runs it), the benchmark's objects, and the operator's RSS.

    with OperatorBench("bench", standin_period=3.0) as b:
        b.namespace("bench-100"); b.create("bench-100", range(100)); b.wait_ready("bench-100", 100, ...)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from modelops.api import GROUP, VERSION  # noqa: E402
from modelops_dev.cluster.build import binaries_ready  # noqa: E402
from modelops_dev.cluster.local import LocalCluster  # noqa: E402
from tests.fixtures.cluster import Kube  # noqa: E402
from tests.fixtures.kserve import KServeStandIn, install_kserve_crd  # noqa: E402
from tests.fixtures.operator import Operator  # noqa: E402

PLURAL = "modeldeployments"


def md(name: str, uri: str) -> dict[str, Any]:
    """The benchmarks' ModelDeployment: a plain storage URI (no registry round trip), immediate rollout."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"storageUri": uri}, "serving": {"runtime": "kserve", "modelFormat": "sklearn",
                                                                "deploymentMode": "Standard"},
                     "logger": {"enabled": False}, "rollout": {"strategy": "Immediate"}}}


def rss_mb(proc: psutil.Process) -> float:
    """RSS of the operator process and its children, MB."""
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def smaps_mb(proc: psutil.Process) -> dict[str, float]:
    """Where the operator's RSS is, from /proc/PID/smaps_rollup: anonymous memory (Python's heap, malloc
    arenas, thread stacks) versus file-backed pages (the interpreter, shared libraries, .so extensions)."""
    out: dict[str, float] = {}
    try:
        text = Path(f"/proc/{proc.pid}/smaps_rollup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Anonymous", "Private_Clean", "Private_Dirty", "Shared_Clean", "Swap"):
            out[key.lower()] = round(int(rest.split()[0]) / 1024, 1)
    if "rss" in out and "anonymous" in out:
        out["file_backed"] = round(out["rss"] - out["anonymous"], 1)
    return out


def load_avg() -> float:
    return round(os.getloadavg()[0], 1)


def is_ready(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


class OperatorBench:
    """Control plane + CRDs + KServe stand-in + operator; torn down in reverse order on exit."""

    def __init__(self, name: str, *, standin_period: float = 3.0, ready_delay: float = 0.2,
                 operator_env: dict[str, str] | None = None, prefix: str = "modelops-bench-") -> None:
        if not binaries_ready():
            sys.exit("the Kubernetes binaries are not built; run: uv run modelops cluster build")
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.name, self.standin_period, self.ready_delay = name, standin_period, ready_delay
        self.operator_env = {"MODELOPS_LOG_LEVEL": "WARNING", **(operator_env or {})}
        self.cluster = LocalCluster(name=name, root=self.root / "cluster")
        self.kube: Kube
        self.op: Operator
        self.proc: psutil.Process
        self._stand_in: KServeStandIn | None = None
        self._op_started = False

    def __enter__(self) -> OperatorBench:
        self.cluster.up(progress=lambda _m: None)
        try:
            self.kube = Kube(self.cluster)
            self.kube.install_crds()
            self.kube.wait_served(GROUP, VERSION, PLURAL)
            install_kserve_crd(self.kube)
            # The stand-in lists every InferenceService each period; at 1000 objects a 1 s period alone costs
            # a core of JSON (de)serialisation on a 2-core host, so benchmarks report every few seconds.
            self._stand_in = KServeStandIn(self.kube, ready_delay=self.ready_delay,
                                           period=self.standin_period).start()
            self.op = Operator(self.kube, self.root / "operator.log")
            self.op.extra_env = dict(self.operator_env)
            self.op.start()
            self._op_started = True
            self.proc = psutil.Process(self.op.proc.pid)  # type: ignore[union-attr]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_: object) -> None:
        try:
            if self._op_started:
                self.op.kill()
            if self._stand_in is not None:
                self._stand_in.stop()
        finally:
            self.cluster.down(progress=lambda _m: None)

    # ------------------------------------------------------------------ objects
    def rss_mb(self) -> float:
        return rss_mb(self.proc)

    def namespace(self, ns: str) -> None:
        from kubernetes import client

        self.kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

    def create(self, ns: str, indices: Iterable[int], uri: Callable[[int], str] | None = None,
               threads: int = 8, width: int = 4) -> None:
        """ModelDeployments m<i> (zero-padded to `width`), created by `threads` client threads."""
        make = uri or (lambda i: f"s3://bench/m{i}/v0")

        def one(i: int) -> None:
            self.kube.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, md(f"m{i:0{width}d}", make(i)))

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, indices))

    def count_ready(self, ns: str, page: int = 1000) -> int | None:
        """ModelDeployments with Ready=True, listed `page` at a time; None when a list failed (at 10,000
        objects one unpaged list is ~20 MB and a busy API server may break it off: IncompleteRead)."""
        ready, token = 0, None
        try:
            while True:
                kwargs: dict[str, Any] = {"limit": page, **({"_continue": token} if token else {})}
                listed = self.kube.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, **kwargs)
                ready += sum(1 for o in listed["items"] if is_ready(o))
                token = (listed.get("metadata") or {}).get("continue")
                if not token:
                    return ready
        except Exception as exc:
            print(f"listing for readiness failed, retrying: {type(exc).__name__}", file=sys.stderr)
            return None

    def controller_stats(self) -> dict[str, Any]:
        """The operator's own counters (its liveness endpoint's `controller` probe: reconciles, errors,
        errors reported in status, cache entries, asyncio tasks, threads); {} when it does not answer."""
        import json
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.op.port}/healthz", timeout=10) as resp:
                out: dict[str, Any] = json.loads(resp.read()).get("controller") or {}
                return out
        except (OSError, ValueError):
            return {}

    def cpu_s(self) -> float:
        """CPU seconds the operator process has used (user + system)."""
        t = self.proc.cpu_times()
        return round(t.user + t.system, 1)

    def wait_ready(self, ns: str, n: int, deadline: float, period: float = 5.0) -> int:
        """Until every one of `n` ModelDeployments is Ready (or the monotonic `deadline`); the last count."""
        ready = 0
        while time.monotonic() < deadline:
            count = self.count_ready(ns)
            if count is None:
                time.sleep(max(period, 10.0))
                continue
            ready = count
            if ready >= n:
                break
            time.sleep(period)  # a full list of 10,000 objects is itself a load
        return ready
