"""Built-in analysis metrics by name (issue 14): resolved to PromQL over the one label convention, rendered
like a custom query, the same names in the CRD's enum, and the samples use them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops.decide import analysis
from modelops.decide.builtin_metrics import NAMES, UnknownBuiltin, builtin_query, query_of
from modelops.decide.spec_checks import model_deployment_problems

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]
CONTEXT: dict[analysis.Side, dict[str, str]] = {
    side: {"namespace": "ml", "name": "churn", "side": side, "revision": f"v{v}", "version": v, "interval": "30s"}
    for side, v in (("canary", "3"), ("stable", "2"))}


@pytest.mark.parametrize("name", NAMES)
def test_every_builtin_selects_one_side_of_one_inferenceservice_by_the_label_convention(name: str) -> None:
    """A side is its version: KServe names the stable and the canary predictor alike, so no Pod label says which
    side a Pod is (there is no `side` label on model-server series)."""
    q = analysis.render(builtin_query(name), CONTEXT["canary"])
    assert "{{" not in q and "}}" not in q
    assert q.count('namespace="ml",isvc="churn",version="3"') >= 1 and "side" not in q
    assert "[30s]" in q
    assert "modelops_serving_request" in q  # the model server's own series, which the REST fast path updates
    assert q.count("(") == q.count(")")


def test_success_rate_counts_5xx_and_422_as_failed_and_latency_reads_the_histogram() -> None:
    """A 422 is a well-formed request the version's input schema refuses: a canary that refuses what its clients
    send fails success-rate (Flagger's non-5xx would pass it); 400/413 (malformed) count as answered."""
    want = ('(sum(rate(modelops_serving_requests_total{namespace="{{namespace}}",isvc="{{name}}",version="{{version}}",'
            'status!~"5..|422"}[{{interval}}])) or vector(0)) / sum(rate(modelops_serving_requests_total{namespace='
            '"{{namespace}}",isvc="{{name}}",version="{{version}}"}[{{interval}}]))')
    assert builtin_query("success-rate") == want
    failed = re.compile(r"^(?:5..|422)$")  # Prometheus anchors label regexes
    assert [s for s in ("200", "400", "413", "422", "500", "503") if failed.match(s)] == ["422", "500", "503"]
    assert builtin_query("latency-p99").startswith("histogram_quantile(0.99, sum by (le) (rate("
                                                   "modelops_serving_request_duration_seconds_bucket{")
    assert 'status=~"5..|422"' in builtin_query("error-rate")


def test_a_builtin_with_a_baseline_is_queried_on_both_sides_and_a_query_still_wins() -> None:
    metrics = [{"name": "lat", "builtin": "latency-p99", "thresholdRange": {"max": 0.1}, "baseline": {"maxRatio": 2}},
               {"name": "custom", "query": 'up{side="{{side}}"}', "thresholdRange": {"min": 1}}]
    qs = analysis.queries(metrics, CONTEXT)
    # a latency quantile's binomial test (the default) reads each side's request-duration buckets too
    assert [(q.metric, q.side, q.kind) for q in qs] == [
        ("lat", "canary", "value"), ("lat", "stable", "value"), ("lat/buckets", "canary", "buckets"),
        ("lat/buckets", "stable", "buckets"), ("custom", "canary", "value")]
    assert 'version="2"' in qs[1].promql and 'version="3"' in qs[0].promql
    # counted (now minus a window ago), not increase(), which extrapolates both counts
    canary_buckets = 'modelops_serving_request_duration_seconds_bucket{namespace="ml",isvc="churn",version="3"}'
    assert qs[2].promql == f"sum by (le) (({canary_buckets} - {canary_buckets} offset 30s) >= 0 or {canary_buckets})"
    assert 'version="2"' in qs[3].promql
    assert qs[4].promql == 'up{side="canary"}'
    assert query_of({"name": "x", "query": "q", "builtin": "error-rate"}) == "q"


def test_unknown_or_doubled_builtins_are_spec_problems_naming_the_field() -> None:
    with pytest.raises(UnknownBuiltin, match="known: success-rate"):
        builtin_query("request-success-rate")
    spec: dict[str, Any] = {"rollout": {"analysis": {"metrics": [
        {"name": "a", "builtin": "p99", "thresholdRange": {"max": 1}},
        {"name": "b", "builtin": "error-rate", "query": "up", "thresholdRange": {"max": 1}},
        {"name": "c", "thresholdRange": {"max": 1}}]}}}
    problems = model_deployment_problems(spec)
    assert any(p.startswith("spec.rollout.analysis.metrics[a].builtin: unknown built-in") for p in problems)
    assert any("metrics[b]: set query or builtin, not both" in p for p in problems)
    assert any("metrics[c]" in p and "neither query nor builtin" in p for p in problems)
    ok = {"rollout": {"analysis": {"metrics": [{"name": "a", "builtin": "success-rate",
                                                "thresholdRange": {"min": 0.99}}]}}}
    assert model_deployment_problems(ok) == []


def _metric_item_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "manifests" / "crds" / "modelops.dev_modeldeployments.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    item: dict[str, Any] = spec["properties"]["rollout"]["properties"]["analysis"]["properties"]["metrics"]["items"]
    return item


def test_the_crd_offers_exactly_the_builtins_the_operator_knows_and_needs_query_or_builtin() -> None:
    item = _metric_item_schema()
    assert tuple(item["properties"]["builtin"]["enum"]) == NAMES
    assert item["required"] == ["name"]
    rules = [r["rule"] for r in item["x-kubernetes-validations"]]
    # exactly one of query, builtin and quality (issue 17's quality metrics share the item)
    assert "[has(self.query), has(self.builtin), has(self.quality)].filter(x, x).size() == 1" in rules
    desc = item["properties"]["builtin"]["description"]
    assert all(label in desc for label in ("namespace", "isvc", "version", "422"))


def test_the_canary_samples_use_builtin_metrics() -> None:
    docs = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "manifests" / "samples").glob("modeldeployment-*"))]
    metrics = [m for d in docs for m in ((d["spec"].get("rollout") or {}).get("analysis") or {}).get("metrics") or []]
    builtins = {m["builtin"] for m in metrics if "builtin" in m}
    assert {"success-rate", "latency-p99", "error-rate"} <= builtins
    # every sample metric over the model server's series resolves and renders with the label convention (quality
    # metrics read the drift exporter's series instead: tests/unit/rollout/test_quality_analysis.py)
    for m in (m for m in metrics if "quality" not in m):
        q = analysis.render(query_of(m), CONTEXT["canary"])
        assert 'isvc="churn",version="3"' in q and "side" not in q, m["name"]


def test_a_quality_metric_is_a_valid_spec_and_cannot_carry_a_query_too() -> None:
    """Merging issues 14 and 17: the spec check that resolves built-ins leaves quality metrics to decide/quality."""
    quality = {"name": "auc", "quality": {"metric": "auc", "maxDrop": 0.02}}
    ok = {"rollout": {"analysis": {"metrics": [quality]}}}
    assert model_deployment_problems(ok) == []
    both = {"rollout": {"analysis": {"metrics": [{**quality, "builtin": "success-rate"}]}}}
    assert any("a quality metric has no query or builtin" in p for p in model_deployment_problems(both))


def test_a_side_renders_what_it_serves_as_its_version() -> None:
    """{{version}} is what the operator gives the model server as MODELOPS_MODEL_VERSION: the registry version,
    or the serving name of a plain storage URI (so two URI-served sides still differ)."""
    from modelops.api.types import ModelRef, serving_name

    assert analysis.served_version({"version": "7", "storageUri": "pvc://x/a"}) == "7"
    uri = "s3://bucket/models/churn/2026-11"
    assert analysis.served_version({"storageUri": uri}) == serving_name(ModelRef(storage_uri=uri))
    assert analysis.served_version({"storageUri": uri}).startswith("u")
    assert analysis.served_version({"storageUri": uri}) != analysis.served_version({"storageUri": uri + "b"})
    assert analysis.served_version(None) == "" and analysis.served_version({}) == ""
