"""Benchmark: where the operator's memory goes per ModelDeployment (with its InferenceService).

The operator runs as the real process (`modelops operator`) against the real control plane with the KServe
stand-in, like bench/rollout_latency.py, here with Python's tracemalloc switched on (a
`sitecustomize` on PYTHONPATH, written to a temporary directory: nothing of this ships; tracing starts once the
operator is up, so imports are not slowed or counted). After each size
step (e.g. 500 then 1500 objects, all InferenceServices written and settled) the operator dumps a snapshot on
SIGUSR2; the difference of two snapshots, per source line, is what each extra object costs, and the RSS at
each step gives the slope and the intercept to extrapolate to 10,000.

    uv run python bench/operator_memory.py [--steps 500,1500] [--top 25]

Without --trace the operator runs untraced (RSS only: tracemalloc's own bookkeeping inflates the RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import OperatorBench, load_avg  # noqa: E402
from bench.rollout_latency import IsvcWatch  # noqa: E402

SITECUSTOMIZE = '''
import os, signal, tracemalloc
_n = [0]
def _dump(signum, frame):
    _n[0] += 1
    tracemalloc.take_snapshot().dump(os.path.join({out!r}, f"snap-{{_n[0]}}.bin"))
    open(os.path.join({out!r}, f"snap-{{_n[0]}}.done"), "w").close()
signal.signal(signal.SIGUSR2, _dump)
signal.signal(signal.SIGUSR1, lambda signum, frame: tracemalloc.start(1))
'''


def settle(b: OperatorBench, watcher: IsvcWatch, ns: str, n: int, deadline: float) -> None:
    while len(watcher.names) < n and time.monotonic() < deadline:
        time.sleep(1)
    b.wait_ready(ns, n, deadline, period=5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="500,1500")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--trace", action="store_true", help="tracemalloc in the operator (per-line growth)")
    ap.add_argument("--standin-period", type=float, default=10.0)
    args = ap.parse_args()
    snaps = Path(tempfile.mkdtemp(prefix="modelops-mem-snaps-"))
    site = Path(tempfile.mkdtemp(prefix="modelops-mem-site-"))
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(out=str(snaps)))
    steps: list[dict[str, Any]] = []
    diffs: list[dict[str, Any]] = []
    with OperatorBench("mem", standin_period=args.standin_period, prefix="modelops-mem-",
                       operator_env={"PYTHONPATH": str(site)} if args.trace else None) as b:
        proc = b.proc
        if args.trace:
            os.kill(proc.pid, signal.SIGUSR1)
        ns = "mem"
        b.namespace(ns)
        watcher = IsvcWatch(b.kube, ns)
        watcher.start()
        made = 0
        try:
            for k, n in enumerate(int(s) for s in args.steps.split(",")):
                t0 = time.monotonic()
                b.create(ns, range(made, n), width=5)
                made = n
                settle(b, watcher, ns, n, time.monotonic() + max(900, n))
                time.sleep(20)  # a few stand-in reports and timers after the wave
                step: dict[str, Any] = {"objects": n, "settled_s": round(time.monotonic() - t0, 1),
                                        "rss_mb": round(b.rss_mb(), 1), "load_avg_1m": load_avg()}
                if args.trace:
                    os.kill(proc.pid, signal.SIGUSR2)
                    done = snaps / f"snap-{k + 1}.done"
                    while not done.exists():
                        time.sleep(0.5)
                    snap = tracemalloc.Snapshot.load(str(snaps / f"snap-{k + 1}.bin"))
                    step["traced_mb"] = round(sum(s.size for s in snap.statistics("filename")) / 2**20, 1)
                    step["top_files"] = [{"file": str(s.traceback[0].filename).split("site-packages/")[-1],
                                          "mb": round(s.size / 2**20, 2)}
                                         for s in snap.statistics("filename")[:args.top]]
                    if k:
                        prev = tracemalloc.Snapshot.load(str(snaps / f"snap-{k}.bin"))
                        per = n - steps[-1]["objects"]
                        diffs = [{"line": f"{str(s.traceback[0].filename).split('site-packages/')[-1]}:"
                                          f"{s.traceback[0].lineno}",
                                  "bytes_per_object": round(s.size_diff / per), "count_per_object":
                                      round(s.count_diff / per, 2)}
                                 for s in snap.compare_to(prev, "lineno")[:args.top]]
                steps.append(step)
                print(json.dumps({k: v for k, v in step.items() if k != "top_files"}), file=sys.stderr)
        finally:
            watcher.stop_flag = True
    out: dict[str, Any] = {"benchmark": "operator_memory", "host_cpus": os.cpu_count(), "traced": args.trace,
                           "steps": steps}
    if len(steps) >= 2:
        a, b = steps[0], steps[-1]
        slope = (b["rss_mb"] - a["rss_mb"]) / (b["objects"] - a["objects"])
        out["rss_kb_per_object"] = round(slope * 1024, 2)
        out["rss_mb_at_10000_extrapolated"] = round(b["rss_mb"] + slope * (10000 - b["objects"]), 1)
    if diffs:
        out["growth_per_object_by_line"] = diffs
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
