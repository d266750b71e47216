"""The model server's latency histogram can resolve what the canary analysis and the SLOs ask of it."""

from __future__ import annotations

from itertools import pairwise

import pytest

from modelops.decide.slo import LATENCY_BUCKETS as SLO_THRESHOLDS
from modelops.serving.metrics import LATENCY, LATENCY_BUCKETS

pytestmark = pytest.mark.unit


def test_every_slo_threshold_is_a_bucket_bound() -> None:
    # the burn-rate rules count good requests with le="<threshold>": it must be a bound of the histogram
    assert set(SLO_THRESHOLDS) <= set(LATENCY_BUCKETS)


def test_adjacent_bounds_are_close_enough_for_a_1_5x_baseline_check() -> None:
    """histogram_quantile places a quantile linearly inside its bucket: the estimate can be off by up to the
    bucket's ratio. The sample's latency-p99 compares canary and stable within maxRatio 1.5, so adjacent
    bounds must be well under 1.5x apart (they were 2-2.5x: one request either side of 25 ms doubled a p99)."""
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))
    ratios = [b / a for a, b in pairwise(LATENCY_BUCKETS)]
    assert max(ratios) <= 1.3, max(ratios)
    # from the fast path's ~100 µs to the slow requests' seconds
    assert LATENCY_BUCKETS[0] <= 0.0001 and LATENCY_BUCKETS[-1] >= 5.0


def test_the_histogram_uses_them() -> None:
    child = LATENCY.labels(model="m", version="1", protocol="v2", status="200")
    child.observe(0.021)
    bounds = [float(s.labels["le"]) for s in LATENCY.collect()[0].samples
              if s.name.endswith("_bucket") and s.labels.get("model") == "m"]
    assert bounds[:-1] == list(LATENCY_BUCKETS) and bounds[-1] == float("inf")
