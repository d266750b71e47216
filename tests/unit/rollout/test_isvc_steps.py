"""Issue 13, found on the real node: a rollout step must not restart the predictors.

KServe v0.20 copies an InferenceService's labels (all) and annotations (all but its disallow list) into every
predictor's Deployment pod template (Standard; components/predictor.go buildObjectMeta, deployment_reconciler.go
createRawDefaultDeployment) or Knative revision template (Knative). So between two rollout steps whose only
difference is the weight, everything KServe propagates from the manifest must be identical, and where modelops'
own HTTPRoute splits a Standard canary, the whole manifest. `propagated` models what KServe builds a predictor's
pod template from (the InferenceService's metadata, filtered as KServe does, and that predictor's spec).
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from modelops.api.types import ModelRef, ServingPlan
from modelops.decide.kserve_status import applied_record, apply_needed, isvc_state
from modelops.desired.inference_service import (
    LEGACY_HASH_ANNOTATION,
    Defaults,
    carry_legacy_metadata,
    frozen_canary_percent,
    inference_service,
    manifest_hash,
    predictor_name,
)

pytestmark = pytest.mark.unit

S = ModelRef("s3://models/churn/1", "1", "r1")
C = ModelRef("s3://models/churn/2", "2", "r2")
D = Defaults("modelops/model-server:dev", "http://drift-{shard}:8080/v1/events", "secret", 2)
#: KServe v0.20's constants.ServiceAnnotationDisallowedList (not propagated) and RevisionTemplateLabelDisallowedList
DISALLOWED_ANNOTATIONS = {"autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale",
                          "internal.serving.kserve.io/storage-initializer-sourceuri",
                          "kubectl.kubernetes.io/last-applied-configuration", "serving.kserve.io/model-format"}
SERVINGS: dict[str, dict[str, Any]] = {
    "modelops": {"minReplicas": 1, "maxReplicas": 3, "labels": {"team": "ds"}, "annotations": {"a": "b"},
                 "env": [{"name": "X", "value": "1"}]},
    "kserve-runtime": {"runtime": "kserve", "modelFormat": "sklearn", "protocolVersion": "v2", "minReplicas": 2},
}
STEPS = (10, 25, 50, 80, 100)


def spec_of(serving: str, mode: str) -> dict[str, Any]:
    return {"model": {"name": "churn"}, "serving": {**SERVINGS[serving], "deploymentMode": mode},
            "logger": {"mode": "all"}}


def build(plan: ServingPlan, mode: str, serving: str = "modelops", **kw: Any) -> dict[str, Any]:
    return inference_service(name="churn", namespace="ns", uid="u1", spec=spec_of(serving, mode), plan=plan,
                             mode=mode, defaults=D, **kw)  # type: ignore[arg-type]


def propagated(manifest: dict[str, Any], predictor: dict[str, Any]) -> str:
    """What KServe derives one predictor's pod template from: the InferenceService's labels, its annotations but
    the disallowed ones, and that predictor's own spec (traffic fields are not part of it)."""
    meta = manifest["metadata"]
    pred = {k: v for k, v in predictor.items() if k != "canaryTrafficPercent"}
    return json.dumps({"labels": meta.get("labels") or {},
                       "annotations": {k: v for k, v in (meta.get("annotations") or {}).items()
                                       if k not in DISALLOWED_ANNOTATIONS},
                       "predictor": pred}, sort_keys=True)


def predictors(manifest: dict[str, Any]) -> dict[str, str]:
    spec = manifest["spec"]
    out = {spec["predictor"].get("name", "predictor"): propagated(manifest, spec["predictor"])}
    for c in spec.get("canary") or []:
        out[c["predictor"]["name"]] = propagated(manifest, c["predictor"])
    return out


@pytest.mark.parametrize("serving", list(SERVINGS))
def test_standard_steps_with_modelops_route_leave_the_manifest_byte_identical(serving: str) -> None:
    first = build(ServingPlan(S, C, STEPS[0]), "Standard", serving, modelops_route=True)
    created = first["spec"]["canary"][0]["trafficPercent"]
    assert created == STEPS[0]
    for weight in STEPS[1:]:
        # what the handler does: the live canary keeps its trafficPercent, modelops' route carries the weight
        frozen = frozen_canary_percent(first, predictor_name(C))
        step = build(ServingPlan(S, C, weight), "Standard", serving, modelops_route=True,
                     canary_traffic_percent=frozen)
        assert json.dumps(step, sort_keys=True) == json.dumps(first, sort_keys=True), weight
        assert manifest_hash(step) == manifest_hash(first)


@pytest.mark.parametrize("serving", list(SERVINGS))
@pytest.mark.parametrize("mode", ["Standard", "Knative"])
def test_steps_where_kserve_splits_change_only_the_traffic_field(serving: str, mode: str) -> None:
    """KServe's own split (Knative always; a KServe that weights its route): the weight is in the spec, and it is
    the only thing that changes; no predictor's pod template input changes."""
    manifests = [build(ServingPlan(S, C, w), mode, serving) for w in STEPS]
    for a, b in itertools.pairwise(manifests):
        assert a["metadata"] == b["metadata"]
        assert predictors(a) == predictors(b)
        strip = copy.deepcopy(b)
        if mode == "Knative":
            strip["spec"]["predictor"]["canaryTrafficPercent"] = a["spec"]["predictor"]["canaryTrafficPercent"]
        else:
            strip["spec"]["canary"][0]["trafficPercent"] = a["spec"]["canary"][0]["trafficPercent"]
        assert strip == a


@pytest.mark.parametrize("serving", list(SERVINGS))
def test_standard_canary_start_and_promotion_do_not_touch_the_other_predictors_template(serving: str) -> None:
    """Before the fix the stable-/canary-version labels changed at the canary's start (stable Pods restarted) and
    at promotion (the promoted Pods restarted)."""
    stable_only = build(ServingPlan(S), "Standard", serving, modelops_route=True)
    with_canary = build(ServingPlan(S, C, 10), "Standard", serving, modelops_route=True)
    promoted = build(ServingPlan(C), "Standard", serving, modelops_route=True)
    rolled_back = build(ServingPlan(S), "Standard", serving, modelops_route=True)
    assert stable_only["metadata"] == with_canary["metadata"] == promoted["metadata"] == rolled_back["metadata"]
    assert predictors(with_canary)["v1"] == predictors(stable_only)["v1"] == predictors(rolled_back)["v1"]
    # the promoted predictor's pod template inputs: the canary's, but the fields KServe's canary builder replaces
    canary_pred = with_canary["spec"]["canary"][0]["predictor"]
    promoted_pred = promoted["spec"]["predictor"]
    for key in ("containers", "annotations", "logger", "securityContext"):
        assert promoted_pred.get(key) == canary_pred.get(key), key
    # the model container is `kserve-container` either way (KServe's CRD wants the name on a canary's model only)
    assert {k: v for k, v in (canary_pred.get("model") or {}).items() if k != "name"} == (promoted_pred.get("model")
                                                                                          or {})


def test_knative_metadata_is_the_same_for_every_plan() -> None:
    plans = [ServingPlan(S), ServingPlan(S, C, 10), ServingPlan(S, C, 60), ServingPlan(C), ServingPlan(S, None, 0, True)]
    metas = [build(p, "Knative")["metadata"] for p in plans]
    assert all(m == metas[0] for m in metas)


# ------------------------------------------------------------------------------------ reading it back
def live(manifest: dict[str, Any], generation: int = 4, uid: str = "isvc-uid") -> dict[str, Any]:
    """The InferenceService as the API server returns it after an apply (KServe's defaulter left our fields)."""
    obj = copy.deepcopy(manifest)
    obj["metadata"].update({"uid": uid, "generation": generation})
    obj["status"] = {"observedGeneration": generation, "conditions": [{"type": "Ready", "status": "True"}],
                     "canaryStatuses": [{"name": c["predictor"]["name"], "ready": True, "trafficPercent": 10}
                                        for c in obj["spec"].get("canary") or []]}
    obj["metadata"]["ownerReferences"][0]["uid"] = "u1"
    return obj


@pytest.mark.parametrize("serving", list(SERVINGS))
@pytest.mark.parametrize("mode", ["Standard", "Knative"])
def test_the_applied_canary_is_read_from_the_spec(serving: str, mode: str) -> None:
    state = isvc_state(live(build(ServingPlan(S, C, 30), mode, serving)), "u1", mode)
    assert state is not None and state.canary_uri == C.storage_uri
    for plan in (ServingPlan(S), ServingPlan(S, None, 0, True)):
        state = isvc_state(live(build(plan, mode, serving)), "u1", mode)
        assert state is not None and state.canary_uri == ""
    # a Knative step at 100% still carries the canary
    if mode == "Knative":
        state = isvc_state(live(build(ServingPlan(S, C, 100), mode, serving)), "u1", mode)
        assert state is not None and state.canary_uri == C.storage_uri


def test_an_old_canary_label_is_not_read() -> None:
    """An InferenceService written before the fix carries modelops.dev/canary-version; the spec is what counts."""
    old = live(build(ServingPlan(S, C, 30), "Standard"))
    old["metadata"]["labels"]["modelops.dev/canary-version"] = "9"
    state = isvc_state(old, "u1", "Standard")
    assert state is not None and state.canary_uri == C.storage_uri and state.canary_ready


def test_apply_needed_follows_the_status_record() -> None:
    m = build(ServingPlan(S, C, 10), "Standard", modelops_route=True)
    obj = live(m)
    h = manifest_hash(m)
    assert apply_needed(None, None, h) and apply_needed(None, applied_record(obj, h), h)
    rec = applied_record(obj, h)
    assert rec == {"hash": h, "uid": "isvc-uid", "generation": 4}
    assert not apply_needed(obj, rec, h)
    assert apply_needed(obj, rec, "another")
    # someone edited the spec (a new generation), or the object was re-created: applied again
    assert apply_needed(live(m, generation=5), rec, h)
    assert apply_needed(live(m, uid="other"), rec, h)
    # no record and no old annotation: applied (the record is written after)
    assert apply_needed(obj, None, h)


def _old_operator_manifest(plan: ServingPlan, mode: str = "Standard") -> dict[str, Any]:
    """What the operator before the fix applied: today's manifest plus its per-step bookkeeping."""
    m = build(plan, mode, modelops_route=mode == "Standard")
    m["metadata"]["labels"]["modelops.dev/stable-version"] = plan.stable.version
    if plan.canary is not None:
        m["metadata"]["labels"]["modelops.dev/canary-version"] = plan.canary.version
    m["metadata"]["annotations"][LEGACY_HASH_ANNOTATION] = manifest_hash(m)
    return m


@pytest.mark.parametrize("mode", ["Standard", "Knative"])
def test_upgrade_mid_rollout_rewrites_nothing_and_keeps_the_old_metadata(mode: str) -> None:
    """An InferenceService written by the operator before the fix, mid-rollout at 25%: the new operator computes
    the same manifest (old metadata carried, the canary's trafficPercent kept), so nothing is applied, and later
    steps keep the pod templates unchanged; the old keys go with the first apply that changes a predictor."""
    old = live(_old_operator_manifest(ServingPlan(S, C, 25), mode))
    for weight in (25, 50) if mode == "Standard" else (25,):
        frozen = frozen_canary_percent(old, predictor_name(C)) if mode == "Standard" else None
        m = carry_legacy_metadata(build(ServingPlan(S, C, weight), mode, modelops_route=mode == "Standard",
                                        canary_traffic_percent=frozen), old)
        assert m["metadata"]["labels"]["modelops.dev/canary-version"] == "2"
        assert m["metadata"] == {k: v for k, v in old["metadata"].items() if k not in ("uid", "generation")}
        assert not apply_needed(old, None, manifest_hash(m)), weight
    # Standard: promotion replaces the stable predictor anyway, the old keys are dropped then. Knative: promotion
    # keeps the revision (same predictor, canaryTrafficPercent removed), so they stay until the next new version
    promoted = carry_legacy_metadata(build(ServingPlan(C), mode, modelops_route=mode == "Standard"), old)
    if mode == "Knative":
        assert promoted["metadata"]["labels"]["modelops.dev/canary-version"] == "2"
        promoted = carry_legacy_metadata(build(ServingPlan(C, ModelRef("s3://models/churn/3", "3"), 10), mode), old)
    assert not {"modelops.dev/stable-version", "modelops.dev/canary-version", LEGACY_HASH_ANNOTATION} & {
        *promoted["metadata"]["labels"], *promoted["metadata"]["annotations"]}
    assert apply_needed(old, None, manifest_hash(promoted))


def test_upgrade_of_an_isvc_that_is_behind_applies() -> None:
    """The old annotation names another manifest (the old operator had not applied the latest plan): applied."""
    old = live(_old_operator_manifest(ServingPlan(S)))
    m = carry_legacy_metadata(build(ServingPlan(S, C, 10), "Standard", modelops_route=True), old)
    assert apply_needed(old, None, manifest_hash(m))
    assert "modelops.dev/stable-version" not in m["metadata"]["labels"]


def test_frozen_canary_percent_only_for_the_same_canary() -> None:
    obj = live(build(ServingPlan(S, C, 10), "Standard", modelops_route=True))
    assert frozen_canary_percent(obj, "v2") == 10
    assert frozen_canary_percent(obj, "v3") is None and frozen_canary_percent(None, "v2") is None


# ------------------------------------------------------------------------------ KServe v0.20's status, as it is
def _kserve_v020(manifest: dict[str, Any], *, generation: int, deployment_generation: int, stable: str,
                 canaries: list[tuple[str, bool]] | None) -> dict[str, Any]:
    """An InferenceService as KServe v0.20 reports a Standard one (seen with the real manager, issue 13):
    status.observedGeneration is the stable predictor Deployment's, status.address its Service."""
    obj = live(manifest, generation=generation)
    obj["status"] = {"observedGeneration": deployment_generation,
                     "address": {"url": f"http://churn-{stable}-predictor.ns.svc.cluster.local"},
                     "conditions": [{"type": "Ready", "status": "True"}],
                     **({"canaryStatuses": [{"name": n, "ready": r, "trafficPercent": 10} for n, r in canaries]}
                        if canaries else {})}
    return obj


def test_standard_readiness_does_not_rely_on_kserves_observed_generation() -> None:
    """KServe v0.20 copies observedGeneration from the stable Deployment: adding a canary (which no longer touches
    the stable Deployment) leaves it behind the InferenceService's generation for good."""
    canary = build(ServingPlan(S, C, 10), "Standard", modelops_route=True)
    ready = isvc_state(_kserve_v020(canary, generation=2, deployment_generation=1, stable="v1",
                                    canaries=[("v2", True)]), "u1", "Standard")
    assert ready is not None and ready.canary_ready and ready.canary_uri == C.storage_uri
    not_yet = isvc_state(_kserve_v020(canary, generation=2, deployment_generation=1, stable="v1",
                                      canaries=[("v2", False)]), "u1", "Standard")
    stale = isvc_state(_kserve_v020(canary, generation=2, deployment_generation=1, stable="v1", canaries=None),
                       "u1", "Standard")
    assert not_yet is not None and not not_yet.canary_ready and stale is not None and not stale.canary_ready
    # promoted: settled once KServe reconciled the new spec (no canary status, address on v2's Service)
    promoted = build(ServingPlan(C), "Standard", modelops_route=True)
    before = isvc_state(_kserve_v020(promoted, generation=3, deployment_generation=1, stable="v1",
                                     canaries=[("v2", True)]), "u1", "Standard")
    after = isvc_state(_kserve_v020(promoted, generation=3, deployment_generation=1, stable="v2", canaries=None),
                       "u1", "Standard")
    assert before is not None and not before.settled and after is not None and after.settled
    # rolled back: the canary's status gone, the same stable predictor
    rolled_back = build(ServingPlan(S), "Standard", modelops_route=True)
    pending = isvc_state(_kserve_v020(rolled_back, generation=3, deployment_generation=1, stable="v1",
                                      canaries=[("v2", True)]), "u1", "Standard")
    done = isvc_state(_kserve_v020(rolled_back, generation=3, deployment_generation=1, stable="v1", canaries=None),
                      "u1", "Standard")
    assert pending is not None and not pending.settled and done is not None and done.settled
