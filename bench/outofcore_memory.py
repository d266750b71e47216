"""Benchmark: the out-of-core path's memory against the table's rows (is it flat?). Prints JSON.

    uv run python bench/outofcore_memory.py [--rows 1000000,2000000] [--rounds 3] [--external|--in-memory]

For each row count, a deterministic 30-feature Parquet table (bench/train_large.generate, cached under
$MODELOPS_BENCH_DIR) is scanned (hash, split, sample) and the refit's matrix is built from every training row
and trained for --rounds rounds, in a child process, as `modelops train` does out of core. Reported per size:
the child's peak RSS and RssAnon (sampled every 0.1 s) in the scan and in the refit, and the seconds of each.
The load average is printed with the figures; time is not the point here, memory is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, sys, threading, time
sys.path[:0] = [sys.argv[4]]
path, external, rounds = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
def status():
    d = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(d["VmRSS"].split()[0]) * 1024, int(d["RssAnon"].split()[0]) * 1024
peak = {"rss": 0, "anon": 0}
def watch():
    while True:
        rss, anon = status()
        peak["rss"], peak["anon"] = max(peak["rss"], rss), max(peak["anon"], anon)
        time.sleep(0.1)
threading.Thread(target=watch, daemon=True).start()
from modelops_pipelines import outofcore
from modelops_pipelines.spec import TrainSpec
spec = TrainSpec.model_validate({"modelName": "m", "dataset": {"uri": path, "target": "label",
    "task": "classification", "categoricalFeatures": ["c0", "c1", "c2"]}, "search": {"families": ["xgboost"]}})
source = outofcore.plan(spec.dataset, env={outofcore.OUT_OF_CORE_ENV: "always"}).source
out = {"baseline_rss_mib": status()[0] >> 20}
t = time.perf_counter()
scanned = outofcore.scan(spec, source, search_rows=50_000, test_rows=20_000)
out["scan"] = {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mib": peak["rss"] >> 20,
               "peak_anon_mib": peak["anon"] >> 20}
peak.update(rss=0, anon=0)
t = time.perf_counter()
lines = []
outofcore.refit_xgboost(scanned, spec, {"n_estimators": rounds, "max_depth": 8, "learning_rate": 0.1}, n_jobs=2,
                        memory_budget=1 if external else 10**15, progress=lines.append)
out["refit"] = {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mib": peak["rss"] >> 20,
                "peak_anon_mib": peak["anon"] >> 20, "matrix": lines[0].split(" into ")[1].split(" (")[0],
                "rows_train": scanned.rows_train, "rounds": rounds}
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,2000000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-memory", action="store_true", help="a QuantileDMatrix instead of pages on disk")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "pipelines")]
    from train_large import BENCH_DIR, generate

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    out: dict[str, object] = {"benchmark": "outofcore_memory", "external_memory": not args.in_memory, "sizes": {}}
    for rows in (int(r) for r in args.rows.split(",")):
        path = generate(BENCH_DIR / f"large-{rows}x30.parquet", rows, seed={5_000_000: 1}.get(rows, 4))
        load = os.getloadavg()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(path), "0" if args.in_memory else "1",
                               str(args.rounds), str(ROOT / "pipelines")], capture_output=True, text=True,
                              env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {
            "exit_code": proc.returncode, "stderr_tail": proc.stderr.splitlines()[-5:]}
        out["sizes"][str(rows)] = {**result, "loadavg": [round(v, 2) for v in load]
                                   + [round(os.getloadavg()[0], 2)]}  # type: ignore[index]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
