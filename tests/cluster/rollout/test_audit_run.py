"""Issue 18's audit on the real API server with the real operator: 10 rollouts on 3 ModelDeployments, decided
by two Kubernetes users through `modelops approve|reject|abort` (SelfSubjectReview names them) and by the
operator itself -> exactly one record per decision in status.history, in Events and in MLflow version tags,
each naming who decided; `modelops history` reconstructs the serving intervals. A user without the verb
`approve` is refused by the CLI. The 100-rollout run is bench/audit_rollouts.py (same driver)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import audit_run

pytestmark = pytest.mark.cluster


def test_audit_of_ten_rollouts_by_two_users(kube_crds: Any, kserve: Any, mlflow_server: Any, namespace: str,
                                            rollout_operator: Any, tmp_path: Path) -> None:
    # 3 chains: two held for approval (4 rollouts each: approve, reject, rollback, abort in turn, by two
    # users), one promoting by itself (2 rollouts) -> 10 rollouts
    out = audit_run.run(kube_crds, namespace, mlflow_server.uri, tmp_path, chains=3, per_chain=4, auto_every=3,
                        auto_rollouts=2)
    assert len(out.rollouts) == 10
    assert out.counts == {"approve": 2, "reject": 2, "rollback": 2, "abort": 2, "promote": 2}, out.counts
    assert {r.user for r in out.rollouts if r.user} == {"system:serviceaccount:people:alice",
                                                        "system:serviceaccount:people:carol"}
    assert out.problems == [], "\n".join(out.problems)
    refused = out.refused
    assert refused["returncode"] == 1 and refused["unchanged"], refused
    assert "system:serviceaccount:people:bob may not approve" in refused["stderr"], refused
