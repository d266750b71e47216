"""Shared pytest wiring: every test carries exactly one tier marker (see ARCHITECTURE.md)."""

from __future__ import annotations

import pytest

TIERS = ("unit", "integration", "cluster", "e2e", "bench")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tiers = [m.name for m in item.iter_markers() if m.name in TIERS]
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid}: needs exactly one tier marker of {TIERS}, has {tiers}")
