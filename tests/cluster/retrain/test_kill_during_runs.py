"""SIGKILL of the operator at random points during runs: never two Jobs for one firing, no lost outcome.

Each trial requests a manual run, kills the operator (the whole process group, SIGKILL) after a random
delay - before it saw the request, between the status write and the Job create, while the Pod runs, while
its outcome is being recorded - keeps it down for a random while (the Pod may finish meanwhile) and starts
it again. The delays come from a seeded RNG; the seed is printed (set MODELOPS_TEST_SEED to replay one).

Trial 0 runs the real trainer against the real MLflow server. The other trials use the kubelet stand-in's
FAKE result mode (`fake_results`: a process that sleeps and writes a trainer-shaped result; nothing is
trained) so that many trials fit in a test: what is under test is the operator's bookkeeping.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch

from modelops.api import ANNOTATION_RETRAIN_REQUESTED
from tests.cluster.retrain.helpers import FINISHED, annotate, create, get, runs, schedule, wait_for

pytestmark = pytest.mark.cluster

TRIALS = 11  # trial 0 real, 1..10 fake results
NAME = "crashy"


class JobWatch:
    """Every Job ever ADDED in the namespace (name, uid), from a watch that resumes where it stopped."""

    def __init__(self, kube: Any, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.added: list[tuple[str, str, str]] = []  # (name, uid, run-id label)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        rv = ""
        seen: set[str] = set()
        while not self._stop.is_set():
            try:
                w = watch.Watch()
                for ev in w.stream(self.kube.batch.list_namespaced_job, self.namespace, resource_version=rv,
                                   timeout_seconds=5, allow_watch_bookmarks=False):
                    job = ev["object"]
                    rv = job.metadata.resource_version
                    if job.metadata.uid not in seen:
                        seen.add(job.metadata.uid)
                        self.added.append((job.metadata.name, job.metadata.uid,
                                           (job.metadata.labels or {}).get("modelops.dev/run-id", "")))
            except Exception:
                rv = ""  # too old: relist (a relist still yields every current Job as ADDED)
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _fake_expected(run_id: str) -> tuple[str, str]:
    digest = hashlib.sha256(run_id.encode()).hexdigest()
    return "fake-" + digest[:16], str(int(digest[:6], 16))


def test_sigkill_at_random_points_never_duplicates_or_loses(retrain_operator: Any, namespace: str,
                                                           dataset: Path, kubelet_standin: Any,
                                                           mlflow_server: Any) -> None:
    seed = int(os.environ.get("MODELOPS_TEST_SEED") or time.time_ns() % 1_000_000)
    print(f"test_sigkill_at_random_points: seed {seed} (MODELOPS_TEST_SEED={seed} replays it)")
    rng = random.Random(seed)
    kube, op = retrain_operator.kube, retrain_operator
    create(kube, namespace, schedule(NAME, dataset, concurrencyPolicy="Forbid", successfulRunsHistoryLimit=50,
                                     failedRunsHistoryLimit=50,
                                     training={"search": {"trials": 1, "families": ["linear"],
                                                          "timeoutSeconds": 60}}))
    jw = JobWatch(kube, namespace)
    kills: list[tuple[int, float, float]] = []
    try:
        for trial in range(TRIALS):
            real = trial == 0
            if real:
                kubelet_standin.real_results(namespace)
                kill_after = rng.uniform(0.0, 40.0)  # somewhere in the real training (or before it)
            else:
                kubelet_standin.fake_results(namespace, rng.uniform(0.3, 2.5))
                kill_after = rng.uniform(0.0, 4.0)
            down_for = rng.uniform(0.0, 2.0)
            kills.append((trial, round(kill_after, 2), round(down_for, 2)))
            key = f"t{trial}"
            annotate(kube, namespace, NAME, ANNOTATION_RETRAIN_REQUESTED, key)
            time.sleep(kill_after)
            op.kill()
            time.sleep(down_for)
            op.start()
            done = wait_for(f"trial {trial} ({key}) to finish (seed {seed})", lambda k=key: next(
                (r for r in runs(get(kube, namespace, NAME)) if r.get("firingKey") == k
                 and r["state"] in FINISHED), None), 400 if real else 90, 0.5, op)
            assert done["state"] == "Succeeded", (seed, trial, done)
    finally:
        time.sleep(2)  # let the watch catch up
        jw.stop()
    print(f"kills (trial, after s, down s): {kills}")

    final = get(kube, namespace, NAME)
    all_runs = runs(final)
    keys = [r["firingKey"] for r in all_runs]
    # one run per request, each finished with its outcome recorded
    assert sorted(keys) == sorted(f"t{i}" for i in range(TRIALS)), (seed, keys)
    assert all(r["state"] == "Succeeded" for r in all_runs), (seed, all_runs)
    by_key = {r["firingKey"]: r for r in all_runs}
    for i in range(1, TRIALS):
        run = by_key[f"t{i}"]
        run_id, version = _fake_expected(run["id"])
        assert (run.get("runId"), run.get("version")) == (run_id, version), (seed, run)
    real_run = by_key["t0"]
    from mlflow import MlflowClient

    mv = MlflowClient(tracking_uri=mlflow_server.uri).get_model_version(NAME, real_run["version"])
    assert mv.run_id == real_run["runId"], (seed, real_run)
    # never two Jobs for one firing: exactly one Job (uid) was ever created per run, and no stray Job
    per_run: dict[str, set[str]] = {}
    for name, uid, rid in jw.added:
        per_run.setdefault(rid, set()).add(uid)
        assert name == by_key_job(all_runs, rid), (seed, name, rid)
    assert {rid: len(uids) for rid, uids in per_run.items()} == {r["id"]: 1 for r in all_runs}, (seed, jw.added)
    # and the stand-in ran exactly one Pod per Job (backoffLimit 0, no retried Pod after a crash)
    pods_per_job: dict[str, int] = {}
    for rec in kubelet_standin.records_in(namespace):
        pods_per_job[rec.job_uid] = pods_per_job.get(rec.job_uid, 0) + 1
    assert sorted(pods_per_job.values()) == [1] * TRIALS, (seed, pods_per_job)
    assert final["status"]["activeCount"] == 0 and final["status"]["lastManualRequest"] == f"t{TRIALS - 1}"


def by_key_job(all_runs: list[dict[str, Any]], rid: str) -> str:
    return next((r["job"] for r in all_runs if r["id"] == rid), f"<no run {rid}>")
