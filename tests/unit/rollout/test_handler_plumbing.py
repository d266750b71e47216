"""The handler's two pieces of plumbing that need no cluster: the status merge patch and the scheduler."""

from __future__ import annotations

import asyncio

import pytest

from modelops.controller.scheduler import Scheduler
from modelops.controller.status import merge_patch

pytestmark = pytest.mark.unit


def test_merge_patch_nulls_removed_keys_and_recurses() -> None:
    old = {"rollout": {"step": 1, "lastResult": "Pass"}, "canary": {"version": "2"}, "phase": "Progressing"}
    new = {"rollout": {"step": 2}, "phase": "Progressing", "history": [{"version": "1"}]}
    assert merge_patch(old, new) == {"rollout": {"step": 2, "lastResult": None}, "canary": None,
                                     "history": [{"version": "1"}]}
    assert merge_patch(new, new) == {}


def test_scheduler_runs_due_objects_once_at_a_time_and_reruns_after_a_change() -> None:
    runs: list[tuple[str, str]] = []
    running: set[tuple[str, str]] = set()
    overlap: list[tuple[str, str]] = []

    async def run(ns: str, name: str) -> float:
        key = (ns, name)
        if key in running:
            overlap.append(key)
        running.add(key)
        runs.append(key)
        await asyncio.sleep(0.05)
        running.discard(key)
        return 0.2 if name == "fast" else 30.0

    async def main() -> None:
        s = Scheduler(run, concurrency=4)
        task = asyncio.create_task(s.run_forever())
        s.touch(("ns", "fast"))
        s.touch(("ns", "slow"))
        await asyncio.sleep(0.02)
        s.touch(("ns", "slow"))  # a change while it runs: one more run right after, not a parallel one
        await asyncio.sleep(0.6)
        s.forget(("ns", "fast"))
        count = runs.count(("ns", "fast"))
        await asyncio.sleep(0.5)
        assert runs.count(("ns", "fast")) <= count + 1  # forgotten: at most the run in flight finishes
        task.cancel()

    asyncio.run(main())
    assert not overlap
    assert runs.count(("ns", "slow")) == 2
    assert runs.count(("ns", "fast")) >= 3


def test_cache_keeps_objects_without_managed_fields_and_only_moves_forward() -> None:
    from modelops.controller.cache import WatchCache

    cache = WatchCache()
    key = ("ns", "m")
    obj = {"apiVersion": "modelops.dev/v1alpha1", "kind": "ModelDeployment",
           "metadata": {"name": "m", "namespace": "ns", "uid": "u", "resourceVersion": "5", "generation": 2,
                        "annotations": {"a": "b"}, "managedFields": [{"manager": "kubectl"}]},
           "spec": {"model": {"storageUri": "s3://m/1"}}, "status": {"phase": "Serving"}}
    cache.remember("ModelDeployment", key, obj)
    got = cache.get("ModelDeployment", key)
    assert got is not None and "managedFields" not in got["metadata"]
    assert got == {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
    got["spec"]["model"]["storageUri"] = "changed"  # callers get copies
    assert cache.get("ModelDeployment", key)["spec"]["model"]["storageUri"] == "s3://m/1"  # type: ignore[index]
    cache.remember("ModelDeployment", key, {**obj, "metadata": {**obj["metadata"], "resourceVersion": "4"}, "spec": {}})
    assert cache.get("ModelDeployment", key)["spec"] == obj["spec"]  # type: ignore[index]  # an older event never wins


def test_scheduler_serves_a_change_before_a_backlog_of_timers() -> None:
    """1000 objects' timers fall due together on a busy machine; an edit must not queue behind them."""
    from modelops.controller.scheduler import CHANGE, REPORT

    order: list[str] = []

    async def run(ns: str, name: str) -> float:
        order.append(name)
        await asyncio.sleep(0.01)
        return 3600.0

    async def main() -> None:
        s = Scheduler(run, concurrency=2)
        for i in range(50):
            s.touch(("ns", f"timer-{i:02d}"))  # all due now, at timer priority
        task = asyncio.create_task(s.run_forever())
        await asyncio.sleep(0.015)  # the first timers are running; the rest wait
        s.touch(("ns", "status"), priority=REPORT)
        s.touch(("ns", "edited"), priority=CHANGE)
        await asyncio.sleep(0.6)
        task.cancel()

    asyncio.run(main())
    assert len(order) == 52 and len(set(order)) == 52  # everything ran, once
    # at most the two reconciles in flight (and the pair started with them) go before the edit
    assert order.index("edited") <= 4, order[:8]
    assert order.index("edited") < order.index("status") <= 5, order[:8]
    timers = [n for n in order if n.startswith("timer-")]
    assert timers == sorted(timers)  # timers in due order among themselves


def test_scheduler_keeps_order_and_bounds_through_retouches_and_forgets() -> None:
    """The heaps behind the scheduler: an object touched again sooner or more urgently runs once, at the
    earlier time and the higher priority; a forgotten one never runs; superseded entries do not pile up."""
    from modelops.controller.scheduler import CHANGE, TIMER

    order: list[str] = []

    async def run(ns: str, name: str) -> float:
        order.append(name)
        return 3600.0

    async def main() -> Scheduler:
        s = Scheduler(run, concurrency=1, gate=lambda: False)  # nothing starts until every touch is in
        for i in range(200):
            s.touch(("ns", f"o{i:03d}"), delay=0.05 + i / 1000)
        for i in range(0, 200, 2):
            s.touch(("ns", f"o{i:03d}"), delay=0.0)  # even ones: due now, still at timer priority
        s.touch(("ns", "o199"), delay=0.0, priority=CHANGE)
        for i in range(1, 200, 4):
            s.forget(("ns", f"o{i:03d}"))
        for _ in range(5000):  # many retouches of one object: entries superseded, never run twice
            s.touch(("ns", "o000"), delay=0.0, priority=TIMER)
        s._gate = lambda: True
        task = asyncio.create_task(s.run_forever())
        s.open_gate()
        await asyncio.sleep(0.6)
        task.cancel()
        return s

    s = asyncio.run(main())
    forgotten = {f"o{i:03d}" for i in range(1, 200, 4)}
    assert sorted(order) == sorted({f"o{i:03d}" for i in range(200)} - forgotten), "each once, none forgotten"
    assert order[0] == "o199", "the change first"
    assert order[1:101] == [f"o{i:03d}" for i in range(0, 200, 2)], order[:12]  # due now, in due order
    odds = [n for n in order if int(n[1:]) % 2 == 1 and n != "o199"]
    assert odds == sorted(odds), "the rest in due order"
    assert len(s._timers) + len(s._ready) < 2000, "superseded entries are dropped, not kept"
