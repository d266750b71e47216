"""Soak: 1000 ModelDeployments (and their InferenceServices) under continuous edits and child updates.

Real control plane (`modelops cluster` binaries), KServe's InferenceService CRD, the KServe stand-in of
tests/fixtures/kserve.py, the operator as a real process (as `modelops operator` runs in the chart). After
every object is Ready, for `--minutes`: one user edit a second (a new storage URI of a random
ModelDeployment) and two child updates a second (a status change of a random InferenceService, as KServe
reporting). Once a minute it samples the operator's RSS, threads and, from its liveness endpoint, asyncio
tasks and the runtime's counters. Prints one JSON document (and keeps writing it to `--out` every minute,
so a run cut short still leaves its figures):

- RSS growth between minute 10 and the end (goal <= 5%); asyncio tasks and threads over the same span
  (goal: flat, no growth);
- reconcile errors and how many of them were reported in the objects' status (goal: all), and the
  ModelDeployments left with Reconciled=False at the end.

    uv run python bench/soak.py [--objects 1000] [--minutes 60] [--out bench/soak.last.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.rollout_latency import md, rss_mb  # noqa: E402  (the same objects and the same RSS measure)

from modelops.api import GROUP, VERSION  # noqa: E402
from modelops_dev.cluster.build import binaries_ready  # noqa: E402
from modelops_dev.cluster.local import LocalCluster  # noqa: E402
from tests.fixtures.cluster import Kube  # noqa: E402
from tests.fixtures.kserve import KServeStandIn, install_kserve_crd  # noqa: E402
from tests.fixtures.operator import Operator  # noqa: E402

NS = "soak"


def controller_stats(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            data = json.loads(r.read() or b"{}")
        return dict(data.get("controller") or {})
    except (OSError, ValueError):
        return {}


class Load(threading.Thread):
    """Edits and child updates at fixed rates until stopped."""

    def __init__(self, kube: Kube, n: int, edits_per_s: float, reports_per_s: float) -> None:
        super().__init__(daemon=True)
        self.kube, self.n = kube, n
        self.edits_per_s, self.reports_per_s = edits_per_s, reports_per_s
        self.stop_flag = threading.Event()
        self.edits = self.reports = self.failures = 0
        self.rnd = random.Random(3)

    def run(self) -> None:
        step = 1.0 / (self.edits_per_s + self.reports_per_s)
        share = self.edits_per_s / (self.edits_per_s + self.reports_per_s)
        next_at = time.monotonic()
        while not self.stop_flag.is_set():
            name = f"m{self.rnd.randrange(self.n):04d}"
            try:
                if self.rnd.random() < share:
                    self.edits += 1
                    self.kube.custom.patch_namespaced_custom_object(
                        GROUP, VERSION, NS, "modeldeployments", name,
                        {"spec": {"model": {"storageUri": f"s3://soak/{name}/e{self.edits}"}}})
                else:
                    self.reports += 1
                    self.kube.custom.patch_namespaced_custom_object_status(
                        "serving.kserve.io", "v1beta1", NS, "inferenceservices", name,
                        {"status": {"address": {"url": f"http://{name}.{NS}.svc/r{self.reports}"},
                                    "components": {"predictor": {"url": f"http://{name}-p/r{self.reports}"}}}})
            except Exception:
                self.failures += 1
            next_at += step
            time.sleep(max(0.0, next_at - time.monotonic()))


def summary(samples: list[dict[str, Any]], warmup_min: float) -> dict[str, Any]:
    after = [s for s in samples if s["minute"] >= warmup_min]
    if len(after) < 2:
        return {"note": f"fewer than two samples after minute {warmup_min}"}
    first, last = after[0], after[-1]

    def span(key: str) -> dict[str, Any]:
        values = [s[key] for s in after if s.get(key) is not None]
        return {"min": min(values), "max": max(values), "at_start": values[0], "at_end": values[-1]} if values else {}

    return {"from_minute": first["minute"], "to_minute": last["minute"],
            "rss_growth_pct": round(100.0 * (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"], 2),
            "rss_mb": span("rss_mb"), "threads": span("threads"), "asyncio_tasks": span("asyncio_tasks")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--warmup-minutes", type=float, default=10)
    ap.add_argument("--edits-per-s", type=float, default=1.0)
    ap.add_argument("--reports-per-s", type=float, default=2.0)
    ap.add_argument("--out", default=str(REPO / "bench" / "soak.last.json"))
    args = ap.parse_args()
    if not binaries_ready():
        sys.exit("the Kubernetes binaries are not built; run: uv run modelops cluster build")
    root = Path(tempfile.mkdtemp(prefix="modelops-soak-"))
    cluster = LocalCluster(name="soak", root=root / "cluster")
    cluster.up(progress=lambda _m: None)
    result: dict[str, Any] = {"benchmark": "soak", "objects": args.objects, "minutes_planned": args.minutes,
                              "host_cpus": os.cpu_count(), "samples": []}

    def save() -> None:
        result["load_avg_1m"] = round(os.getloadavg()[0], 1)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")

    try:
        kube = Kube(cluster)
        kube.install_crds()
        kube.wait_served(GROUP, VERSION, "modeldeployments")
        install_kserve_crd(kube)
        stand_in = KServeStandIn(kube, ready_delay=0.2, period=3.0).start()
        op = Operator(kube, root / "operator.log")
        op.extra_env = {"MODELOPS_LOG_LEVEL": "WARNING"}
        op.start()
        load: Load | None = None
        try:
            from kubernetes import client

            kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
            t0 = time.monotonic()
            for i in range(args.objects):
                kube.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "modeldeployments",
                                                            md(f"m{i:04d}", f"s3://soak/m{i}/v0"))
            deadline = time.monotonic() + 1800
            ready = 0
            while time.monotonic() < deadline:
                items = kube.custom.list_namespaced_custom_object(GROUP, VERSION, NS, "modeldeployments")["items"]
                ready = sum(1 for o in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                                    for c in (o.get("status") or {}).get("conditions") or []))
                if ready >= args.objects:
                    break
                time.sleep(5)
            result["setup_s"] = round(time.monotonic() - t0, 1)
            result["ready_at_start"] = ready
            proc = psutil.Process(op.proc.pid)  # type: ignore[union-attr]
            load = Load(kube, args.objects, args.edits_per_s, args.reports_per_s)
            load.start()
            start = time.monotonic()
            minute = 0
            while minute < args.minutes:
                minute += 1
                time.sleep(max(0.0, start + 60 * minute - time.monotonic()))
                stats = controller_stats(op.port)
                sample = {"minute": minute, "rss_mb": round(rss_mb(proc), 1), "threads": proc.num_threads(),
                          "asyncio_tasks": stats.get("asyncio_tasks"), "reconciles": stats.get("reconciles"),
                          "reconcile_errors": stats.get("reconcile_errors"),
                          "errors_reported": stats.get("errors_reported"), "failing": stats.get("failing"),
                          "edits": load.edits, "reports": load.reports, "load_failures": load.failures,
                          "load_avg_1m": round(os.getloadavg()[0], 1)}
                result["samples"].append(sample)
                result["summary"] = summary(result["samples"], args.warmup_minutes)
                print(json.dumps(sample), file=sys.stderr, flush=True)
                save()
            load.stop_flag.set()
            time.sleep(10)
            items = kube.custom.list_namespaced_custom_object(GROUP, VERSION, NS, "modeldeployments")["items"]
            result["left_failing_in_status"] = sum(
                1 for o in items if any(c.get("type") == "Reconciled" and c.get("status") == "False"
                                        for c in (o.get("status") or {}).get("conditions") or []))
            stats = controller_stats(op.port)
            result["reconcile_errors"] = stats.get("reconcile_errors")
            result["errors_reported"] = stats.get("errors_reported")
            log = (root / "operator.log").read_text(errors="replace")
            result["log_lines_reconcile_failed"] = log.count("reconcile failed")
            result["minutes_run"] = minute
        finally:
            if load is not None:
                load.stop_flag.set()
            op.kill()
            stand_in.stop()
    finally:
        save()
        cluster.down(progress=lambda _m: None)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
