"""Benchmark of the search alone (no MLflow): 20 and 50 trials on 20k churn rows, as JSON.

    uv run python bench/train_search_cpu.py [--rows 20000] [--trials 20 50]
    taskset -c 0,1 python bench/train_search_cpu.py     # an idle 2-core slice of a bigger machine

Separates the cost of the search itself from tracking (bench/train_search.py measures the full training
against a real MLflow server). Uses the trainer's own split, preprocessing, families and pruner.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "pipelines"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--trials", type=int, nargs="+", default=[20, 50])
    args = parser.parse_args()
    start = time.perf_counter()
    from modelops_pipelines.data import validate_and_prepare
    from modelops_pipelines.generate import generate_churn
    from modelops_pipelines.resources import available_cpus
    from modelops_pipelines.search import SearchData, run_search
    from modelops_pipelines.spec import TrainSpec
    from modelops_pipelines.train import make_split

    import_s = time.perf_counter() - start
    spec = TrainSpec.model_validate({"modelName": "bench", "dataset": {"uri": "/bench.csv", "target": "churn",
                                                                       "task": "classification"}})
    data = validate_and_prepare(generate_churn(args.rows, seed=0), spec)
    split = make_split(data, spec.split.test_fraction, spec.split.validation_fraction, spec.split.seed)
    y = data.y.to_numpy()
    sd = SearchData(X_fit=data.X.iloc[split.fit], y_fit=y[split.fit], X_valid=data.X.iloc[split.valid],
                    y_valid=y[split.valid], numeric=data.numeric, categorical=data.categorical,
                    task="classification", n_classes=2)
    runs = []
    for n in args.trials:
        search = spec.search.model_copy(update={"trials": n, "timeout_seconds": None, "seed": 0})
        load = os.getloadavg()[0]
        res = run_search(sd, search, "auc", n_jobs=available_cpus())
        fams: dict[str, dict[str, float]] = {}
        for t in res.trials:
            f = fams.setdefault(t.family, {"trials": 0, "pruned": 0, "seconds": 0.0})
            f["trials"] += 1
            f["pruned"] += t.state == "PRUNED"
            f["seconds"] = round(f["seconds"] + (t.end_ms - t.start_ms) / 1000, 3)
        runs.append({"trials": n, "search_s": round(res.seconds, 3), "per_trial_s": round(res.seconds / n, 3),
                     "counts": res.counts, "best_family": res.family, "best_valid_auc": round(res.value, 4),
                     "per_family": fams, "loadavg_1m": [round(load, 2), round(os.getloadavg()[0], 2)]})
    print(json.dumps({"benchmark": "train_search_cpu", "rows": args.rows, "n_jobs": available_cpus(),
                      "affinity": len(os.sched_getaffinity(0)), "import_s": round(import_s, 3), "runs": runs},
                     indent=1))


if __name__ == "__main__":
    main()
