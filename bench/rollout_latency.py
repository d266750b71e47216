"""Benchmark: ModelDeployment change -> InferenceService write latency, with 100, 1000 or 10,000 ModelDeployments.

Real control plane (`modelops cluster` binaries), KServe's real InferenceService CRD, the KServe controller
stand-in of tests/fixtures/kserve.py (so InferenceServices report Ready as in a cluster), the operator as a
real process. For each size N: create N ModelDeployments (plain storage URIs, so no registry round trip is
measured), wait until every InferenceService exists, then change `spec.model.storageUri` of randomly chosen
objects a few times a second and time how long until a watch on InferenceServices sees the new URI.
Prints one JSON document: p50/p95/max latency per N, and the operator's RSS (peak sampled, and at the end).
The operator caps glibc's malloc arenas itself at start (modelops/handlers/run.py, as MALLOC_ARENA_MAX=2
would), so the figures are those of `modelops operator` as the chart runs it, with no extra environment.

    uv run python bench/rollout_latency.py [--sizes 100,1000] [--changes 60] [--standin-period 3]
    uv run python bench/rollout_latency.py --sizes 10000 --standin-period 15   # the 10,000-object run

At 10,000 objects the KServe stand-in's full listing of every InferenceService costs the host more than the
operator does, so it reports less often there (`--standin-period`); objects are created by 8 client threads.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import OperatorBench, load_avg, rss_mb, smaps_mb  # noqa: E402

from modelops.api import GROUP, VERSION  # noqa: E402
from tests.fixtures.cluster import Kube  # noqa: E402


def uri_of(isvc: dict[str, Any]) -> str:
    return str(isvc["spec"]["predictor"]["model"]["storageUri"])


class IsvcWatch(threading.Thread):
    """Records when each (name, storageUri) pair is first seen on an InferenceService."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        super().__init__(daemon=True)
        self.kube, self.namespace = kube, namespace
        self.seen: dict[tuple[str, str], float] = {}
        self.names: set[str] = set()
        self.stop_flag = False

    def run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        # Resume from the last resourceVersion seen: a fresh watch without one starts with a list of every
        # InferenceService (1000 large objects), and edits made while this process works through that list
        # would be timed late -- the measurement's delay, not the operator's.
        rv: str | None = None
        while not self.stop_flag:
            w = watch.Watch()
            try:
                kwargs: dict[str, Any] = {"timeout_seconds": 30, "allow_watch_bookmarks": True}
                if rv:
                    kwargs["resource_version"] = rv
                for ev in w.stream(self.kube.custom.list_namespaced_custom_object, "serving.kserve.io", "v1beta1",
                                   self.namespace, "inferenceservices", **kwargs):
                    obj = ev["object"]
                    rv = obj["metadata"].get("resourceVersion") or rv
                    if ev["type"] in ("BOOKMARK", "ERROR"):
                        continue
                    name = obj["metadata"]["name"]
                    self.names.add(name)
                    self.seen.setdefault((name, uri_of(obj)), time.monotonic())
                    if self.stop_flag:
                        break
            except ApiException as exc:
                if exc.status == 410:
                    rv = None  # too old: list again
                time.sleep(0.2)
            except Exception:
                time.sleep(0.2)


def run_size(b: OperatorBench, n: int, changes: int, rnd: random.Random) -> dict[str, Any]:
    ns = f"bench-{n}"
    b.namespace(ns)
    watcher = IsvcWatch(b.kube, ns)
    watcher.start()
    t0 = time.monotonic()
    b.create(ns, range(n))
    created = time.monotonic() - t0
    deadline = time.monotonic() + max(900, 0.5 * n)
    rss_at: dict[str, float] = {}
    next_progress = time.monotonic() + 60
    while len(watcher.names) < n and time.monotonic() < deadline:
        time.sleep(0.5)
        if time.monotonic() >= next_progress:  # a run cut short still leaves its figures on stderr
            next_progress += 60
            print(json.dumps({"progress_s": round(time.monotonic() - t0), "isvcs": len(watcher.names),
                              "rss_mb": round(b.rss_mb(), 1), "smaps_mb": smaps_mb(b.proc),
                              "load_avg_1m": load_avg()}), file=sys.stderr, flush=True)
        for mark in (n // 4, n // 2, 3 * n // 4):  # RSS along the creation wave
            if len(watcher.names) >= mark and str(mark) not in rss_at:
                rss_at[str(mark)] = round(b.rss_mb(), 1)
    all_isvcs = time.monotonic() - t0
    rss_at[str(n)] = round(b.rss_mb(), 1)
    smaps_at = {"isvcs_written": smaps_mb(b.proc)}
    # let the initial wave settle: every ModelDeployment Ready (KServe stand-in reported, operator caught up)
    b.wait_ready(ns, n, deadline, period=2 if n <= 1000 else 15)
    settled = time.monotonic() - t0
    time.sleep(3)
    out = measure_edits(b.kube, ns, n, changes, rnd, b.proc, watcher)
    out.update({"create_all_s": round(created, 1), "all_isvcs_written_s": round(all_isvcs, 1),
                "all_ready_s": round(settled, 1), "rss_mb_at_isvcs_written": rss_at,
                "smaps_mb": {**smaps_at, "end": smaps_mb(b.proc)},
                "load_avg_1m_at_end": load_avg()})
    return out


def measure_edits(kube: Kube, ns: str, n: int, changes: int, rnd: random.Random, proc: psutil.Process,
                  watcher: IsvcWatch) -> dict[str, Any]:
    """Edit `changes` distinct objects a few times a second; edit -> InferenceService write latencies."""
    peak = rss_mb(proc)
    latencies: list[float] = []
    pending: list[tuple[str, str, float]] = []
    # distinct objects: two changes of one object may coalesce into one write (level-based), by design
    for j, idx in enumerate(rnd.sample(range(n), min(changes, n))):
        name = f"m{idx:04d}"
        uri = f"s3://bench/{name}/v{j + 1}"
        start = time.monotonic()
        kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", name,
                                                   {"spec": {"model": {"storageUri": uri}}})
        pending.append((name, uri, start))
        time.sleep(0.2)
        peak = max(peak, rss_mb(proc))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any((p[0], p[1]) not in watcher.seen for p in pending):
        time.sleep(0.1)
    missing = 0
    for name, uri, start in pending:
        seen = watcher.seen.get((name, uri))
        if seen is None:
            missing += 1
        else:
            latencies.append(seen - start)
    watcher.stop_flag = True
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 3) if latencies else -1.0

    return {"modeldeployments": n, "changes": changes, "missing": missing,
            "latency_s": {"p50": round(statistics.median(latencies), 3) if latencies else -1.0, "p95": pct(0.95),
                          "max": round(latencies[-1], 3) if latencies else -1.0},
            "operator_rss_mb": {"peak_sampled": round(peak, 1), "end": round(rss_mb(proc), 1)}}


def attach(kubeconfig: str, ns: str, operator_pid: int, changes: int) -> dict[str, Any]:
    """Measure edits against a control plane and operator that are already running (e.g. a run of this
    benchmark that is still settling): only objects whose InferenceService exists are edited."""
    from types import SimpleNamespace

    kube = Kube(SimpleNamespace(kubeconfig=kubeconfig, bin_dir=str(Path(kubeconfig).parent)))
    watcher = IsvcWatch(kube, ns)
    watcher.start()
    time.sleep(20)  # the watch's first list
    names = sorted(watcher.names)
    listed = kube.custom.list_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", limit=1)
    total = int((listed.get("metadata") or {}).get("remainingItemCount") or 0) + len(listed.get("items") or [])
    rnd = random.Random(2)
    picked = rnd.sample(names, min(changes, len(names)))
    proc = psutil.Process(operator_pid)
    by_index = {int(name[1:]): name for name in picked}
    out = measure_edits(kube, ns, max(by_index) + 1, changes, _Fixed(sorted(by_index)), proc, watcher)
    out.update({"attached": True, "modeldeployments": total, "isvcs_present": len(names)})
    return out


class _Fixed(random.Random):
    """`sample` returns the given indices (attach mode edits objects that have an InferenceService)."""

    def __init__(self, indices: list[int]) -> None:
        super().__init__(0)
        self.indices = indices

    def sample(self, population: Any, k: int, *, counts: Any = None) -> list[int]:  # type: ignore[override]
        return self.indices[:k]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--changes", type=int, default=60)
    ap.add_argument("--standin-period", type=float, default=3.0)
    ap.add_argument("--attach", default="", help="KUBECONFIG of a running control plane: only measure edits")
    ap.add_argument("--namespace", default="bench-10000")
    ap.add_argument("--operator-pid", type=int, default=0)
    args = ap.parse_args()
    if args.attach:
        result = attach(args.attach, args.namespace, args.operator_pid, args.changes)
        print(json.dumps({"benchmark": "rollout_latency", "host_cpus": os.cpu_count(),
                          "load_avg_1m": round(os.getloadavg()[0], 1), "results": [result]}, indent=1))
        return
    rnd = random.Random(1)
    results: list[dict[str, Any]] = []
    with OperatorBench("bench", standin_period=args.standin_period) as b:
        for n in (int(s) for s in args.sizes.split(",")):
            results.append(run_size(b, n, args.changes, rnd))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "rollout_latency", "host_cpus": os.cpu_count(),
                      "load_avg_1m": round(os.getloadavg()[0], 1), "results": results}, indent=1))


if __name__ == "__main__":
    main()
