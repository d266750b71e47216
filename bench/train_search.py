"""Benchmark: `modelops train` with 20 and 50 trials on 20k rows of the churn table, against a real MLflow
server, printing JSON figures: wall time per phase and the share spent in MLflow logging.

    uv run python bench/train_search.py [--rows 20000] [--trials 20 50] [--sync]

Definitions (all seconds of wall-clock time, measured inside the training process):
- train_s: one training from dataset load to registered version (spec parsed, modules already imported);
  import_s is the one-off cost of importing pandas/scikit-learn/xgboost/optuna/mlflow/matplotlib, reported
  separately because a long-running process (or a warm image) pays it once. A 2-trial warm-up training on
  2k rows runs first (warmup_train_s) so the first measured run does not carry first-call costs alone.
- mlflow_blocking_s: time the training waited on the MLflow client: run creation, params/metrics batches,
  artifact uploads, model logging (log_model: pickling, environment files, serving-input check, upload),
  registry writes, and the final wait for the background trial logger.
- mlflow_background_s: time the background thread spent logging the nested trial runs while trials ran
  (concurrent with training, so not part of train_s, but it does use CPU on the same machine).
- mlflow_share: mlflow_blocking_s / train_s. Goal: <= 0.10. --sync also runs the 20-trial case with
  trial runs logged inline, to show what the background logger saves.
The machine's load average is printed with the figures: other jobs on a shared host slow everything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `modelops train` does (see modelops_pipelines.cli)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _import_heavy() -> float:
    start = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import mlflow
    import mlflow.sklearn  # noqa: F401
    import optuna  # noqa: F401
    import pandas  # noqa: F401
    import sklearn.ensemble
    import sklearn.linear_model  # noqa: F401
    import xgboost  # noqa: F401

    return time.perf_counter() - start


def _one(uri: str, data: Path, trials: int, sync: bool, name: str) -> dict[str, Any]:
    from modelops_pipelines.spec import TrainSpec
    from modelops_pipelines.train import train

    spec = TrainSpec.model_validate({
        "modelName": name, "dataset": {"uri": str(data), "target": "churn", "task": "classification"},
        "search": {"trials": trials, "timeoutSeconds": None, "seed": 0}, "mlflow": {"experiment": f"bench-{name}"},
    })
    load_before = os.getloadavg()[0]
    result, code = train(spec, tracking_uri=uri, synchronous_logging=sync, progress=lambda _m: None)
    if code != 0:
        raise SystemExit(f"training failed: {result['message']}")
    t = result["timings"]
    per_family: dict[str, dict[str, float]] = {}
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(result["runId"])
    for run in client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result['runId']}'",
                                  max_results=1000):
        fam = per_family.setdefault(run.data.params["family"], {"trials": 0, "pruned": 0, "seconds": 0.0})
        fam["trials"] += 1
        fam["pruned"] += run.info.status == "KILLED"
        fam["seconds"] = round(fam["seconds"] + run.data.metrics.get("duration_s", 0.0), 3)
    blocking = t.get("mlflow", 0.0) + t.get("log_model", 0.0)
    return {
        "trials": trials,
        "trial_logging": "inline" if sync else "background",
        "train_s": t["total"],
        "search_s": t.get("search", 0.0),
        "per_trial_s": round(t.get("search", 0.0) / trials, 3),
        "mlflow_blocking_s": round(blocking, 3),
        "mlflow_share": round(blocking / t["total"], 4),
        "mlflow_background_s": t.get("mlflow_background", 0.0),
        "phases_s": {k: v for k, v in t.items() if k not in ("total",)},
        "trial_counts": result.get("trialCounts"),
        "per_family": per_family,
        "best_family": result.get("family"),
        "test_auc": round(result["metric"]["value"], 4),
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--trials", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--sync", action="store_true", help="also run the first trial count with inline logging")
    args = parser.parse_args()

    from modelops_pipelines.generate import generate_churn, write_table
    from modelops_pipelines.resources import available_cpus, cgroup_cpu_limit
    from tests.fixtures.mlflow_server import MlflowServer

    with tempfile.TemporaryDirectory(prefix="modelops-bench-") as tmp:
        root = Path(tmp)
        server = MlflowServer(root)
        server.start()
        try:
            data = write_table(generate_churn(args.rows, seed=0), root / "churn.csv")
            import_s = _import_heavy()
            # One small training first, so that lazy first-call costs inside the libraries (MLflow's model
            # logging machinery, matplotlib's font setup) are reported here and not as part of 20 trials.
            small = write_table(generate_churn(2000, seed=1), root / "warmup.csv")
            warmup = _one(server.uri, small, 2, False, "bench-warmup")["train_s"]
            runs = [_one(server.uri, data, n, False, f"bench-{n}") for n in args.trials]
            if args.sync:
                runs.append(_one(server.uri, data, args.trials[0], True, f"bench-{args.trials[0]}-sync"))
        finally:
            server.stop()
    print(json.dumps({
        "benchmark": "train_search",
        "rows": args.rows,
        "n_jobs": available_cpus(),
        "cgroup_cpu_limit": cgroup_cpu_limit(),
        "cpu_count": os.cpu_count(),
        "import_s": round(import_s, 3),
        "warmup_train_s": warmup,
        "goal": {"train_s_20_trials": 30, "mlflow_share": 0.10},
        "runs": runs,
    }, indent=1))


if __name__ == "__main__":
    main()
