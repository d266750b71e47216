"""Leader election on a Lease (client-go's rules) against an in-memory API server and a stepped clock."""

from __future__ import annotations

import pytest

from modelops.controller.leader import LeaderElector
from tests.unit.controller.fakes import FakeKube

pytestmark = pytest.mark.unit


def test_one_leader_at_a_time_and_a_successor_within_the_lease_duration() -> None:
    kube = FakeKube()
    now = [0.0]
    a = LeaderElector(kube, "ops", "modelops", "a", clock=lambda: now[0])
    b = LeaderElector(kube, "ops", "modelops", "b", clock=lambda: now[0])
    a_alive = True
    last_a_renewal = 0.0
    b_since: float | None = None
    while now[0] < 60:
        tick = round(now[0] * 2) % 4 == 0  # each tries every retry period (2 s)
        if tick and a_alive:
            a.attempt()
            if a.is_leader():
                last_a_renewal = now[0]
        if round(now[0] * 2) % 4 == 1:  # b's attempts are offset by 0.5 s
            b.attempt()
            if b.is_leader() and b_since is None:
                b_since = now[0]
        assert not (a.is_leader() and b.is_leader()), now[0]
        if now[0] >= 20:
            a_alive = False  # SIGKILL: a never renews again
        now[0] += 0.5
    assert b_since is not None and last_a_renewal <= 20
    assert b_since - last_a_renewal <= 15 + 2  # the lease duration plus one retry period
    lease = kube.get_lease("ops", "modelops")
    assert lease is not None and lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_stops_acting_before_anyone_may_take_over() -> None:
    kube = FakeKube()
    now = [0.0]
    a = LeaderElector(kube, "ops", "modelops", "a", clock=lambda: now[0])
    assert a.attempt()
    now[0] = 9.9
    assert a.is_leader()
    now[0] = 10.0  # renew deadline: the gate closes, 5 s before the lease could expire for others
    assert not a.is_leader()


def test_release_lets_a_successor_in_at_once() -> None:
    kube = FakeKube()
    now = [0.0]
    a = LeaderElector(kube, "ops", "modelops", "a", clock=lambda: now[0])
    b = LeaderElector(kube, "ops", "modelops", "b", clock=lambda: now[0])
    assert a.attempt() and not b.attempt()
    a.release()
    now[0] = 1.5  # 1 s lease after release
    assert b.attempt()


def test_a_standby_tries_again_right_when_the_lease_expires() -> None:
    kube = FakeKube()
    now = [0.0]
    a = LeaderElector(kube, "ops", "modelops", "a", clock=lambda: now[0])
    b = LeaderElector(kube, "ops", "modelops", "b", clock=lambda: now[0])
    assert a.attempt()
    now[0] = 1.0
    assert not b.attempt()  # b saw a's renewal at 1.0: it expires for b at 16.0
    now[0] = 14.5
    assert b.next_wait() == pytest.approx(1.55)
    now[0] = 16.05
    assert b.attempt()
