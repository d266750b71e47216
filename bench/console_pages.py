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

Side by side in the same run (issue 18): the console of an earlier commit (`--compare-ref`, default the
commit before the overview's per-object row cache), exported with `git archive` and run from that tree, on
the same objects and the same Prometheus, the two consoles' requests interleaved page by page. While
measuring, `--churn` objects a second get a new status (what rollouts do), so the overview's caches are
invalidated as in a live cluster.

Prints one JSON document: p50 / p95 / max per page and console, N, the load average before and after.

    uv run python bench/console_pages.py [--deployments 1000] [--requests 60] [--churn 5] [--compare-ref REF]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modelops_dev.cluster.build import binaries_ready  # noqa: E402
from modelops_dev.cluster.local import LocalCluster  # noqa: E402
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


class OldConsole(ConsoleProc):
    """`modelops console` of another commit: its operator/modelops tree exported with `git archive`."""

    def __init__(self, ref: str, *args: Any) -> None:
        super().__init__(*args)
        self.ref = ref
        tree = self.root / "tree"
        tree.mkdir(exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "operator/modelops"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        self.env["PYTHONPATH"] = str(tree / "operator")

    def start(self) -> ConsoleProc:
        from tests.fixtures.procs import http_ok, start, wait_until

        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_") and k != "PYTHONPATH"}
        code = "import sys, modelops; assert modelops.__file__.startswith(sys.argv[1]); " \
               "from modelops.cli import app; app(['console'])"
        self.proc = start([sys.executable, "-c", code, self.env["PYTHONPATH"]], self.log, env={**env, **self.env})
        wait_until(lambda: http_ok(f"{self.url}/healthz"), 60, f"modelops console at {self.ref}", self.proc, self.log)
        return self


class Churn(threading.Thread):
    """`rate` status writes a second to random ModelDeployments (a rollout's step / analysis), as the operator
    would make them during rollouts."""

    def __init__(self, kube: Any, namespaces: list[str], n: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.kube, self.namespaces, self.n, self.rate = kube, namespaces, n, rate
        self.halt = threading.Event()
        self.writes = 0

    def run(self) -> None:
        rnd = random.Random(7)
        while self.rate > 0 and not self.halt.wait(1 / self.rate):
            i = rnd.randrange(self.n)
            if i % 10 == 0:
                continue  # those await approval; leave them so
            status = {"phase": "Progressing", "stable": {"version": "1"}, "canary": {"version": "2"},
                      "rollout": {"state": "Progressing", "step": 0, "weight": rnd.choice([10, 20, 50]),
                                  "startedAt": "2026-01-01T00:00:00Z", "lastResult": "Pass",
                                  "lastAnalysisAt": f"2026-01-01T00:{rnd.randrange(60):02d}:00Z"}}
            try:
                self.kube.custom.patch_namespaced_custom_object_status(
                    "modelops.dev", "v1alpha1", self.namespaces[i % len(self.namespaces)], "modeldeployments",
                    f"md-{i:04d}", {"status": status})
                self.writes += 1
            except Exception as exc:  # a slow API server under load: keep going, report the count
                print(f"churn: {exc}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deployments", type=int, default=1000)
    ap.add_argument("--schedules", type=int, default=100)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--churn", type=float, default=5.0, help="status writes a second while measuring")
    ap.add_argument("--compare-ref", default="167e970",
                    help="git commit of the console to measure side by side ('' for none)")
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
    old = None
    churn = None
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
        consoles = {"this": console}
        if args.compare_ref:
            old = OldConsole(args.compare_ref, kube, root / "console-old", token, mlflow.uri, prom.url).start()
            consoles[f"at {args.compare_ref}"] = old
        headers = {"Authorization": f"Bearer {user}"}
        pages = {"overview (HTML)": "/", "overview (JSON, live updates)": "/api/overview",
                 "model page": "/models/bench-0/md-0000",
                 "approval view (ModelDeployment)": "/approvals/modeldeployments/bench-0/md-0000/2",
                 "approval view (RetrainSchedule)": "/approvals/retrainschedules/bench-0/rs-000/2"}
        results: dict[str, Any] = {}
        churn = Churn(kube, namespaces, args.deployments, args.churn)
        churn.start()
        clients = {label: httpx.Client(base_url=c.url, timeout=60) for label, c in consoles.items()}
        try:
            for name, path in pages.items():
                times: dict[str, list[float]] = {label: [] for label in consoles}
                for i in range(args.requests + 3):
                    for label, http in clients.items():  # interleaved: both see the same load and churn
                        t0 = time.perf_counter()
                        r = http.get(path, headers={**headers, "Accept": "text/html" if "JSON" not in name
                                                    else "application/json"})
                        dt = time.perf_counter() - t0
                        if r.status_code != 200:
                            raise SystemExit(f"{label} {path}: HTTP {r.status_code}: {r.text[:500]}")
                        if i >= 3:  # warm-up: first TokenReview, connection pools
                            times[label].append(dt)
                for label in consoles:
                    results.setdefault(name, {})[f"console {label}"] = summary(times[label])
                print(name, results[name], file=sys.stderr, flush=True)
            for label, http in clients.items():
                over = http.get("/api/overview", headers={**headers, "Accept": "application/json"}).json()
                assert over["totals"]["deployments"] == args.deployments, (label, over["totals"])
                assert over["totals"]["schedules"] == args.schedules, (label, over["totals"])
                awaiting = over["totals"]["awaiting"]
                assert awaiting == args.deployments // 10 + args.schedules // 10, (label, awaiting)
        finally:
            churn.halt.set()
            for http in clients.values():
                http.close()
        # side by side: the API server's own list of the same objects (raw HTTP through the official client)
        baseline = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            resp = kube.custom.list_cluster_custom_object("modelops.dev", "v1alpha1", "modeldeployments",
                                                          limit=500, _preload_content=False)
            resp.read()
            baseline.append(time.perf_counter() - t0)
        results["baseline: API server list of ModelDeployments (first 500, no console)"] = summary(baseline)
        print(json.dumps({"benchmark": "console_pages", "deployments": args.deployments, "awaiting": awaiting,
                          "schedules": args.schedules, "requests_per_page": args.requests,
                          "objects_created_s": round(created_s, 1), "churn_writes_per_s": args.churn,
                          "churn_writes": churn.writes, "compare_ref": args.compare_ref, "pages": results,
                          "loadavg_before": [round(x, 2) for x in load_before],
                          "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                          "cpus": os.cpu_count()}, indent=2))
    finally:
        if churn is not None:
            churn.halt.set()
        for c in (console, old):
            if c is not None:
                c.stop()
        prom.stop()
        mlflow.stop()
        cluster.down(progress=lambda _m: None)


if __name__ == "__main__":
    main()
