"""Benchmark: the console's page latency with 1,000 ModelDeployments (and 100 RetrainSchedules).

The overview shows 100 rows per table (objects awaiting approval first) from a watch-fed mirror of the
two kinds; the model page and the approval view read the object, MLflow and Prometheus on every request.

Real control plane (`modelops cluster` binaries), the console as a real process (`modelops console`) on its
ServiceAccount with the chart's ClusterRole, a real MLflow with the model's versions, a real Prometheus. N
ModelDeployments (every tenth awaiting approval, with rollout status as the operator writes it) are
created in 10 namespaces; then each page is requested sequentially `--requests` times by an authenticated
user (bearer token, TokenReview answered by the API server; the console reuses an answer for 10 s) and the
latency is taken on the client. Side by side: the API server's own `list` of the same objects (what any
overview costs at least), measured with the same HTTP client.

Prints one JSON document: p50 / p95 / max per page, N, the load average before and after.

    uv run python bench/console_pages.py [--deployments 1000] [--requests 60]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modelops.cluster.build import binaries_ready  # noqa: E402
from modelops.cluster.local import LocalCluster  # noqa: E402
from tests.fixtures.cluster import Kube  # noqa: E402
from tests.fixtures.console import (  # noqa: E402
    ConsoleProc,
    install_console_rbac,
    md_status_awaiting,
    model_deployment,
    retrain_schedule,
    rs_status_awaiting,
    seed_model,
    token_for,
)
from tests.fixtures.mlflow_server import MlflowServer  # noqa: E402
from tests.fixtures.prometheus import Prometheus  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def summary(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(xs) * 1000, 1), "p95_ms": round(pct(xs, 0.95) * 1000, 1),
            "max_ms": round(max(xs) * 1000, 1), "n": len(xs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deployments", type=int, default=1000)
    ap.add_argument("--schedules", type=int, default=100)
    ap.add_argument("--requests", type=int, default=60)
    args = ap.parse_args()
    if not binaries_ready():
        sys.exit("the Kubernetes binaries are not built; run: modelops cluster build")
    import httpx

    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench-console-"))
    cluster = LocalCluster(name="bench-console", root=root / "cluster")
    cluster.up(progress=lambda _m: None)
    for d in ("mlflow", "prom"):
        (root / d).mkdir()
    mlflow = MlflowServer(root / "mlflow")
    mlflow.start()
    prom = Prometheus(root / "prom", [])
    prom.start()
    console = None
    try:
        kube = Kube(cluster)
        kube.install_crds()
        kube.wait_served("modelops.dev", "v1alpha1", "modeldeployments")
        token = install_console_rbac(kube)
        seed_model(mlflow.uri, "churn", 2, root)
        namespaces = [f"bench-{i}" for i in range(10)]
        for ns in namespaces:
            kube.kubectl("create", "namespace", ns)
        user = token_for(kube, "bench-0", "reader")
        kube.kubectl("create", "clusterrolebinding", "bench-reader", "--clusterrole=modelops-approver",
                     "--serviceaccount=bench-0:reader")

        def make_md(i: int) -> None:
            ns = namespaces[i % len(namespaces)]
            body = model_deployment(f"md-{i:04d}", "churn")
            kube.custom.create_namespaced_custom_object("modelops.dev", "v1alpha1", ns, "modeldeployments", body)
            if i % 10 == 0:
                kube.custom.patch_namespaced_custom_object_status("modelops.dev", "v1alpha1", ns, "modeldeployments",
                                                                 f"md-{i:04d}", {"status": md_status_awaiting("2")})

        def make_rs(i: int) -> None:
            ns = namespaces[i % len(namespaces)]
            kube.custom.create_namespaced_custom_object("modelops.dev", "v1alpha1", ns, "retrainschedules",
                                                        retrain_schedule(f"rs-{i:03d}", "churn"))
            if i % 10 == 0:
                kube.custom.patch_namespaced_custom_object_status(
                    "modelops.dev", "v1alpha1", ns, "retrainschedules", f"rs-{i:03d}",
                    {"status": rs_status_awaiting("2", "0" * 32)})

        t = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(make_md, range(args.deployments)))
            list(pool.map(make_rs, range(args.schedules)))
        created_s = time.monotonic() - t
        console = ConsoleProc(kube, root / "console", token, mlflow.uri, prom.url).start()
        headers = {"Authorization": f"Bearer {user}"}
        pages = {"overview (HTML)": "/", "overview (JSON, live updates)": "/api/overview",
                 "model page": "/models/bench-0/md-0000",
                 "approval view (ModelDeployment)": "/approvals/modeldeployments/bench-0/md-0000/2",
                 "approval view (RetrainSchedule)": "/approvals/retrainschedules/bench-0/rs-000/2"}
        results: dict[str, Any] = {}
        with httpx.Client(base_url=console.url, timeout=60) as http:
            for name, path in pages.items():
                times = []
                for i in range(args.requests + 3):
                    t0 = time.perf_counter()
                    r = http.get(path, headers={**headers, "Accept": "text/html" if "JSON" not in name
                                                else "application/json"})
                    dt = time.perf_counter() - t0
                    if r.status_code != 200:
                        raise SystemExit(f"{path}: HTTP {r.status_code}: {r.text[:500]}")
                    if i >= 3:  # warm-up: first TokenReview, connection pools
                        times.append(dt)
                results[name] = summary(times)
                print(name, results[name], file=sys.stderr, flush=True)
            over = http.get("/api/overview", headers={**headers, "Accept": "application/json"}).json()
            assert over["totals"]["deployments"] == args.deployments and over["totals"]["schedules"] == args.schedules
            awaiting = over["totals"]["awaiting"]
            assert awaiting == args.deployments // 10 + args.schedules // 10, awaiting
        # side by side: the API server's own list of the same objects (raw HTTP through the official client)
        times = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            resp = kube.custom.list_cluster_custom_object("modelops.dev", "v1alpha1", "modeldeployments",
                                                          limit=500, _preload_content=False)
            resp.read()
            times.append(time.perf_counter() - t0)
        results["baseline: API server list of ModelDeployments (first 500, no console)"] = summary(times)
        print(json.dumps({"benchmark": "console_pages", "deployments": args.deployments, "awaiting": awaiting,
                          "schedules": args.schedules, "requests_per_page": args.requests,
                          "objects_created_s": round(created_s, 1), "pages": results,
                          "loadavg_before": [round(x, 2) for x in load_before],
                          "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                          "cpus": os.cpu_count()}, indent=2))
    finally:
        if console is not None:
            console.stop()
        prom.stop()
        mlflow.stop()
        cluster.down(progress=lambda _m: None)


if __name__ == "__main__":
    main()
