"""The handler's two pieces of plumbing that need no cluster: the status merge patch and the scheduler."""

from __future__ import annotations

import asyncio

import pytest

from modelops.handlers.modeldeployment import Scheduler, merge_patch

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
