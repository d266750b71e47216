"""The console's model page reads the real drift exporter's window (issue 18 on the node: it answered 401, because
the console sent no token, and it asked without the namespace, which the exporter keeps apart)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from modelops.console.sources import DriftExporter, SourceError
from tests.integration.drift.conftest import TOKEN, make_frame, send_v1

pytestmark = pytest.mark.integration


def test_the_console_reads_its_namespaces_window_with_the_token(exporter) -> None:
    send_v1(f"{exporter.url}/", "console-page", make_frame(np.random.default_rng(5), 400), rows_per_event=20)

    async def read(token: str, namespace: str) -> dict | str:
        client = DriftExporter(exporter.url, 5.0, token)
        try:
            return await client.drift("console-page", namespace)
        except SourceError as exc:
            return str(exc)
        finally:
            await client.http.aclose()

    got = asyncio.run(read(TOKEN, "default"))  # the kserve_headers events say Ce-Namespace: default
    assert isinstance(got, dict) and got["namespace"] == "default" and got["rows"] == 400, got
    assert asyncio.run(read("", "default")) == "drift exporter: HTTP 401"
    assert asyncio.run(read("wrong-token", "default")) == "drift exporter: HTTP 401"
    assert asyncio.run(read(TOKEN, "another-team")) == {}  # nothing of this model there: no other namespace's window
