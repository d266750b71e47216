"""Benchmark: memory of the watch cache for N ModelDeployments and their InferenceServices, side by side:
objects kept as Python dicts (the first cache, `lean` deep copies), as compact JSON bytes (the second), and
as the WatchCache keeps them now (compact JSON, zlib-compressed).

The objects are what the operator really caches: a ModelDeployment with the status a serving object has
(conditions, stable version, history) and the InferenceService the builder makes, with a KServe-like
status. Python allocations measured with tracemalloc; read time per `get` alongside.

    uv run python bench/cache_memory.py [--objects 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modelops.api.types import ModelRef, ServingPlan  # noqa: E402
from modelops.controller.cache import WatchCache, lean  # noqa: E402
from modelops.decide.conditions import Condition, merge_conditions  # noqa: E402
from modelops.desired.inference_service import Defaults, inference_service  # noqa: E402

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def objects(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    name = f"m{i:05d}"
    spec = {"model": {"storageUri": f"s3://bench/{name}/v3"},
            "serving": {"runtime": "kserve", "modelFormat": "sklearn", "deploymentMode": "Standard"},
            "logger": {"enabled": False}, "rollout": {"strategy": "Immediate"}}
    conds = merge_conditions(None, [Condition(t, "True", "Ok", f"{t} of {name} at version 3 is fine")
                                    for t in ("Accepted", "Ready", "ModelResolved", "Progressing",
                                              "InferenceServiceReady", "AnalysisHealthy")], 3, NOW)
    md = {"apiVersion": "modelops.dev/v1alpha1", "kind": "ModelDeployment",
          "metadata": {"name": name, "namespace": "bench", "uid": f"uid-{i}", "resourceVersion": str(1000 + i),
                       "generation": 3, "creationTimestamp": "2030-01-01T00:00:00Z",
                       "managedFields": [{"manager": "modelops", "fieldsV1": {"f:status": {}}}] * 3},
          "spec": spec,
          "status": {"observedGeneration": 3, "conditions": conds, "phase": "Serving",
                     "stable": ModelRef(f"s3://bench/{name}/v3").as_status(NOW), "specHash": "0123456789abcdef",
                     "inferenceService": name, "deploymentMode": "Standard",
                     "history": [{"version": f"s3://bench/{name}/v{v}", "fromVersion": f"s3://bench/{name}/v{v - 1}",
                                  "result": "Promoted", "reason": "Immediate",
                                  "finishedAt": "2030-01-01T00:00:00.000000Z"} for v in (1, 2, 3)]}}
    isvc = inference_service(name=name, namespace="bench", uid=f"uid-{i}", spec=spec,
                             plan=ServingPlan(ModelRef(f"s3://bench/{name}/v3")), mode="Standard",
                             defaults=Defaults("modelops/model-server:0.1.0", "http://drift/events"))
    isvc["metadata"].update({"resourceVersion": str(50000 + i), "generation": 3,
                             "managedFields": [{"manager": "modelops", "fieldsV1": {"f:spec": {}}}]})
    isvc["status"] = {"observedGeneration": 3, "url": f"http://{name}.bench.svc",
                      "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2030-01-01T00:00:00Z"}
                                     for t in ("IngressReady", "PredictorReady", "Ready")],
                      "components": {"predictor": {"url": f"http://{name}-predictor.bench.svc"}}}
    return md, isvc


def measure(n: int, store: str) -> dict[str, Any]:
    pairs = [objects(i) for i in range(n)]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    if store == "dicts":
        kept: Any = {}
        for md, isvc in pairs:
            kept[("md", md["metadata"]["name"])] = lean(md)
            kept[("isvc", md["metadata"]["name"])] = lean(isvc)
    elif store == "json":
        kept = {}
        for md, isvc in pairs:
            kept[("md", md["metadata"]["name"])] = json.dumps(lean(md), separators=(",", ":")).encode()
            kept[("isvc", md["metadata"]["name"])] = json.dumps(lean(isvc), separators=(",", ":")).encode()
    else:
        kept = WatchCache()
        for md, isvc in pairs:
            kept.remember("ModelDeployment", ("bench", md["metadata"]["name"]), md)
            kept.remember("InferenceService", ("bench", md["metadata"]["name"]), isvc)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    import copy

    t0 = time.perf_counter()
    for md, _ in pairs[:2000]:
        if store == "dicts":
            copy.deepcopy(kept[("md", md["metadata"]["name"])])
        elif store == "json":
            json.loads(kept[("md", md["metadata"]["name"])])
        else:
            kept.get("ModelDeployment", ("bench", md["metadata"]["name"]))
    per_get = (time.perf_counter() - t0) / min(n, 2000)
    json_bytes = sum(len(json.dumps(lean(o))) for md, isvc in pairs[:100] for o in (md, isvc)) / 100
    return {"store": store, "objects": n, "pairs_mb": round(used / 2**20, 1),
            "per_pair_kb": round(used / n / 1024, 2), "json_per_pair_kb": round(json_bytes / 1024, 2),
            "get_us": round(per_get * 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=10000)
    args = ap.parse_args()
    results = [measure(args.objects, store) for store in ("dicts", "json", "watchcache")]
    print(json.dumps({"benchmark": "cache_memory", "load_avg_1m": round(os.getloadavg()[0], 1),
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
