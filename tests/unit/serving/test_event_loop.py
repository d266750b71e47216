"""`modelops serve --loop`: which asyncio loop KServe's ModelServer runs on."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from modelops.cli import app
from modelops.serving.server import use_event_loop

pytestmark = pytest.mark.unit


def test_bad_loop_is_refused_naming_the_option() -> None:
    res = CliRunner().invoke(app, ["serve", "--loop", "tornado", "--model-dir", "/nonexistent"])
    assert res.exit_code == 2 and "--loop 'tornado'" in res.output, res.output
    with pytest.raises(ValueError, match="tornado"):
        use_event_loop("tornado")


def test_uvloop_is_what_asyncio_run_creates_and_asyncio_leaves_the_default() -> None:
    import uvloop  # in the lock through kserve's uvicorn[standard]

    policy = asyncio.get_event_loop_policy()
    try:
        assert use_event_loop("asyncio") == "asyncio"
        assert asyncio.get_event_loop_policy() is policy
        assert use_event_loop("auto") == "uvloop"
        # KServe's setup_event_loop() calls get_event_loop() before asyncio.run(): a loop must be current
        current = asyncio.get_event_loop()
        assert isinstance(current, uvloop.Loop)
        current.close()
        assert isinstance(asyncio.run(_running_loop()), uvloop.Loop)
    finally:
        asyncio.set_event_loop_policy(policy)


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()
