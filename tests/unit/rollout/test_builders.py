"""The pure pieces around the tick: InferenceService builder, deployment modes, analysis verdicts, reading
KServe's status, and the adapters' parsing (driven through httpx.MockTransport, no network)."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from modelops.adapters.notify import Notifier, NotifyError, Webhook
from modelops.adapters.prometheus import Prometheus
from modelops.adapters.registry import MlflowRegistry, RegistryError
from modelops.api.times import format_duration, parse_duration
from modelops.decide import analysis
from modelops.decide.analysis import Sample
from modelops.decide.kserve_status import isvc_state
from modelops.decide.rollout import ModelRef, ServingPlan
from modelops.desired.inference_service import (
    Defaults,
    canary_support,
    cluster_default_mode,
    deployment_mode,
    inference_service,
    manifest_hash,
    normalize_mode,
)

pytestmark = pytest.mark.unit

S = ModelRef("s3://m/1", "1")
C = ModelRef("s3://m/2", "2")
D = Defaults("img:1", "http://drift/v1/events")
SPEC: dict[str, Any] = {"model": {"name": "churn"}, "serving": {"minReplicas": 1, "maxReplicas": 3,
                                                                 "scaleMetric": "rps", "scaleTarget": 5}}


def build(plan: ServingPlan, mode: str = "Knative", spec: dict[str, Any] = SPEC, **kw: Any) -> dict[str, Any]:
    return inference_service(name="churn", namespace="ns", uid="u1", spec=spec, plan=plan, mode=mode,  # type: ignore[arg-type]
                             defaults=D, **kw)


def env(pred: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pred["containers"][0]["env"]}


@pytest.mark.parametrize(("plan", "uri", "ctp"), [
    (ServingPlan(S), "s3://m/1", None),
    (ServingPlan(S, C, 30), "s3://m/2", 30),
    (ServingPlan(S, None, 0, pin_stable=True), "s3://m/1", 0),
])
def test_knative_canary_is_canary_traffic_percent(plan: ServingPlan, uri: str, ctp: int | None) -> None:
    pred = build(plan)["spec"]["predictor"]
    assert env(pred)["STORAGE_URI"] == uri and pred.get("canaryTrafficPercent") == ctp
    assert pred["containers"][0]["name"] == "kserve-container"
    assert pred["containers"][0]["args"] == ["--model-dir", "/mnt/models"]
    assert pred["containers"][0]["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    # KServe's agent sends the listed Pod annotation with every event: the exporter reads the version there
    assert pred["logger"] == {"mode": "all", "url": "http://drift/v1/events",
                              "metadataAnnotations": ["modelops.dev/model-version"]}
    assert pred["annotations"] == {"modelops.dev/model-version": env(pred)["MODELOPS_MODEL_VERSION"]}


def test_standard_canary_names_predictors_by_version_and_drops_autoscaling() -> None:
    m = build(ServingPlan(S, C, 30), "Standard")
    assert m["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert m["spec"]["predictor"]["name"] == "v1" and m["spec"]["predictor"]["maxReplicas"] == 3
    canary = m["spec"]["canary"][0]
    assert canary["trafficPercent"] == 30 and canary["predictor"]["name"] == "v2"
    assert not {"maxReplicas", "scaleMetric", "scaleTarget"} & set(canary["predictor"])
    promoted = build(ServingPlan(C), "Standard")
    assert promoted["spec"]["predictor"]["name"] == "v2" and "canary" not in promoted["spec"]
    assert promoted["spec"]["predictor"]["containers"] == canary["predictor"]["containers"]


def test_builtin_runtime_owner_labels_and_legacy_mode_names() -> None:
    spec = {**SPEC, "serving": {"runtime": "kserve", "modelFormat": "xgboost", "runtimeName": "rt",
                                "labels": {"team": "ds"}}, "logger": {"enabled": False}}
    m = build(ServingPlan(S), "Standard", spec, legacy_mode_names=True)
    model = m["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "xgboost"} and model["runtime"] == "rt" and model["storageUri"] == "s3://m/1"
    # KServe's validating webhook refuses `name` on the stable predictor's model; its CRD wants it on a canary's
    assert "name" not in model
    canary = build(ServingPlan(S, C, 20), "Standard", spec)["spec"]
    assert "name" not in canary["predictor"]["model"]
    assert canary["canary"][0]["predictor"]["model"]["name"] == "kserve-container"
    assert "logger" not in m["spec"]["predictor"]
    assert m["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert m["metadata"]["labels"]["team"] == "ds"
    # [issue 13] no version bookkeeping on InferenceService metadata: KServe copies it into the pod templates
    assert not {"modelops.dev/stable-version", "modelops.dev/canary-version", "modelops.dev/desired-hash"} & {
        *m["metadata"]["labels"], *m["metadata"]["annotations"]}
    ref = m["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "ModelDeployment" and ref["uid"] == "u1" and ref["controller"]
    assert manifest_hash(m) == manifest_hash(build(ServingPlan(S), "Standard", spec, legacy_mode_names=True))
    assert manifest_hash(m) != manifest_hash(build(ServingPlan(C), "Standard", spec, legacy_mode_names=True))


def test_modes() -> None:
    assert [normalize_mode(m) for m in ("Serverless", "Knative", "RawDeployment", "standard", "x")] == \
        ["Knative", "Knative", "Standard", "Standard", None]
    cfg = '{\n  # the default\n  "defaultDeploymentMode": "RawDeployment"\n}'
    assert cluster_default_mode(cfg) == "Standard" and cluster_default_mode("not json") is None
    assert deployment_mode({"serving": {"deploymentMode": "Serverless"}}, cfg) == "Knative"
    assert deployment_mode({}, cfg) == "Standard" and deployment_mode({}, None) == "Knative"
    assert canary_support("Standard", False)[0] is False and "kserve#5335" in canary_support("Standard", False)[1]
    assert canary_support("Standard", True) == (True, "") and canary_support("Knative", False) == (True, "")


def test_durations() -> None:
    assert parse_duration("1m30s", 0) == 90 and parse_duration("250ms", 0) == 0.25 and parse_duration("", 7) == 7
    with pytest.raises(ValueError):
        parse_duration("soon", 0)
    assert [format_duration(x) for x in (0.2, 30, 120, 7200, 90)] == ["1s", "30s", "2m", "2h", "90s"]


M = {"name": "lat", "query": 'x{ns="{{namespace}}",side="{{ side }}"}[{{interval}}]',
     "thresholdRange": {"max": 0.5}, "baseline": {"maxRatio": 2.0}}


@pytest.mark.parametrize(("canary", "stable", "result"), [
    (Sample(0.1), Sample(0.1), "Pass"),
    (Sample(0.6), Sample(0.5), "Fail"),          # over the threshold
    (Sample(0.3), Sample(0.1), "Fail"),          # ratio 3 > 2
    (Sample(), Sample(0.1), "Inconclusive"),     # no data never passes
    (Sample(math.nan), Sample(0.1), "Inconclusive"),
    (Sample(0.1), Sample(), "Inconclusive"),     # no baseline
    (Sample(0.1), Sample(0.0), "Inconclusive"),  # undefined ratio
    (Sample(0.0), Sample(0.0), "Pass"),
    (Sample(error="refused"), Sample(0.1), "Error"),
    (Sample(0.1), Sample(error="timeout"), "Error"),
])
def test_analysis_verdicts(canary: Sample, stable: Sample, result: str) -> None:
    assert analysis.evaluate(M, canary, stable).result == result


def test_queries_are_rendered_per_side_and_overall_ordering() -> None:
    ctx = {s: {"namespace": "ns", "name": "churn", "side": s, "revision": "r", "interval": "30s"}
           for s in ("canary", "stable")}
    qs = analysis.queries([M], ctx)  # type: ignore[arg-type]
    assert [(q.side, q.promql) for q in qs] == [("canary", 'x{ns="ns",side="canary"}[30s]'),
                                               ("stable", 'x{ns="ns",side="stable"}[30s]')]
    checks = [analysis.Check("a", "Pass"), analysis.Check("b", "Error"), analysis.Check("c", "Fail")]
    assert analysis.overall(checks) == "Fail" and analysis.overall(checks[:2]) == "Error"
    assert analysis.overall([analysis.Check("a", "Inconclusive"), checks[0]]) == "Inconclusive"


def _isvc(status: dict[str, Any], spec: dict[str, Any] | None = None, gen: int = 2) -> dict[str, Any]:
    return {"metadata": {"name": "churn", "generation": gen, "ownerReferences": [{"uid": "u1", "kind": "ModelDeployment"}]},
            "spec": spec or {"predictor": {"canaryTrafficPercent": 20}}, "status": status}


def test_reading_kserve_status() -> None:
    ready = [{"type": "Ready", "status": "True"}]
    knative = {"observedGeneration": 2, "conditions": ready, "url": "http://u",
               "components": {"predictor": {"latestCreatedRevision": "r2", "latestReadyRevision": "r2",
                                            "latestRolledoutRevision": "r1"}}}
    st = isvc_state(_isvc(knative), "u1", "Knative")
    assert st and st.canary_ready and st.settled and st.canary_revision == "r2" and st.stable_revision == "r1"
    behind = isvc_state(_isvc({**knative, "observedGeneration": 1}), "u1", "Knative")
    assert behind and not behind.canary_ready and not behind.settled
    foreign = isvc_state({**_isvc(knative), "metadata": {"name": "churn", "ownerReferences": []}}, "u1", "Knative")
    assert foreign and foreign.foreign
    std_spec = {"predictor": {"name": "v1"}, "canary": [{"trafficPercent": 10, "predictor": {"name": "v2"}}]}
    std = {"observedGeneration": 2, "conditions": ready, "canaryStatuses": [{"name": "v2", "ready": True,
                                                                           "trafficPercent": 10}]}
    st = isvc_state(_isvc(std, std_spec), "u1", "Standard")
    assert st and st.canary_ready and not st.settled and st.canary_revision == "v2"
    assert isvc_state(None, "u1", "Knative") is None


def _mock(handler: Any) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def test_registry_resolves_and_maps_artifact_locations() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("registered-models/alias"):
            if req.url.params["alias"] == "champion":
                return httpx.Response(200, json={"model_version": {"name": "m", "version": "3", "run_id": "r",
                                                                   "tags": [{"key": "k", "value": "v"}]}})
            return httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE",
                                             "message": "Registered model alias challenger not found."})
        if req.url.path.endswith("get-download-uri"):
            return httpx.Response(200, json={"artifact_uri": "mlflow-artifacts:/1/abc/artifacts/model"})
        return httpx.Response(500, text="boom")

    reg = MlflowRegistry("http://mlflow:5000/", transport=_mock(handler))
    mv = reg.get_alias("m", "champion")
    assert mv and mv.version == "3" and mv.tags == {"k": "v"}
    assert reg.get_alias("m", "challenger") is None
    assert reg.storage_uri(mv) == "http://mlflow:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model"
    reg.artifacts_destination = "s3://bucket/mlflow"
    assert reg.storage_uri(mv) == "s3://bucket/mlflow/1/abc/artifacts/model"
    assert reg.kserve_uri("gs://b/x") == "gs://b/x" and reg.kserve_uri("/data/m") == "file:///data/m"
    with pytest.raises(RegistryError) as err:
        reg.kserve_uri("dbfs:/x")
    assert err.value.reason == "UnsupportedArtifactUri"
    with pytest.raises(RegistryError):
        reg.get_version("m", "1")

    def down(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    with pytest.raises(RegistryError) as err:
        MlflowRegistry("http://mlflow:5000", transport=_mock(down)).get_alias("m", "champion")
    assert err.value.reason == "RegistryUnreachable"


def test_prometheus_answers_value_no_data_or_error() -> None:
    answers = {
        "one": {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "0.5"]}]}},
        "none": {"status": "success", "data": {"resultType": "vector", "result": []}},
        "two": {"status": "success", "data": {"resultType": "vector", "result": [{"value": [0, "1"]}] * 2}},
        "nan": {"status": "success", "data": {"resultType": "vector", "result": [{"value": [0, "NaN"]}]}},
        "bad": {"status": "error", "errorType": "bad_data", "error": "parse error"},
    }

    def handler(req: httpx.Request) -> httpx.Response:
        q = req.url.params["query"]
        if q == "down":
            raise httpx.ConnectError("refused", request=req)
        return httpx.Response(200 if q != "bad" else 400, json=answers[q])

    prom = Prometheus("http://p:9090", transport=_mock(handler))
    assert prom.query("one") == Sample(0.5)
    assert prom.query("none") == Sample()
    assert prom.query("two").error and prom.query("bad").error and prom.query("down").error
    nan = prom.query("nan")
    assert nan.value is not None and math.isnan(nan.value) and not nan.has_value


def test_notifier_json_and_slack() -> None:
    got: list[tuple[str, dict[str, Any]]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        got.append((str(req.url), json.loads(req.content)))
        return httpx.Response(500 if "fail" in str(req.url) else 200)

    n = Notifier(transport=_mock(handler))
    hooks = [Webhook("http://a/j"), Webhook("http://a/s", "slack", ("Promoted",)), Webhook("http://a/x", events=("X",))]
    assert n.send(hooks, "Promoted", "v2 promoted", {"kind": "ModelDeployment", "namespace": "ns", "name": "c"}) == 2
    assert got[0][1] == {"event": "Promoted", "message": "v2 promoted", "kind": "ModelDeployment", "namespace": "ns",
                         "name": "c"}
    assert got[1][1]["text"].startswith("*Promoted* ModelDeployment `ns/c`")
    with pytest.raises(NotifyError):
        n.send([Webhook("http://fail/")], "Promoted", "m", {})


def test_logger_url_goes_to_the_drift_exporter_shard_that_owns_the_model() -> None:
    """Issue 19: with N exporter shards the logger URL names the shard rendezvous hashing of (namespace,
    InferenceService) gives; canary and stable predictors of one InferenceService log to the same shard."""
    from modelops.formats.drift_url import namespace_token, shard_of

    d = Defaults("img:1", "http://ex-{shard}.ex-shards.ml.svc:8080/events", "secret", drift_exporter_shards=3)
    for ns in ("team-a", "team-b", "team-c", "team-d"):
        isvc = inference_service(name="churn", namespace=ns, uid="u1", spec=SPEC, plan=ServingPlan(S, C, 30),
                                 mode="RawDeployment", defaults=d)
        shard = shard_of(ns, "churn", 3)
        want = f"http://ex-{shard}.ex-shards.ml.svc:8080/events/ns/{ns}/{namespace_token('secret', ns)}"
        loggers = [isvc["spec"]["predictor"]["logger"]["url"]]
        loggers += [c["predictor"]["logger"]["url"] for c in isvc["spec"].get("canary", [])]
        assert set(loggers) == {want}, loggers
