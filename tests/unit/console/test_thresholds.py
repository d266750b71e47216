"""What the console shows as each analysis metric's bounds (the model page and the approval evidence)."""

from __future__ import annotations

from typing import Any

import pytest

from modelops.console.views import metric_thresholds

pytestmark = pytest.mark.unit


def deployment(*metrics: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"rollout": {"analysis": {"metrics": list(metrics)}}}}


def test_the_samples_bounds_say_that_the_latency_quantile_is_tested_not_compared() -> None:
    shown = metric_thresholds(deployment(
        {"name": "success-rate", "builtin": "success-rate", "thresholdRange": {"min": 0.99}},
        {"name": "latency-p99", "builtin": "latency-p99", "thresholdRange": {"max": 0.05},
         "baseline": {"maxRatio": 1.5}}))
    assert shown["success-rate"] == ">= 0.99"
    assert shown["latency-p99"].startswith("<= 0.05 and <= 1.5 x stable (upper bounds tested")
    assert "more than 1% of the canary's requests are slower" in shown["latency-p99"]
    assert "alpha 0.05" in shown["latency-p99"]


def test_a_point_comparison_and_a_custom_query_show_their_bounds_alone() -> None:
    shown = metric_thresholds(deployment(
        {"name": "p90", "builtin": "latency-p90", "thresholdRange": {"max": 0.1},
         "quantileTest": {"method": "estimate"}},
        {"name": "custom", "query": "x", "baseline": {"minRatio": 0.9, "maxRatio": 1.2}},
        {"name": "p50", "builtin": "latency-p50", "thresholdRange": {"min": 0.001},
         "quantileTest": {"alpha": 0.01}}))
    assert shown == {"p90": "<= 0.1", "custom": ">= 0.9 x stable and <= 1.2 x stable", "p50": ">= 0.001"}
