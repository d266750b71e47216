"""Issue 19: drift exporter shards as real processes, resharded 3 -> 4 through the shards file.

The URLs are the operator's (modelops.desired.drift_shards + the namespace-bound logger URL); each model's
series must come from exactly one shard before and after the reshard, a model that did not move keeps its
window, and a moved one loses only its window (the documented refill: it starts again on its new shard).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from modelops.desired.drift_shards import exporter_url, moved
from modelops.formats.drift_url import logger_url, shard_of
from tests.integration.drift.conftest import (
    TOKEN,
    ExporterProcess,
    kserve_headers,
    make_frame,
    metrics_text,
    post,
    sample_value,
    send_v1,
    windows_by_shard,
)

pytestmark = pytest.mark.integration

NS = "team"
MODELS = [f"churn-{i}" for i in range(10)]


def windows(shards: list[ExporterProcess]) -> dict[str, list[tuple[int, float]]]:
    return windows_by_shard([shard.url for shard in shards], NS, MODELS)


def test_reshard_three_to_four_moves_only_the_new_shards_models(
        start_exporter: Callable[..., ExporterProcess], model_dir: Path, tmp_path: Path) -> None:
    shards_file = tmp_path / "shards"
    shards_file.write_text("3")
    shards = [start_exporter("--reference", str(model_dir), "--shard-id", str(i), "--shards-file", str(shards_file),
                             "--max-models-per-namespace", "20", "--join-timeout", "2", "--min-rows", "20")
              for i in range(4)]  # shard 3 is up before it owns anything, as a scaled-up StatefulSet pod

    def url(model: str, n: int) -> str:
        shard = int(exporter_url("{shard}", n, NS, model))
        return logger_url(shards[shard].url + "/events", TOKEN, NS)

    rng = np.random.default_rng(3)
    for m in MODELS:
        send_v1(url(m, 3), m, make_frame(rng, 30))
    before = windows(shards)
    assert {m: [(shard_of(NS, m, 3), 30.0)] for m in MODELS} == before  # each model on exactly one shard

    # a sender with a stale URL is refused and counted, not double counted
    wrong = next(i for i in range(3) if i != shard_of(NS, MODELS[0], 3))
    status, answer = post(logger_url(shards[wrong].url + "/events", TOKEN, NS), {"instances": [[1, 2, 3, 4, "basic",
                          "north"]]}, kserve_headers("x", "request", MODELS[0]), auth=False)
    assert status == 421 and answer["reason"] == "misdirected"
    assert sample_value(metrics_text(shards[wrong].url), "modelops_drift_events_rejected_total",
                        reason="misdirected") == 1

    shards_file.write_text("4")
    move = {m for _, m in moved([(NS, m) for m in MODELS], 3, 4)}
    assert move and len(move) < len(MODELS)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = windows(shards)
        if all(not after[m] for m in move):
            break
        time.sleep(1)
    assert after == {m: [] if m in move else [(shard_of(NS, m, 3), 30.0)] for m in MODELS}

    for m in MODELS:  # the operator has rewritten the loggers: events go to the new owners
        send_v1(url(m, 4), m, make_frame(rng, 10))
    final = windows(shards)
    assert final == {m: [(shard_of(NS, m, 4), 10.0 if m in move else 40.0)] for m in MODELS}
    assert all(shard_of(NS, m, 4) == 3 for m in move)
