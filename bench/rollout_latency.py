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


def sample(b: OperatorBench, t0: float, watcher: IsvcWatch) -> dict[str, Any]:
    """One point of the time series: InferenceServices seen, the operator's RSS, CPU and counters, load."""
    stats = b.controller_stats()
    return {"t_s": round(time.monotonic() - t0), "isvcs": len(watcher.names), "rss_mb": round(b.rss_mb(), 1),
            "anon_mb": smaps_mb(b.proc).get("anonymous"), "operator_cpu_s": b.cpu_s(), "load_avg_1m": load_avg(),
            **{k: stats[k] for k in ("reconciles", "reconcile_errors", "errors_reported", "failing", "cache",
                                     "asyncio_tasks", "threads") if k in stats}}


def run_size(b: OperatorBench, n: int, changes: int, rnd: random.Random, fill_timeout: float | None = None,
             settle_timeout: float = 900.0, sample_every: float = 60.0) -> dict[str, Any]:
    ns = f"bench-{n}"
    b.namespace(ns)
    watcher = IsvcWatch(b.kube, ns)
    watcher.start()
    t0 = time.monotonic()
    series: list[dict[str, Any]] = [sample(b, t0, watcher)]
    b.create(ns, range(n))
    created = time.monotonic() - t0
    deadline = time.monotonic() + (fill_timeout if fill_timeout is not None else max(900, 0.5 * n))
    rss_at: dict[str, float] = {}
    next_sample = time.monotonic() + sample_every
    while len(watcher.names) < n and time.monotonic() < deadline:
        time.sleep(0.5)
        if time.monotonic() >= next_sample:  # a run cut short still leaves its figures on stderr
            next_sample += sample_every
            series.append(sample(b, t0, watcher))
            print(json.dumps({"progress": series[-1], "smaps_mb": smaps_mb(b.proc)}), file=sys.stderr, flush=True)
        for mark in (n // 4, n // 2, 3 * n // 4):  # RSS along the creation wave
            if len(watcher.names) >= mark and str(mark) not in rss_at:
                rss_at[str(mark)] = round(b.rss_mb(), 1)
    filled = len(watcher.names) >= n
    all_isvcs = time.monotonic() - t0
    rss_at[str(len(watcher.names))] = round(b.rss_mb(), 1)
    smaps_at = {"isvcs_written": smaps_mb(b.proc)}
    series.append(sample(b, t0, watcher))
    # let the initial wave settle: every ModelDeployment Ready (KServe stand-in reported, operator caught up)
    ready = b.wait_ready(ns, n, time.monotonic() + settle_timeout, period=2 if n <= 1000 else 30) if filled else -1
    settled = time.monotonic() - t0
    series.append(sample(b, t0, watcher))
    time.sleep(3)
    before = b.controller_stats()
    # objects without an InferenceService yet (a fill cut short) would time the backlog, not an edit
    edit_pool = None if filled else sorted(int(name[1:]) for name in watcher.names)
    out = measure_edits(b.kube, ns, n, changes, rnd, b.proc, watcher, pool=edit_pool)
    after = b.controller_stats()
    series.append(sample(b, t0, watcher))
    out.update({"create_all_s": round(created, 1), "filled": filled, "isvcs_written": len(watcher.names),
                "all_isvcs_written_s": round(all_isvcs, 1) if filled else None,
                "ready_before_edits": ready, "all_ready_s": round(settled, 1) if ready >= n else None,
                "rss_mb_at_isvcs_written": rss_at,
                "smaps_mb": {**smaps_at, "end": smaps_mb(b.proc)},
                "controller": {"at_end": after, "reconciles_during_edits":
                               after.get("reconciles", 0) - before.get("reconciles", 0)},
                "operator_cpu_s": b.cpu_s(), "load_avg_1m_at_end": load_avg(), "series": series})
    return out


def pct(values: list[float], q: float) -> float:
    """The q-quantile of sorted `values` (nearest rank); -1 when there are none."""
    if not values:
        return -1.0
    return round(values[min(len(values) - 1, max(0, int(q * len(values) + 0.999999) - 1))], 3)


def measure_edits(kube: Kube, ns: str, n: int, changes: int, rnd: random.Random, proc: psutil.Process,
                  watcher: IsvcWatch, pool: list[int] | None = None) -> dict[str, Any]:
    """Edit `changes` distinct objects (of `pool`, else of all n) a few times a second; edit ->
    InferenceService write latencies, and for comparison the API server's latency for a GET of one
    ModelDeployment and for the edit's PATCH itself, from this client."""
    peak = rss_mb(proc)
    latencies: list[float] = []
    gets: list[float] = []
    patches: list[float] = []
    pending: list[tuple[str, str, float]] = []
    # distinct objects: two changes of one object may coalesce into one write (level-based), by design
    picked = rnd.sample(pool if pool is not None else range(n), min(changes, len(pool) if pool is not None else n))
    for j, idx in enumerate(picked):
        name = f"m{idx:04d}"
        uri = f"s3://bench/{name}/v{j + 1}"
        start = time.monotonic()
        kube.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", name,
                                                   {"spec": {"model": {"storageUri": uri}}})
        pending.append((name, uri, start))
        patches.append(time.monotonic() - start)
        other = f"m{rnd.randrange(n):04d}"
        t = time.monotonic()
        try:
            kube.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", other)
            gets.append(time.monotonic() - t)
        except Exception as exc:
            print(f"GET {other} failed: {type(exc).__name__}", file=sys.stderr)
        time.sleep(max(0.0, 0.2 - (time.monotonic() - start)))
        peak = max(peak, rss_mb(proc))
    deadline = time.monotonic() + 120
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
    gets.sort()
    patches.sort()
    return {"modeldeployments": n, "changes": len(picked), "missing": missing,
            "edited_from": "objects with an InferenceService" if pool is not None else "all objects",
            "edit_span_s": round(pending[-1][2] - pending[0][2], 1) if pending else 0.0,
            "latency_s": {"p50": round(statistics.median(latencies), 3) if latencies else -1.0,
                          "p95": pct(latencies, 0.95), "p99": pct(latencies, 0.99),
                          "max": round(latencies[-1], 3) if latencies else -1.0},
            "api_server_s": {"get_one_md": {"p50": pct(gets, 0.5), "p95": pct(gets, 0.95), "max": pct(gets, 1.0)},
                             "patch_edit": {"p50": pct(patches, 0.5), "p95": pct(patches, 0.95),
                                            "max": pct(patches, 1.0)}},
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
    proc = psutil.Process(operator_pid)
    out = measure_edits(kube, ns, max(total, 1), changes, random.Random(2), proc, watcher,
                        pool=sorted(int(name[1:]) for name in names))
    out.update({"attached": True, "modeldeployments": total, "isvcs_present": len(names)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--changes", type=int, default=60)
    ap.add_argument("--standin-period", type=float, default=3.0)
    ap.add_argument("--attach", default="", help="KUBECONFIG of a running control plane: only measure edits")
    ap.add_argument("--namespace", default="bench-10000")
    ap.add_argument("--operator-pid", type=int, default=0)
    ap.add_argument("--fill-timeout", type=float, default=None,
                    help="seconds to wait for every InferenceService, counted from the last object created (default "
                         "max(900, n/2)); when they are not "
                         "all written by then, edits go to objects that have one and `filled` says false")
    ap.add_argument("--settle-timeout", type=float, default=900.0, help="seconds to wait for every object Ready")
    ap.add_argument("--sample-every", type=float, default=60.0, help="seconds between points of the time series")
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
            results.append(run_size(b, n, args.changes, rnd, args.fill_timeout, args.settle_timeout,
                                    args.sample_every))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "rollout_latency", "host_cpus": os.cpu_count(), "args": vars(args),
                      "load_avg_1m": round(os.getloadavg()[0], 1), "results": results}, indent=1))


if __name__ == "__main__":
    main()
