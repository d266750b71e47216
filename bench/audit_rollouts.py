"""Benchmark (issue 18's "Must show"): the audit trail across 100 rollouts on the real API server.

Real control plane (`modelops cluster` binaries), KServe's InferenceService CRD with the KServe controller
stand-in of tests/fixtures/kserve.py (the control plane has no node), a real MLflow server, the operator as a
real process, and `modelops approve|reject|abort` processes run as two Kubernetes users (ServiceAccount tokens
the API server issues). The driver and the checks are tests/fixtures/audit_run.py, the same as the cluster
tier's test_audit_run.py (10 rollouts): ModelDeployments held for approval cycle through approve, reject,
rollback (the registry alias back to stable) and abort, the others promote by themselves; then exactly one
record per decision in status.history, Events and MLflow tags, the actor's username, and `modelops history`'s
serving intervals against the promotions' MLflow records.

Prints one JSON document: rollouts per kind, users, problems (must be []), wall time, seconds per rollout,
load average. Exits 1 when a check found a problem.

    uv run python bench/audit_rollouts.py [--chains 10] [--per-chain 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from modelops.api import GROUP, VERSION  # noqa: E402
from modelops_dev.cluster.build import binaries_ready  # noqa: E402
from modelops_dev.cluster.local import LocalCluster  # noqa: E402
from tests.fixtures import audit_run  # noqa: E402
from tests.fixtures.cluster import Kube  # noqa: E402
from tests.fixtures.kserve import KServeStandIn, install_kserve_crd  # noqa: E402
from tests.fixtures.mlflow_server import MlflowServer  # noqa: E402
from tests.fixtures.operator import Operator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=10, help="ModelDeployments rolling out in parallel")
    ap.add_argument("--per-chain", type=int, default=10, help="rollouts of each, one after another")
    ap.add_argument("--auto-every", type=int, default=4, help="every n-th ModelDeployment promotes by itself")
    args = ap.parse_args()
    if not binaries_ready():
        sys.exit("the Kubernetes binaries are not built; run: uv run modelops cluster build")
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    cluster = LocalCluster(name="bench-audit", root=root / "cluster")
    t0 = time.monotonic()
    cluster.up(progress=lambda _m: None)
    (root / "mlflow").mkdir()
    mlflow = MlflowServer(root / "mlflow")
    mlflow.start()
    op = stand_in = None
    try:
        kube = Kube(cluster)
        kube.install_crds()
        kube.wait_served(GROUP, VERSION, "modeldeployments")
        install_kserve_crd(kube)
        stand_in = KServeStandIn(kube, ready_delay=0.2, period=0.5).start()
        op = Operator(kube, root / "operator.log")
        op.extra_env = {"MODELOPS_LOG_LEVEL": "WARNING", "MODELOPS_MLFLOW_TRACKING_URI": mlflow.uri}
        op.start()
        kube.kubectl("create", "namespace", "audit")
        setup_s = time.monotonic() - t0
        out = audit_run.run(kube, "audit", mlflow.uri, root, chains=args.chains, per_chain=args.per_chain,
                            auto_every=args.auto_every)
        per = [r.seconds for r in out.rollouts]
        refused = {k: v for k, v in out.refused.items()}
        print(json.dumps({
            "benchmark": "audit_rollouts", "rollouts": len(out.rollouts), "chains": args.chains,
            "per_chain": args.per_chain, "by_kind": out.counts,
            "users": sorted({r.user for r in out.rollouts if r.user}),
            "records_expected": sum(len(audit_run.EXPECTED[r.kind]) for r in out.rollouts),
            "problems": out.problems, "refused_without_approve": refused,
            "wall_s": out.wall_seconds, "setup_s": round(setup_s, 1),
            "rollout_s": {"p50": round(statistics.median(per), 2), "max": round(max(per), 2)} if per else {},
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}, indent=1))
        if out.problems or len(out.rollouts) != args.chains * args.per_chain or refused.get("returncode") != 1:
            sys.exit(1)
    finally:
        if op is not None and op.proc and op.proc.poll() is None:
            op.kill()
        if stand_in is not None:
            stand_in.stop()
        mlflow.stop()
        cluster.down(progress=lambda _m: None)


if __name__ == "__main__":
    main()
