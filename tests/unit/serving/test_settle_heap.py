"""The model server freezes its start-up heap before serving (serving/server.py settle_heap)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from modelops.serving.server import settle_heap

pytestmark = pytest.mark.unit


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_every_object_alive_at_start_up_leaves_the_collected_generations(unfrozen: None) -> None:
    # what a model server holds once loaded: long-lived objects a full collection would otherwise walk each time
    held = [{"row": i, "values": [float(i)] * 3} for i in range(20_000)]
    frozen = settle_heap()
    assert frozen == gc.get_freeze_count() >= 20_000 * 2
    # a full collection now sees only what came since: none of the held objects is tracked in a generation
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in tracked for o in held[:100]), "frozen objects are still in a collected generation"
    later = [[i] for i in range(10)]  # lists are always tracked (a dict of atomic values is not)
    tracked = {id(o) for o in gc.get_objects()}
    assert all(id(o) in tracked for o in later)  # what comes after the freeze is collected as usual
    # garbage made after the freeze (a reference cycle) is still freed
    class Node:
        ref: object = None

    node = Node()
    node.ref = node
    dead = weakref.ref(node)
    del node
    gc.collect()
    assert dead() is None
