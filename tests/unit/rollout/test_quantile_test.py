"""A built-in latency quantile judged by a binomial test on the canary's request counts (issue 14: the sample's
`latency-p99` with `max: 0.05` and `maxRatio: 1.5` failed healthy canaries on one slow request among ~120).

The math (decide/quantile_stats.py) is checked against scipy, which only the tests may import (the operator's
pure layers may not: pyproject's import-linter contracts); the verdicts are checked on bucket vectors built from
latencies with the model server's own bucket bounds, their point estimates computed as Prometheus would.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy import special, stats

from modelops.api.types import Buckets, Sample
from modelops.decide import analysis
from modelops.decide.builtin_metrics import quantile_test_of
from modelops.decide.quantile_stats import (
    betainc,
    binomial_tail,
    histogram_quantile,
    quantile_in_inf_bucket,
    slower_than,
    tail_test,
)
from modelops.decide.spec_checks import model_deployment_problems

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]

# the model server's bounds (operator/modelops/serving/metrics.py: R10 from 100 µs to 5 s), and +Inf
_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
BOUNDS = (*(round(m * 10.0 ** e, 10) for e in range(-4, 1) for m in _R10 if m * 10.0 ** e <= 5.0), math.inf)
P99 = {"name": "latency-p99", "builtin": "latency-p99", "thresholdRange": {"max": 0.05}, "baseline": {"maxRatio": 1.5}}
CONTEXT: dict[analysis.Side, dict[str, str]] = {
    side: {"namespace": "ml", "name": "churn", "side": side, "revision": f"v{v}", "version": v, "interval": "30s"}
    for side, v in (("canary", "3"), ("stable", "2"))}


def buckets(latencies: list[float]) -> tuple[tuple[float, float], ...]:
    """The cumulative `le` counts of these request latencies (what increase() of the buckets reads)."""
    return tuple((b, float(sum(1 for x in latencies if x <= b))) for b in BOUNDS)


def spread(n: int, lo: float, hi: float) -> list[float]:
    return [lo + (hi - lo) * (i + 0.5) / n for i in range(n)]


#: 360 stable requests (75% of a 25% canary step's traffic over 30 s), 4-14 ms; p99 ~ 10.5 ms
STABLE = [*spread(356, 0.004, 0.010), 0.011, 0.012, 0.013, 0.014]
#: the same version as a 120-request canary with two slow requests (30, 45 ms: a busy 2-core node)
HEALTHY = [*spread(118, 0.004, 0.010), 0.030, 0.045]


def judge(metric: dict[str, Any], canary: list[float] | None, stable: list[float] | None = STABLE,
          **extra: Any) -> analysis.Check:
    """evaluate_all over the bucket vectors of these latencies, the point estimates as Prometheus computes them
    (histogram_quantile of rate() and of increase() over one window are the same number)."""
    q = {"latency-p50": 0.5, "latency-p90": 0.9, "latency-p99": 0.99}[metric["builtin"]]
    name = metric["name"]
    samples: dict[tuple[str, analysis.Side], Sample] = {}
    vectors: dict[tuple[str, analysis.Side], Buckets] = {}
    for side, lat in (("canary", canary), ("stable", stable)):
        if lat is not None:
            samples[(name, side)] = Sample(histogram_quantile(q, buckets(lat)))
            vectors[(analysis.buckets_key(name), side)] = Buckets(buckets(lat))
        else:
            samples[(name, side)], vectors[(analysis.buckets_key(name), side)] = Sample(), Buckets()
    samples.update(extra.pop("samples", {}))
    vectors.update(extra.pop("vectors", {}))
    (check,) = analysis.evaluate_all([metric], samples, vectors)
    return check


# ---- the math, against scipy -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("k", "n", "p"), [(2, 120, 0.01), (4, 120, 0.01), (36, 120, 0.01), (0, 120, 0.01),
                                           (1, 1, 0.01), (120, 120, 0.01), (60, 120, 0.5), (13, 120, 0.1),
                                           (25, 1000, 0.01), (1100, 100_000, 0.01), (7, 30, 0.5)])
def test_the_binomial_tail_is_scipys_at_integer_counts(k: int, n: int, p: float) -> None:
    assert binomial_tail(k, n, p) == pytest.approx(float(stats.binom.sf(k - 1, n, p)), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("a", "b", "x"), [(2.4, 118.6, 0.01), (0.37, 120.63, 0.01), (35.5, 85.5, 0.01),
                                           (0.5, 0.5, 0.3), (1e-3, 50.0, 0.1), (250.5, 9750.5, 0.01),
                                           (4000.2, 4000.8, 0.5), (3.3, 1.2, 0.9), (1e5, 1e6, 0.0909)])
def test_the_incomplete_beta_is_scipys_at_non_integer_arguments(a: float, b: float, x: float) -> None:
    """increase() extrapolates, so k and n are not integers: the tail is I_{1-q}(k, n - k + 1)."""
    assert betainc(a, b, x) == pytest.approx(float(special.betainc(a, b, x)), rel=1e-8, abs=1e-300)


def test_the_tail_is_continuous_in_k_and_n_and_monotonic() -> None:
    assert binomial_tail(2.37, 119.6, 0.01) == pytest.approx(float(special.betainc(2.37, 119.6 - 2.37 + 1, 0.01)))
    tails = [binomial_tail(k / 4, 120.0, 0.01) for k in range(0, 40)]
    assert all(a >= b for a, b in itertools.pairwise(tails))
    assert binomial_tail(0.0, 120, 0.01) == 1.0 and binomial_tail(-1e-9, 120, 0.01) == 1.0
    with pytest.raises(ValueError):
        betainc(0.0, 1.0, 0.5)


def test_histogram_quantile_is_prometheus() -> None:
    counts = ((0.01, 50.0), (0.02, 90.0), (0.05, 99.0), (math.inf, 100.0))
    assert histogram_quantile(0.5, counts) == pytest.approx(0.01)
    assert histogram_quantile(0.7, counts) == pytest.approx(0.015)  # halfway through (0.01, 0.02]
    assert histogram_quantile(0.25, counts) == pytest.approx(0.005)  # the lowest bucket starts at 0
    assert histogram_quantile(0.995, counts) == 0.05  # in +Inf: the highest finite bound, as Prometheus answers
    assert quantile_in_inf_bucket(0.995, counts) and not quantile_in_inf_bucket(0.99, counts)
    assert math.isnan(histogram_quantile(0.5, ((0.01, 0.0), (math.inf, 0.0))))  # no observations
    assert math.isnan(histogram_quantile(0.5, ((0.01, 3.0),)))  # no +Inf bucket
    # increase() of buckets scraped at slightly different instants can dip: forced monotonic, as Prometheus does
    assert histogram_quantile(0.7, ((0.01, 50.0), (0.02, 90.0), (0.05, 89.5), (math.inf, 100.0))) == \
        pytest.approx(histogram_quantile(0.7, ((0.01, 50.0), (0.02, 90.0), (0.05, 90.0), (math.inf, 100.0))))


def test_k_is_interpolated_inside_the_bucket_that_holds_the_bound() -> None:
    counts = ((0.01, 50.0), (0.02, 90.0), (0.05, 99.0), (math.inf, 100.0))
    assert slower_than(0.015, counts).k == pytest.approx(30.0)  # type: ignore[union-attr]  # 100 - (50 + 40/2)
    assert slower_than(0.02, counts).k == pytest.approx(10.0)  # type: ignore[union-attr]  # a bound: exact
    assert slower_than(0.005, counts).k == pytest.approx(75.0)  # type: ignore[union-attr]  # from 0
    assert slower_than(0.0, counts).k == pytest.approx(100.0)  # type: ignore[union-attr]
    top = slower_than(0.5, counts)  # above the highest finite bound: every +Inf request counts (conservative)
    assert top is not None and top.k == pytest.approx(1.0) and top.above_top
    assert slower_than(0.05, counts).above_top is False  # type: ignore[union-attr]
    assert slower_than(0.01, ((0.01, 3.0),)) is None  # not a histogram without +Inf
    test = tail_test(0.5, 0.99, 0.05, counts)
    assert test is not None and "every request in +Inf counted as slower" in test.describe("max")
    assert tail_test(0.05, 0.99, 0.05, ((0.01, 0.0), (math.inf, 0.0))) is None  # no requests: nothing to test


# ---- verdicts -------------------------------------------------------------------------------------------------

def test_a_healthy_canary_with_two_slow_requests_passes_where_the_point_comparison_fails_it() -> None:
    """The e2e failure: 2 of 120 canary requests above 1.5 x stable p99 make its p99 estimate 2.9x the stable's;
    the binomial test sees 2 slow where 1.2 are expected at p99 (p = 0.338) and passes it."""
    check = judge(P99, HEALTHY)
    assert check.result == "Pass", check
    assert check.value == pytest.approx(0.0302) and check.baseline == pytest.approx(0.0105)  # estimates reported
    assert "2 of 120 canary requests slower than maxRatio 1.5 x stable p99 0.0105 = 0.01575 s" in check.message
    assert "p=0.338 >= alpha 0.05" in check.message and "expected at most 1.2" in check.message
    assert "0 of 120 canary requests slower than max 0.05 s" in check.message
    point = judge({**P99, "quantileTest": {"method": "estimate"}}, HEALTHY)
    assert point.result == "Fail" and "canary/stable 2.87" in point.message and "> maxRatio 1.5" in point.message


def test_a_canary_three_times_slower_across_its_distribution_fails() -> None:
    check = judge(P99, [3 * x for x in spread(120, 0.004, 0.010)])
    assert check.result == "Fail", check
    assert "slower than maxRatio 1.5 x stable p99" in check.message and "< alpha 0.05" in check.message
    assert check.value is not None and check.baseline == pytest.approx(0.0105)


def test_a_canary_with_30_percent_of_its_requests_above_the_max_fails() -> None:
    bad = spread(84, 0.004, 0.010) + [0.08] * 36
    for metric in (P99, {"name": "latency-p99", "builtin": "latency-p99", "thresholdRange": {"max": 0.05}}):
        check = judge(metric, bad)
        assert check.result == "Fail", check
        assert "36 of 120 canary requests slower than max 0.05 s" in check.message and "p=2.39e-42" in check.message


def test_alpha_sets_how_strong_the_evidence_must_be() -> None:
    """4 of 120 above the bound at p99: p = 0.033, a Fail at alpha 0.05 and a Pass at 0.01."""
    four = [*spread(116, 0.004, 0.010), 0.030, 0.035, 0.040, 0.045]
    assert judge(P99, four).result == "Fail"
    check = judge({**P99, "quantileTest": {"alpha": 0.01}}, four)
    assert check.result == "Pass" and "p=0.033 >= alpha 0.01" in check.message


def test_p50_and_p90_are_tested_at_their_own_quantile() -> None:
    """At p50 half the requests may be slower than the bound: 55% of 120 is no evidence, 75% is."""
    p50 = {"name": "p50", "builtin": "latency-p50", "thresholdRange": {"max": 0.01}}
    assert judge(p50, spread(54, 0.004, 0.009) + spread(66, 0.011, 0.02), None).result == "Pass"
    assert judge(p50, spread(30, 0.004, 0.009) + spread(90, 0.011, 0.02), None).result == "Fail"
    p90 = {"name": "p90", "builtin": "latency-p90", "thresholdRange": {"max": 0.01}}
    assert quantile_test_of(p90) == (0.9, 0.05)
    assert "at q=0.9" in judge(p90, spread(120, 0.004, 0.009), None).message


def test_no_canary_buckets_is_inconclusive() -> None:
    check = judge(P99, HEALTHY, vectors={("latency-p99/buckets", "canary"): Buckets()})
    assert check.result == "Inconclusive" and "no canary requests" in check.message
    zero = ((0.01, 0.0), (math.inf, 0.0))
    assert judge(P99, HEALTHY, vectors={("latency-p99/buckets", "canary"): Buckets(zero)}).result == "Inconclusive"
    assert judge(P99, None).result == "Inconclusive"  # no value either


def test_a_stable_side_without_data_under_a_baseline_is_inconclusive() -> None:
    check = judge(P99, HEALTHY, None)
    assert check.result == "Inconclusive" and "stable" in check.message
    # the stable's estimate arrived but its buckets did not: the maxRatio bound is unknown
    check = judge(P99, HEALTHY, vectors={("latency-p99/buckets", "stable"): Buckets()})
    assert check.result == "Inconclusive" and "maxRatio bound is undefined" in check.message
    # the stable's p99 lies above the highest finite bucket: maxRatio x it is unknown, never a pass
    slow_stable = [10.0] * 10 + [0.01] * 10
    check = judge(P99, HEALTHY, slow_stable)
    assert check.result == "Inconclusive" and "above the highest finite bucket" in check.message


def test_prometheus_errors_are_errors() -> None:
    failed = Buckets(reason="PrometheusUnreachable", message="refused", error="refused")
    for side in ("canary", "stable"):
        check = judge(P99, HEALTHY, vectors={("latency-p99/buckets", side): failed})
        assert check.result == "Error" and f"{side} bucket query failed: refused" in check.message
    check = judge(P99, HEALTHY, samples={("latency-p99", "canary"): Sample(None, "QueryFailed", "x", error="bad")})
    assert check.result == "Error"
    (missing,) = analysis.evaluate_all([P99], {("latency-p99", "canary"): Sample(0.01),
                                               ("latency-p99", "stable"): Sample(0.01)})
    assert missing.result == "Error" and "not queried" in missing.message  # bucket vectors never passed


def test_a_non_finite_estimate_is_never_a_pass_and_min_and_min_ratio_stay_point_comparisons() -> None:
    inf = judge(P99, HEALTHY, samples={("latency-p99", "canary"): Sample(math.inf)})
    assert inf.result == "Inconclusive" and "never a pass" in inf.message
    low = judge({**P99, "thresholdRange": {"min": 0.05, "max": 0.5}}, HEALTHY)
    assert low.result == "Fail" and "< min 0.05" in low.message
    ratio = judge({**P99, "baseline": {"minRatio": 4, "maxRatio": 5}}, HEALTHY)
    assert ratio.result == "Fail" and "< minRatio 4" in ratio.message


def test_min_samples_still_applies() -> None:
    metric = {**P99, "minSamples": {"query": "count", "min": 100}}
    bad = spread(84, 0.004, 0.010) + [0.08] * 36
    check = judge(metric, bad, samples={("latency-p99/minSamples", "canary"): Sample(50.0)})
    assert check.result == "Inconclusive" and "minSamples" in check.message
    assert judge(metric, bad, samples={("latency-p99/minSamples", "canary"): Sample(120.0)}).result == "Fail"


def test_the_test_queries_the_buckets_only_of_the_sides_it_reads() -> None:
    def kinds(m: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [(q.metric, q.side, q.kind) for q in analysis.queries([m], CONTEXT)]

    buckets_of = [("latency-p99/buckets", "canary", "buckets"), ("latency-p99/buckets", "stable", "buckets")]
    assert kinds(P99)[2:] == buckets_of
    assert kinds({**P99, "baseline": {"minRatio": 0.5}})[2:] == buckets_of[:1]  # max only: the canary's
    assert kinds({**P99, "thresholdRange": {"min": 0.0}, "baseline": {"minRatio": 0.5}})[2:] == []  # no max tested
    assert kinds({**P99, "quantileTest": {"method": "estimate"}})[2:] == []
    custom = {"name": "q", "query": "histogram_quantile(0.99, x)", "thresholdRange": {"max": 1}}
    assert kinds(custom) == [("q", "canary", "value")] and quantile_test_of(custom) is None
    assert quantile_test_of({"name": "s", "builtin": "success-rate", "thresholdRange": {"min": 1}}) is None
    (q,) = [q for q in analysis.queries([P99], CONTEXT) if q.metric.endswith("/buckets") and q.side == "stable"]
    stable_buckets = 'modelops_serving_request_duration_seconds_bucket{namespace="ml",isvc="churn",version="2"}'
    assert q.promql == f"sum by (le) (({stable_buckets} - {stable_buckets} offset 30s) >= 0 or {stable_buckets})"


# ---- the spec: quantileTest -----------------------------------------------------------------------------------

def _problems(metric: dict[str, Any]) -> list[str]:
    return model_deployment_problems({"rollout": {"analysis": {"metrics": [metric]}}})


def test_binomial_on_a_custom_query_or_another_builtin_is_a_spec_problem_naming_the_field() -> None:
    custom = {"name": "lat", "query": "histogram_quantile(0.99, x)", "thresholdRange": {"max": 1},
              "quantileTest": {"method": "binomial"}}
    (problem,) = _problems(custom)
    assert problem.startswith("spec.rollout.analysis.metrics[lat].quantileTest.method: binomial")
    assert "latency-p50, latency-p90, latency-p99" in problem
    assert _problems({"name": "ok", "builtin": "success-rate", "thresholdRange": {"min": 1},
                      "quantileTest": {"method": "binomial"}})
    assert any(".quantileTest.alpha: applies to method binomial only" in p
               for p in _problems({**custom, "quantileTest": {"alpha": 0.01}}))
    assert any(".quantileTest.alpha: applies to method binomial only" in p
               for p in _problems({**P99, "quantileTest": {"method": "estimate", "alpha": 0.01}}))
    assert any("must be a number in (0, 0.5]" in p for p in _problems({**P99, "quantileTest": {"alpha": 0}}))
    for ok in ({**custom, "quantileTest": {"method": "estimate"}}, {**custom, "quantileTest": {}}, P99,
               {**P99, "quantileTest": {"method": "binomial", "alpha": 0.01}},
               {**P99, "quantileTest": {"method": "estimate"}}):
        assert _problems(ok) == [], ok


def _metric_item_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "manifests" / "crds" / "modelops.dev_modeldeployments.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    item: dict[str, Any] = spec["properties"]["rollout"]["properties"]["analysis"]["properties"]["metrics"]["items"]
    return item


def test_the_crd_documents_quantile_test_and_rejects_binomial_where_it_cannot_apply() -> None:
    item = _metric_item_schema()
    field = item["properties"]["quantileTest"]
    assert field["properties"]["method"]["enum"] == ["binomial", "estimate"]
    alpha = field["properties"]["alpha"]
    assert alpha["maximum"] == 0.5 and alpha["minimum"] == 0 and alpha["exclusiveMinimum"] is True
    for words in ("P(X >= k | n, 1-q) < alpha", "thresholdRange.max", "baseline.maxRatio", "+Inf",
                  "thresholdRange.min and baseline.minRatio"):
        assert words in " ".join(field["description"].split()), words
    rules = {r.get("fieldPath"): r for r in item["x-kubernetes-validations"]}
    method = rules[".quantileTest.method"]
    assert "self.builtin in ['latency-p50', 'latency-p90', 'latency-p99']" in method["rule"]
    assert "self.quantileTest.method == 'estimate'" in method["rule"]
    assert "quantileTest.method binomial applies to builtin latency-p50" in method["message"]
    assert "method binomial only" in rules[".quantileTest.alpha"]["message"]


def test_the_canary_sample_keeps_its_thresholds_and_gets_the_test_by_default() -> None:
    doc = yaml.safe_load((ROOT / "manifests" / "samples" / "modeldeployment-canary.yaml").read_text())
    (p99,) = [m for m in doc["spec"]["rollout"]["analysis"]["metrics"] if m.get("builtin") == "latency-p99"]
    assert p99["thresholdRange"] == {"max": 0.05} and p99["baseline"] == {"maxRatio": 1.5}
    assert quantile_test_of(p99) == (0.99, 0.05)
