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
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import OperatorBench, is_ready, load_avg  # noqa: E402  (the shared set-up and measures)

from modelops.api import GROUP, VERSION  # noqa: E402
from tests.fixtures.cluster import Kube  # noqa: E402

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
    result: dict[str, Any] = {"benchmark": "soak", "objects": args.objects, "minutes_planned": args.minutes,
                              "host_cpus": os.cpu_count(), "samples": []}

    def save() -> None:
        result["load_avg_1m"] = load_avg()
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")

    load: Load | None = None
    try:
        with OperatorBench("soak", standin_period=3.0, prefix="modelops-soak-") as b:
            kube, op, proc = b.kube, b.op, b.proc
            b.namespace(NS)
            t0 = time.monotonic()
            b.create(NS, range(args.objects), uri=lambda i: f"s3://soak/m{i}/v0", threads=1)
            result["ready_at_start"] = b.wait_ready(NS, args.objects, time.monotonic() + 1800, period=5)
            result["setup_s"] = round(time.monotonic() - t0, 1)
            load = Load(kube, args.objects, args.edits_per_s, args.reports_per_s)
            load.start()
            start = time.monotonic()
            minute = 0
            while minute < args.minutes:
                minute += 1
                time.sleep(max(0.0, start + 60 * minute - time.monotonic()))
                stats = controller_stats(op.port)
                sample = {"minute": minute, "rss_mb": round(b.rss_mb(), 1), "threads": proc.num_threads(),
                          "asyncio_tasks": stats.get("asyncio_tasks"), "reconciles": stats.get("reconciles"),
                          "reconcile_errors": stats.get("reconcile_errors"),
                          "errors_reported": stats.get("errors_reported"), "failing": stats.get("failing"),
                          "edits": load.edits, "reports": load.reports, "load_failures": load.failures,
                          "load_avg_1m": load_avg()}
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
            result["ready_at_end"] = sum(1 for o in items if is_ready(o))
            stats = controller_stats(op.port)
            result["reconcile_errors"] = stats.get("reconcile_errors")
            result["errors_reported"] = stats.get("errors_reported")
            log = (b.root / "operator.log").read_text(errors="replace")
            result["log_lines_reconcile_failed"] = log.count("reconcile failed")
            result["minutes_run"] = minute
            load = None
    finally:
        if load is not None:
            load.stop_flag.set()
        save()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
