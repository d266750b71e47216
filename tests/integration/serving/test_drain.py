"""SIGTERM: readiness fails at once, requests are still answered during the drain window, clean exit."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.procs import http_ok, stop, wait_until
from tests.integration.serving.conftest import launch

pytestmark = pytest.mark.integration


def test_sigterm_drains(model_root: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proc: Any
    proc, http, _ = launch(model_root / "booster", log, "--drain-seconds", "2", "--grace-seconds", "5")
    try:
        wait_until(lambda: http_ok(f"{http}/v2/models/booster/ready"), 180, "modelops serve (drain)", proc, log)
        row = {"instances": [[0.1] * 10]}
        with httpx.Client(base_url=http, timeout=10) as c:
            assert c.post("/v1/models/booster:predict", json=row).status_code == 200
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 1.5
            while c.get("/v2/health/ready").status_code != 503:
                assert time.monotonic() < deadline, "readiness did not fail after SIGTERM"
                time.sleep(0.05)
            assert c.get("/v2/models/booster/ready").status_code == 503
            # still inside the drain window: predictions keep working on the open connection
            assert c.post("/v1/models/booster:predict", json=row).status_code == 200
            assert 'modelops_serving_draining{model="booster"} 1.0' in c.get("/metrics").text
        assert proc.wait(timeout=30) == 0
        text = log.read_text()
        assert "draining" in text and "Traceback" not in text
    finally:
        stop(proc)
