"""Quality analysis metrics (issue 17): PromQL built from the exporter's quality series, minLabels, maxDrop."""

from __future__ import annotations

import math
from typing import Any

import pytest

from modelops.api.types import Sample
from modelops.decide import analysis
from modelops.decide import quality as q
from modelops.formats.quality import QUALITY_HIGHER_IS_BETTER

pytestmark = pytest.mark.unit

CONTEXT: dict[analysis.Side, dict[str, str]] = {
    side: {"namespace": "team-a", "name": "churn", "side": side, "revision": "", "version": v, "interval": "30s"}
    for side, v in (("canary", "7"), ("stable", "6"))}


def metric(**quality: Any) -> dict[str, Any]:
    extra = quality.pop("extra", {})
    return {"name": "auc", "quality": {"metric": "auc", "source": "realised", **quality}, **extra}


def test_queries_read_the_contract_series_of_each_version() -> None:
    qs = analysis.queries([metric(minLabels=200, maxDrop=0.02)], CONTEXT)
    got = {(x.metric, x.side): x.promql for x in qs}
    assert got == {
        ("auc", "canary"): 'max(modelops_quality_realised{model_namespace="team-a",model="churn",version="7",'
                           'metric="auc"})',
        ("auc", "stable"): 'max(modelops_quality_realised{model_namespace="team-a",model="churn",version="6",'
                           'metric="auc"})',
        ("auc/joinedLabels", "canary"): 'max(modelops_quality_joined_labels{model_namespace="team-a",'
                                        'model="churn",version="7"})',
        ("auc/joinedLabels", "stable"): 'max(modelops_quality_joined_labels{model_namespace="team-a",'
                                        'model="churn",version="6"})',
    }


def test_estimated_absolute_check_queries_only_the_canary_estimate() -> None:
    m = {"name": "acc", "quality": {"metric": "accuracy", "source": "estimated"}, "thresholdRange": {"min": 0.8}}
    qs = analysis.queries([m], CONTEXT)
    assert [(x.metric, x.side, x.promql) for x in qs] == [
        ("acc", "canary", 'max(modelops_quality_estimated{model_namespace="team-a",model="churn",version="7",'
                          'metric="accuracy"})')]


def samples(canary: float | None, stable: float | None = None, labels: tuple[float | None, float | None] = (500, 500),
            error: str = "") -> dict[tuple[str, analysis.Side], Sample]:
    out: dict[tuple[str, analysis.Side], Sample] = {}
    for side, v in (("canary", canary), ("stable", stable)):
        out[("auc", side)] = Sample(error=error) if error else Sample(v)  # type: ignore[index]
    for side, n in zip(("canary", "stable"), labels, strict=True):
        out[("auc/joinedLabels", side)] = Sample(n)  # type: ignore[index]
    return out


@pytest.mark.parametrize(("m", "s", "result", "words"), [
    # planted drop: canary 0.05 below stable, maxDrop 0.02 -> Fail naming both
    (metric(minLabels=200, maxDrop=0.02), samples(0.84, 0.89), "Fail", ["0.05", "worse than stable 0.89"]),
    (metric(minLabels=200, maxDrop=0.02), samples(0.88, 0.89), "Pass", ["vs stable 0.89"]),
    # better than stable is a pass whatever the margin
    (metric(maxDrop=0.0), samples(0.95, 0.89), "Pass", []),
    # too few labels on the canary: Inconclusive even though the value would fail
    (metric(minLabels=200, maxDrop=0.02), samples(0.5, 0.89, (199, 500)), "Inconclusive",
     ["199 joined labels < minLabels 200"]),
    # the stable side must have enough labels too for a comparison
    (metric(minLabels=200, maxDrop=0.02), samples(0.88, 0.89, (500, 10)), "Inconclusive", ["stable version has 10"]),
    # no joined-labels series at all: Inconclusive, never a pass
    (metric(minLabels=200, maxDrop=0.02), samples(0.88, 0.89, (None, 500)), "Inconclusive", ["has no joined"]),
    # default minLabels is 100
    (metric(maxDrop=0.02), samples(0.88, 0.89, (99, 500)), "Inconclusive", ["minLabels 100"]),
    # enough labels but the exporter publishes no realised value yet
    (metric(maxDrop=0.02), samples(None, 0.89), "Inconclusive", ["no realised auc for the canary"]),
    (metric(maxDrop=0.02), samples(0.88, None), "Inconclusive", ["stable version to compare"]),
    (metric(maxDrop=0.02), samples(float("nan"), 0.9), "Inconclusive", []),
    (metric(maxDrop=0.02), samples(float("inf"), 0.9), "Inconclusive", ["never a pass"]),
    (metric(maxDrop=0.02), samples(0.9, 0.9, error="connection refused"), "Error", ["refused"]),
    # absolute bound only
    (metric(extra={"thresholdRange": {"min": 0.85}}), samples(0.84), "Fail", ["< min 0.85"]),
    (metric(extra={"thresholdRange": {"min": 0.85}}), samples(0.86), "Pass", []),
    # both: the absolute bound fails first
    (metric(maxDrop=0.5, extra={"thresholdRange": {"min": 0.85}}), samples(0.6, 0.9), "Fail", ["< min"]),
])
def test_quality_verdicts(m: dict[str, Any], s: dict[tuple[str, analysis.Side], Sample], result: str,
                          words: list[str]) -> None:
    (check,) = analysis.evaluate_all([m], s)
    assert check.result == result, check
    for w in words:
        assert w in check.message, check.message
    status = check.as_status()
    assert all(math.isfinite(v) for k, v in status.items() if k in ("value", "baseline"))


def test_lower_is_better_metrics_fail_when_the_canary_is_higher() -> None:
    m = {"name": "rmse", "quality": {"metric": "rmse", "maxDrop": 0.1, "minLabels": 10}}
    base = {("rmse/joinedLabels", "canary"): Sample(50), ("rmse/joinedLabels", "stable"): Sample(50)}
    worse = analysis.evaluate_quality(m, {**base, ("rmse", "canary"): Sample(1.3), ("rmse", "stable"): Sample(1.1)})
    better = analysis.evaluate_quality(m, {**base, ("rmse", "canary"): Sample(0.7), ("rmse", "stable"): Sample(1.1)})
    assert worse.result == "Fail" and "0.2 worse" in worse.message
    assert better.result == "Pass"


def test_estimated_quality_needs_no_labels() -> None:
    m = {"name": "acc", "quality": {"metric": "accuracy", "source": "estimated", "maxDrop": 0.02}}
    (check,) = analysis.evaluate_all([m], {("acc", "canary"): Sample(0.80), ("acc", "stable"): Sample(0.85)})
    assert check.result == "Fail" and "estimated accuracy" in check.message


def test_a_quality_metric_beside_a_query_metric_fails_the_analysis() -> None:
    metrics = [{"name": "err", "query": "q", "thresholdRange": {"max": 0.01}}, metric(minLabels=100, maxDrop=0.02)]
    s = {**samples(0.80, 0.89), ("err", "canary"): Sample(0.0)}
    checks = analysis.evaluate_all(metrics, s)
    assert [c.result for c in checks] == ["Pass", "Fail"] and analysis.overall(checks) == "Fail"


def test_direction_table_and_helpers() -> None:
    assert {k for k, v in QUALITY_HIGHER_IS_BETTER.items() if v} == {"auc", "accuracy", "f1"}
    assert q.worse_by("auc", 0.9, 0.85) == pytest.approx(0.05)
    assert q.worse_by("mae", 1.0, 1.2) == pytest.approx(0.2)
    assert q.worse_than("log_loss", 0.7, 0.6) and not q.worse_than("auc", 0.7, 0.6)
    with pytest.raises(ValueError, match="unknown quality metric"):
        q.higher_is_better("r2")
    assert q.quote('a"b\\c') == '"a\\"b\\\\c"'
    assert q.busiest_version_promql("ns", "churn") == (
        'topk(1, max by (version) (modelops_quality_window_rows{model_namespace="ns",model="churn"}))')
