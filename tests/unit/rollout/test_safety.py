"""Reliability review findings of the rollout, as the review reproduced them (issue 16): H1, H2, M1, M3."""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from modelops.adapters.prometheus import Prometheus
from modelops.decide import analysis
from modelops.decide.analysis import Check, Sample
from modelops.decide.finite import finite, strict_json
from modelops.decide.kserve_status import isvc_state
from modelops.decide.rollout import (
    ANN_ABORT,
    ANN_ACCEPT_ARTIFACT,
    IsvcState,
    ModelRef,
    Observed,
    Resolution,
    tick,
)
from modelops.desired.inference_service import Defaults, inference_service

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
V1 = ModelRef("s3://models/fraud/1", "1", "run1", "champion")
V2 = ModelRef("s3://models/fraud/2", "2", "run2", "challenger")
INF = math.inf
LATENCY = {"name": "latency-p99", "query": "q", "thresholdRange": {"max": 0.05}, "baseline": {"maxRatio": 1.5}}


def md_spec(metrics: list[dict[str, Any]] | None = None, **rollout: Any) -> dict[str, Any]:
    return {"model": {"name": "fraud", "alias": "champion"}, "serving": {"runtime": "modelops"},
            "rollout": {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}],
                        "analysis": {"interval": "30s", "failureLimit": 0,
                                     "metrics": copy.deepcopy(metrics if metrics is not None else [LATENCY])},
                        **rollout}}


def ready(canary: str | None = None) -> IsvcState:
    """`canary`: the storage URI of the canary in the InferenceService's spec."""
    return IsvcState(ready=True, settled=True, canary_ready=True, canary_uri=canary)


def obs(tracked: ModelRef | None = V1, candidate: ModelRef | None = None, isvc: IsvcState | None = None,
        checks: list[Check] | None = None, ann: dict[str, str] | None = None, **kw: Any) -> Observed:
    return Observed(1, Resolution(tracked, candidate), isvc if isvc is not None else ready(), checks=checks,
                    annotations=ann or {}, **kw)


def progressing(spec: dict[str, Any]) -> dict[str, Any]:
    """Stable v1, canary v2 at step 0 (Progressing)."""
    st = tick(spec, {}, obs(), T0).status
    st = tick(spec, st, obs(candidate=V2), T0).status
    assert st["rollout"]["state"] == "Progressing"
    st.pop("pendingActions", None)
    return st


# ---------------------------------------------------------------------------------------------- H1
def test_inf_canary_above_max_is_rolled_back_and_status_is_valid_json() -> None:
    """The review's reproduction: a canary p99 above the top bucket (+Inf) against max 0.05 and maxRatio 1.5."""
    spec = md_spec()
    st = progressing(spec)
    checks = analysis.evaluate_all(spec["rollout"]["analysis"]["metrics"],
                                   {("latency-p99", "canary"): Sample(INF), ("latency-p99", "stable"): Sample(0.01)})
    assert [c.result for c in checks] == ["Fail"] and "inf" in checks[0].message
    d = tick(spec, st, obs(candidate=V2, checks=checks), T0 + timedelta(seconds=31))
    assert d.status["rollout"]["state"] == "RollingBack"
    assert "RolledBack" in [e.reason for e in d.events]
    body = strict_json({"status": d.status})  # raises on Infinity, as the API server refuses it
    assert json.loads(body)["status"]["rollout"]["lastChecks"][0]["result"] == "Fail"
    assert "value" not in d.status["rollout"]["lastChecks"][0]


def test_prometheus_plus_inf_reaches_the_analysis_as_inf() -> None:
    body = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "+Inf"]}]}}
    prom = Prometheus("http://prom", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body)))
    sample = prom.query("histogram_quantile(0.99, ...)")
    assert sample.value == INF
    assert analysis.evaluate(LATENCY, sample, Sample(0.01)).result == "Fail"


@pytest.mark.parametrize(("metric", "canary", "stable"), [
    ({"name": "m", "query": "q", "baseline": {"maxRatio": 1.5}}, INF, INF),  # ratio NaN
    ({"name": "m", "query": "q", "baseline": {"maxRatio": 1.5}}, 0.01, INF),  # stable not finite
    ({"name": "m", "query": "q", "baseline": {"minRatio": 0.5}}, INF, 0.01),  # ratio +Inf within the bound
    ({"name": "m", "query": "q", "thresholdRange": {"min": 0.99}}, INF, None),  # +Inf with only a min
    ({"name": "m", "query": "q", "thresholdRange": {"max": 0.05}}, -INF, None),  # -Inf with only a max
    ({"name": "m", "query": "q"}, INF, None),
])
def test_non_finite_never_passes(metric: dict[str, Any], canary: float, stable: float | None) -> None:
    check = analysis.evaluate(metric, Sample(canary), None if stable is None else Sample(stable))
    assert check.result == "Inconclusive", check
    json.dumps(check.as_status(), allow_nan=False)


def test_minus_inf_below_min_fails() -> None:
    check = analysis.evaluate({"name": "m", "query": "q", "thresholdRange": {"min": 0.99}}, Sample(-INF), None)
    assert check.result == "Fail"


def test_finite_drops_every_non_finite_number() -> None:
    out = finite({"a": INF, "b": [1.0, math.nan, {"c": -INF, "d": 2}], "e": "x"})
    assert out == {"b": [1.0, {"d": 2}], "e": "x"}
    with pytest.raises(ValueError):
        strict_json({"a": math.nan})


# ---------------------------------------------------------------------------------------------- H2
def test_changed_artifact_of_the_serving_version_is_held_with_a_warning() -> None:
    """Stable v4 at s3://models/fraud/4; the registry now resolves v4 to s3://attacker/model.tar.gz."""
    spec = md_spec(approval={"required": True})
    v4 = ModelRef("s3://models/fraud/4", "4", "run4", "champion")
    evil = ModelRef("s3://attacker/model.tar.gz", "4", "run4", "champion")
    st = tick(spec, {}, obs(tracked=v4), T0).status
    d = tick(spec, st, obs(tracked=evil), T0 + timedelta(seconds=30))
    assert d.status["stable"]["storageUri"] == "s3://models/fraud/4"
    assert d.plan is not None and d.plan.stable.storage_uri == "s3://models/fraud/4"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "ArtifactChanged")]
    cond = next(c for c in d.status["conditions"] if c["type"] == "Progressing")
    assert cond["reason"] == "ArtifactChangeHeld" and ANN_ACCEPT_ARTIFACT in cond["message"]
    manifest = inference_service(name="fraud", namespace="ns", uid="u", spec=spec, plan=d.plan, mode="Knative",
                                 defaults=Defaults("img", "http://drift"))
    env = manifest["spec"]["predictor"]["containers"][0]["env"]
    assert {"name": "STORAGE_URI", "value": "s3://models/fraud/4"} in env
    # the next tick does not repeat the Event; an accepting annotation follows the new location
    d2 = tick(spec, d.status, obs(tracked=evil), T0 + timedelta(seconds=60))
    assert d2.events == [] and d2.status["stable"]["storageUri"] == "s3://models/fraud/4"
    d3 = tick(spec, d2.status, obs(tracked=evil, ann={ANN_ACCEPT_ARTIFACT: evil.storage_uri}),
              T0 + timedelta(seconds=90))
    assert d3.status["stable"]["storageUri"] == evil.storage_uri and "artifactHold" not in d3.status


def test_changed_canary_artifact_restarts_the_rollout() -> None:
    spec = md_spec()
    st = progressing(spec)
    st["rollout"].update({"step": 1, "weight": 50})
    moved = ModelRef("s3://elsewhere/2", "2", "run2", "challenger")
    d = tick(spec, st, obs(candidate=moved), T0 + timedelta(seconds=5))
    assert d.status["rollout"]["step"] == 0 and d.status["rollout"]["weight"] == 10
    assert d.status["canary"]["storageUri"] == "s3://elsewhere/2"
    assert ("Warning", "ArtifactChanged") in [(e.type, e.reason) for e in d.events]


def test_storage_uri_outside_the_allow_list_is_not_served() -> None:
    spec = md_spec()
    allowed = ("s3://models/",)
    st = tick(spec, {}, obs(allowed_storage_uris=allowed), T0).status
    bad = ModelRef("http://evil/model", "2", "run2", "challenger")
    d = tick(spec, st, obs(candidate=bad, allowed_storage_uris=allowed), T0 + timedelta(seconds=1))
    assert "rollout" not in d.status and d.plan is not None and d.plan.stable.storage_uri == V1.storage_uri
    cond = next(c for c in d.status["conditions"] if c["type"] == "ModelResolved")
    assert cond["reason"] == "StorageUriNotAllowed" and "http://evil/model" in cond["message"]
    assert [e.reason for e in d.events] == ["StorageUriNotAllowed"]
    first = tick(spec, {}, obs(tracked=replace_uri(V1, "file:///etc"), allowed_storage_uris=allowed), T0)
    assert first.plan is None and first.status["phase"] == "Pending"


def replace_uri(ref: ModelRef, uri: str) -> ModelRef:
    return ModelRef(uri, ref.version, ref.run_id, ref.alias)


# ---------------------------------------------------------------------------------------------- M1
def test_leftover_abort_annotation_starts_no_rollout_and_tags_nothing() -> None:
    spec = md_spec(steps=[{"weight": 10, "pause": "1m"}], analysis={"metrics": []})
    st = tick(spec, {}, obs(ann={ANN_ABORT: "true"}), T0).status
    for i, version in enumerate(("5", "6")):
        cand = ModelRef(f"s3://models/fraud/{version}", version, "r", "challenger")
        d = tick(spec, st, obs(candidate=cand, ann={ANN_ABORT: "true"}), T0 + timedelta(seconds=10 * (i + 1)))
        assert "rollout" not in d.status and not d.actions, d.status
        assert next(c for c in d.status["conditions"] if c["type"] == "Progressing")["reason"] == "AbortRequested"
        assert "lastRejected" not in d.status
        st = d.status
    # removing the annotation lets the candidate roll out
    d = tick(spec, st, obs(candidate=V2), T0 + timedelta(seconds=60))
    assert d.status["rollout"]["state"] == "Progressing"


# ---------------------------------------------------------------------------------------------- M3
def _standard_isvc_without_canary() -> dict[str, Any]:
    return {"metadata": {"name": "fraud", "generation": 3, "ownerReferences": [{"uid": "u", "kind": "M", "name": "f"}],
                         "labels": {"modelops.dev/stable-version": "1"}},
            "spec": {"predictor": {"name": "v1"}},
            "status": {"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True"}]}}


def test_standard_isvc_without_canary_is_not_a_ready_canary() -> None:
    state = isvc_state(_standard_isvc_without_canary(), "u", "Standard")
    assert state is not None and not state.canary_ready and state.canary_uri == ""


@pytest.mark.parametrize("isvc", ["stale-standard", "none"])
def test_canary_that_never_served_is_not_promoted(isvc: str) -> None:
    spec = md_spec(metrics=[], steps=[{"weight": 10, "pause": "1m"}])
    observed = isvc_state(_standard_isvc_without_canary(), "u", "Standard") if isvc == "stale-standard" else None
    st = tick(spec, {}, obs(), T0).status
    st = tick(spec, st, Observed(1, Resolution(V1, V2), observed, mode="Standard"), T0).status
    assert st["rollout"]["state"] == "Progressing"
    d = tick(spec, st, Observed(1, Resolution(V1, V2), observed, mode="Standard"), T0 + timedelta(minutes=2))
    assert d.status["stable"]["version"] == "1" and d.status["rollout"]["state"] == "Progressing"
    assert next(c for c in d.status["conditions"] if c["type"] == "Progressing")["reason"] == "CanaryNotReady"
    assert not [a for a in d.actions if a["kind"] == "SetAlias"]


def test_canary_reported_by_the_applied_manifest_advances() -> None:
    spec = md_spec(metrics=[], steps=[{"weight": 10, "pause": "1m"}])
    st = tick(spec, {}, obs(), T0).status
    st = tick(spec, st, obs(candidate=V2), T0).status
    d = tick(spec, st, obs(candidate=V2, isvc=ready(canary=V2.storage_uri)), T0 + timedelta(minutes=2))
    assert d.status["stable"]["version"] == "2"


def test_canary_not_ready_past_the_progress_deadline_is_rolled_back() -> None:
    spec = md_spec(metrics=[], steps=[{"weight": 10, "pause": "1m"}], progressDeadline="5m")
    st = tick(spec, {}, obs(), T0).status
    st = tick(spec, st, obs(candidate=V2), T0).status
    not_ready = IsvcState(ready=True, settled=True, canary_ready=False, canary_uri=V2.storage_uri)
    st = tick(spec, st, obs(candidate=V2, isvc=not_ready), T0 + timedelta(minutes=1)).status
    assert st["rollout"]["state"] == "Progressing"
    d = tick(spec, st, obs(candidate=V2, isvc=not_ready), T0 + timedelta(minutes=7))
    assert d.status["rollout"]["state"] == "RollingBack"
    assert d.status["rollout"]["reason"] == "ProgressDeadlineExceeded"
    assert d.status["stable"]["version"] == "1"


# ---------------------------------------------------------------------------------------------- L9
def test_count_metric_at_zero_canary_traffic_is_not_a_pass() -> None:
    errors = {"name": "errors", "query": "sum(increase(errors{side='{{side}}'}[1m]))", "thresholdRange": {"max": 1},
              "minSamples": {"query": "sum(increase(requests{side='{{side}}'}[1m]))", "min": 100}}
    ctx = {"canary": {"side": "canary"}, "stable": {"side": "stable"}}
    qs = analysis.queries([errors], ctx)  # type: ignore[arg-type]
    assert [(q.metric, q.side) for q in qs] == [("errors", "canary"), ("errors/minSamples", "canary")]
    assert "requests{side='canary'}" in qs[1].promql
    zero = analysis.evaluate_all([errors], {("errors", "canary"): Sample(0.0), ("errors/minSamples", "canary"): Sample(0.0)})
    assert zero[0].result == "Inconclusive" and "minSamples" in zero[0].message
    enough = analysis.evaluate_all([errors], {("errors", "canary"): Sample(0.0),
                                              ("errors/minSamples", "canary"): Sample(500.0)})
    assert enough[0].result == "Pass"
    failed = analysis.evaluate_all([errors], {("errors", "canary"): Sample(0.0),
                                              ("errors/minSamples", "canary"): Sample(error="down")})
    assert failed[0].result == "Error"


def test_the_digest_travels_to_the_predictor_that_verifies_it() -> None:
    """H3 chain: the registry tag -> status -> MODELOPS_MODEL_SHA256 on the predictor (stable and canary)."""
    spec = md_spec(metrics=[])
    v1 = ModelRef("s3://models/fraud/1", "1", "r1", "champion", digest="1" * 64)
    v2 = ModelRef("s3://models/fraud/2", "2", "r2", "challenger", digest="2" * 64)
    st = tick(spec, {}, obs(tracked=v1), T0).status
    assert st["stable"]["sha256"] == "1" * 64
    d = tick(spec, st, obs(tracked=v1, candidate=v2), T0)
    assert d.plan is not None
    m = inference_service(name="fraud", namespace="ns", uid="u", spec=spec, plan=d.plan, mode="Standard",
                          defaults=Defaults("img", "http://drift/events", "secret"))
    envs = [m["spec"]["predictor"]["containers"][0]["env"], m["spec"]["canary"][0]["predictor"]["containers"][0]["env"]]
    assert [next(e["value"] for e in env if e["name"] == "MODELOPS_MODEL_SHA256") for env in envs] == ["1" * 64,
                                                                                                         "2" * 64]
    url = m["spec"]["predictor"]["logger"]["url"]
    assert url.startswith("http://drift/events/ns/ns/") and len(url.rsplit("/", 1)[1]) == 64


def test_a_digest_first_seen_for_the_served_uri_is_adopted_without_a_hold() -> None:
    spec = md_spec(metrics=[])
    st = tick(spec, {}, obs(tracked=V1), T0).status  # status written before digests existed
    d = tick(spec, st, obs(tracked=ModelRef(V1.storage_uri, "1", "run1", "champion", digest="f" * 64)), T0)
    assert d.status["stable"]["sha256"] == "f" * 64 and "artifactHold" not in d.status and d.events == []
    changed = ModelRef(V1.storage_uri, "1", "run1", "champion", digest="e" * 64)  # same URI, other files
    d2 = tick(spec, d.status, obs(tracked=changed), T0 + timedelta(seconds=5))
    assert d2.status["stable"]["sha256"] == "f" * 64 and [e.reason for e in d2.events] == ["ArtifactChanged"]
