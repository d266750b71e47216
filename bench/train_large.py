"""Benchmark: a 5,000,000-row x 30-column table trained under a 2 GiB memory limit, out of core, and the
out-of-core model against in-memory training on a subsample where both fit. Prints JSON.

    uv run python bench/train_large.py [--rows 5000000] [--memory-gib 2] [--subsample 400000] [--trials 10]
                                       [--search-rows 50000]

- The table (27 numeric + 3 categorical features, a binary target, 1% missing values) is generated in
  chunks straight to Parquet (never whole in memory) and cached under $MODELOPS_BENCH_DIR.
- Each training runs the trainer (`modelops_pipelines.train.train`, the code `modelops train` runs, with its
  gate and artefacts) in its own process, tracking to a local SQLite MLflow store (or --mlflow-server). The
  large one runs in a fresh memory cgroup with memory.limit_in_bytes (v1) / memory.max (v2) = --memory-gib,
  swap off, so the kernel OOM-kills it past the limit; where no cgroup can be made, under `ulimit -v` of the
  same size (a stricter limit: it counts address space, thread stacks and allocator reservations).
  Memory figures: the process's peak RSS (getrusage), a 0.2 s sample of its VmRSS (peak, and peak per step
  of the training log), the cgroup's anonymous memory sampled (v1 total_rss / v2 anon: what cannot be
  reclaimed), the cgroup's high-water mark (which also counts the page cache of the files it reads and of
  XGBoost's external-memory pages; the kernel reclaims that cache before it would kill anything) and the
  cgroup's OOM kills.
- Comparison: the same --subsample-row table is trained twice with the same spec, once in memory
  (MODELOPS_OUT_OF_CORE=never) and once out of core (=always); both registered models then score one
  separate evaluation table; the goal is |AUC difference| <= 0.01.
The machine's load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "pipelines"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
BENCH_DIR = Path(os.environ.get("MODELOPS_BENCH_DIR", "/tmp/modelops-bench"))
NUMERIC, CATEGORICAL = 27, 3


def generate(path: Path, rows: int, seed: int, chunk: int = 250_000) -> Path:
    """A deterministic 30-feature classification table written chunk by chunk to Parquet."""
    if path.exists():
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(99).normal(size=NUMERIC) / np.sqrt(NUMERIC)
    tmp = path.with_suffix(".tmp")
    writer = None
    done = 0
    while done < rows:
        n = min(chunk, rows - done)
        x = rng.normal(size=(n, NUMERIC))
        cats = rng.integers(0, 8, size=(n, CATEGORICAL))
        logit = x @ weights + 0.8 * np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.3 * (cats[:, 0] % 3) - 0.4
        y = (logit + rng.logistic(size=n) > 0).astype(np.int8)
        x[rng.random(size=x.shape) < 0.01] = np.nan
        cols: dict[str, Any] = {f"x{i}": x[:, i] for i in range(NUMERIC)}
        for j in range(CATEGORICAL):
            cols[f"c{j}"] = np.array([f"k{v}" for v in range(8)], dtype=object)[cats[:, j]]
        cols["label"] = y
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
        done += n
    assert writer is not None
    writer.close()
    tmp.rename(path)
    return path


def _cgroup(limit: int) -> tuple[Path, str] | None:
    """A fresh memory cgroup (v2 or v1) limited to `limit` bytes: (its directory, the peak-usage file)."""
    name = f"modelops-bench-{os.getpid()}"
    v2 = Path("/sys/fs/cgroup")
    try:
        if (v2 / "cgroup.controllers").exists():
            d = v2 / name
            d.mkdir()
            (d / "memory.max").write_text(str(limit))
            (d / "memory.swap.max").write_text("0")
            return d, "memory.peak"
        d = v2 / "memory" / name
        d.mkdir()
        (d / "memory.limit_in_bytes").write_text(str(limit))
        with contextlib.suppress(OSError):
            (d / "memory.memsw.limit_in_bytes").write_text(str(limit))
        return d, "memory.max_usage_in_bytes"
    except OSError:
        return None


def _oom_kills(group: Path) -> int | None:
    """OOM kills in the cgroup: v2 memory.events, v1 memory.oom_control (kernel >= 4.13)."""
    for name in ("memory.events", "memory.oom_control"):
        with contextlib.suppress(OSError, ValueError):
            fields = dict(line.split()[:2] for line in (group / name).read_text().splitlines())
            return int(fields.get("oom_kill", 0))
    return None


def _anon_bytes(group: Path) -> int | None:
    """The cgroup's anonymous (not reclaimable) memory: v2 memory.stat anon, v1 total_rss."""
    with contextlib.suppress(OSError, ValueError):
        stat = dict(line.split()[:2] for line in (group / "memory.stat").read_text().splitlines())
        return int(stat["anon"] if "anon" in stat else stat["total_rss"])
    return None


class Sampler:
    """Every 0.2 s: the process's RSS (/proc/PID/status VmRSS) and its cgroup's anonymous memory, kept as peaks
    and as a (seconds, rss) series so that the peak can be placed in the training log's steps."""

    def __init__(self, pid: int, group: Path | None) -> None:
        import threading

        self.pid, self.group = pid, group
        self.peak_rss = self.peak_anon = 0
        self.series: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.time()

    def _run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self._stop.wait(0.2):
            with contextlib.suppress(OSError, ValueError, StopIteration):
                rss = int(next(ln for ln in status.read_text().splitlines() if ln.startswith("VmRSS:")).split()[1])
                self.peak_rss = max(self.peak_rss, rss * 1024)
                self.series.append((time.time(), rss * 1024))
            if self.group is not None:
                anon = _anon_bytes(self.group)
                if anon is not None:
                    self.peak_anon = max(self.peak_anon, anon)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def gib(value: int) -> float | None:
        return round(value / 2**30, 3) if value else None

    def by_step(self, log: Path) -> dict[str, float]:
        """Peak RSS (GiB) per step of the training log (each line is stamped with its wall time by TRAIN)."""
        marks: list[tuple[float, str]] = []
        for line in log.read_text().splitlines():
            stamp, _, text = line.partition(" ")
            with contextlib.suppress(ValueError):
                marks.append((float(stamp), text.split(":")[0].split(" ")[0][:24]))
        out: dict[str, float] = {}
        for t, rss in self.series:
            step = "start"
            for when, name in marks:
                if when <= t:
                    step = name
            out[step] = max(out.get(step, 0.0), round(rss / 2**30, 3))
        return out


TRAIN = """
import json, os, sys
from modelops_pipelines import outofcore
outofcore.SEARCH_ROWS = int(os.environ.get("BENCH_SEARCH_ROWS", outofcore.SEARCH_ROWS))
from modelops_pipelines.spec import TrainSpec
from modelops_pipelines.train import train
spec = TrainSpec.model_validate_json(sys.argv[1])
import time
result, code = train(spec, tracking_uri=sys.argv[2],
                     progress=lambda m: print(f"{time.time():.2f} {m}", file=sys.stderr, flush=True))
import resource
result["maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(result))
sys.exit(code)
"""


def run_training(spec: dict[str, Any], uri: str, *, mode: str, memory: int | None, log: Path,
                 search_rows: int) -> dict[str, Any]:
    env = {**os.environ, "MODELOPS_OUT_OF_CORE": mode, "OMP_WAIT_POLICY": "PASSIVE",
           "BENCH_SEARCH_ROWS": str(search_rows),
           "PYTHONPATH": f"{ROOT}:{ROOT / 'pipelines'}", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    cmd = [sys.executable, "-c", TRAIN, json.dumps(spec), uri]
    group = _cgroup(memory) if memory else None
    how = "none"
    preexec = None
    if memory and group is not None:
        how = f"cgroup {group[0]}"
        procs = group[0] / "cgroup.procs"

        def preexec() -> None:
            procs.write_text(str(os.getpid()))
    elif memory:
        how = "ulimit -v"

        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    load = os.getloadavg()
    start = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=preexec,
                                cwd=log.parent)
        sampler = Sampler(proc.pid, group[0] if group is not None else None)
        sampler.start()
        stdout, _ = proc.communicate()
        sampler.stop()
    seconds = time.perf_counter() - start
    peak = None
    oom = None
    if group is not None:
        try:
            peak = int((group[0] / group[1]).read_text())
            oom = _oom_kills(group[0])
        finally:
            with contextlib.suppress(OSError):
                group[0].rmdir()
    result = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    tail = log.read_text().splitlines()[-5:]
    return {"exit_code": proc.returncode, "status": result.get("status"), "seconds": round(seconds, 1),
            "limit": how, "memory_limit_gib": round(memory / 2**30, 2) if memory else None,
            "cgroup_peak_gib_incl_page_cache": round(peak / 2**30, 3) if peak else None,
            "peak_rss_gib": round(result["maxrss_bytes"] / 2**30, 3) if "maxrss_bytes" in result else None,
            "cgroup_peak_anon_gib": sampler.gib(sampler.peak_anon),
            "sampled_peak_rss_gib": sampler.gib(sampler.peak_rss),
            "memory_by_step": sampler.by_step(log),
            "oom_kills": oom, "test_metric": result.get("metric"), "version": result.get("version"),
            "family": result.get("family"), "timings": result.get("timings"),
            "loadavg": [round(v, 2) for v in load] + [round(os.getloadavg()[0], 2)],
            **({} if proc.returncode == 0 else {"log_tail": tail})}


def score_version(uri: str, name: str, version: str, eval_path: Path) -> float:
    import mlflow
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    mlflow.set_tracking_uri(uri)
    model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    frame = pd.read_parquet(eval_path)
    X = frame.drop(columns=["label"])
    for c in X.columns:
        X[c] = X[c].astype(object).where(X[c].notna(), np.nan) if c.startswith("c") else X[c].astype("float64")
    return float(roc_auc_score(frame["label"], model.predict_proba(X)[:, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--memory-gib", type=float, default=2.0)
    parser.add_argument("--subsample", type=int, default=400_000)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--search-rows", type=int, default=50_000,
                        help="training rows sampled for the search when out of core")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-pair", action="store_true", help="skip the in-memory vs out-of-core pair")
    parser.add_argument("--mlflow-server", action="store_true",
                        help="track to a real MLflow server (default: a local SQLite store, no server)")
    args = parser.parse_args()
    from tests.fixtures.mlflow_server import MlflowServer

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    big = generate(BENCH_DIR / f"large-{args.rows}x30.parquet", args.rows, seed=1)
    small = generate(BENCH_DIR / f"large-{args.subsample}x30.parquet", args.subsample, seed=2)
    evaluation = generate(BENCH_DIR / "large-eval-200000x30.parquet", 200_000, seed=3)
    memory = int(args.memory_gib * 2**30)

    def spec(name: str, path: Path) -> dict[str, Any]:
        return {"modelName": name, "dataset": {"uri": str(path), "target": "label", "task": "classification",
                                               "categoricalFeatures": [f"c{j}" for j in range(CATEGORICAL)]},
                "search": {"trials": args.trials, "timeoutSeconds": None, "seed": 0, "families": ["xgboost"]},
                "mlflow": {"experiment": f"bench-{name}"}}

    out: dict[str, Any] = {"benchmark": "train_large", "cpu_count": os.cpu_count(),
                           "affinity": len(os.sched_getaffinity(0)), "trials": args.trials}
    with tempfile.TemporaryDirectory(prefix="modelops-bench-large-") as tmp:
        root = Path(tmp)
        server: Any = None
        if args.mlflow_server:
            server = MlflowServer(root)
            server.start()
            uri = server.uri
        else:
            uri = f"sqlite:///{root / 'mlflow.db'}"
        try:
            if not args.skip_large:
                run = run_training(spec("large", big), uri, mode="auto", memory=memory,
                                   log=root / "large.log", search_rows=args.search_rows)
                out["large"] = {"rows": args.rows, "columns": 30, "file_mib": round(big.stat().st_size / 2**20, 1),
                                **run}
                if run["exit_code"] == 0:
                    out["large"]["eval_auc"] = round(score_version(uri, "large", run["version"],
                                                                   evaluation), 4)
            pair: dict[str, Any] = {}
            for mode in () if args.skip_pair else ("never", "always"):
                run = run_training(spec(f"sub-{mode}", small), uri, mode=mode, memory=None,
                                   log=root / f"sub-{mode}.log", search_rows=args.search_rows)
                if run["exit_code"] == 0:
                    run["eval_auc"] = round(score_version(uri, f"sub-{mode}", run["version"], evaluation), 4)
                pair["in_memory" if mode == "never" else "out_of_core"] = run
            if pair:
                out["subsample"] = {"rows": args.subsample, **pair}
            if pair and all("eval_auc" in r for r in pair.values()):
                out["subsample"]["eval_auc_difference"] = round(
                    abs(pair["in_memory"]["eval_auc"] - pair["out_of_core"]["eval_auc"]), 4)
        finally:
            if server is not None:
                server.stop()
    out["goal"] = {"large_under_memory_gib": args.memory_gib, "eval_auc_difference_max": 0.01}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
