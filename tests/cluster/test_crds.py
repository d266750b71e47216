"""The CRDs against the real API server: installed and served, samples accepted, bad input rejected with
a message that names the field, immutable fields enforced, `kubectl explain` / `get modelops` useful."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from modelops.api import GROUP, VERSION

pytestmark = pytest.mark.cluster

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
PLURAL = {"ModelDeployment": "modeldeployments", "RetrainSchedule": "retrainschedules"}

MD: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": "md"},
    "spec": {
        "model": {"name": "churn", "alias": "champion"},
        "serving": {"deploymentMode": "Knative"},
        "rollout": {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 50}],
                    "analysis": {"metrics": [{"name": "success-rate", "query": "x{side=\"{{side}}\"}",
                                              "thresholdRange": {"min": 0.99}}]}},
    },
}
RS: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "RetrainSchedule", "metadata": {"name": "rs"},
    "spec": {
        "training": {"modelName": "churn",
                     "dataset": {"uri": "s3://data/churn.parquet", "target": "churned", "task": "classification"}},
        "triggers": {"schedule": {"cron": "30 2 * * *", "timeZone": "Europe/Berlin"},
                     "drift": {"query": "max(modelops_drift_share)", "threshold": 0.3}},
    },
}


def QM(metric: str = "auc", **quality: Any) -> dict[str, Any]:
    """A quality analysis metric (issue 17)."""
    return {"name": "quality", "quality": {"metric": metric, "maxDrop": 0.02, **quality}}


def PERF(**kw: Any) -> dict[str, Any]:
    """A performance trigger (issue 17); a value DELETE leaves the key out."""
    base = {"model": "churn", "metric": "auc", "threshold": 0.8, "minLabels": 200, "for": "10m", **kw}
    return {k: v for k, v in base.items() if v is not DELETE}


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Copy of obj with a dotted path set (value DELETE removes the key)."""
    out = copy.deepcopy(obj)
    cur = out
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur.setdefault(k, {})
    last = keys[-1]
    if value is DELETE:
        del cur[last]
    elif isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return out


DELETE = object()

# (case id, base object, mutation, substrings the API server's message must contain)
INVALID: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], dict[str, Any]], list[str]]] = [
    ("md-missing-model", MD, lambda o: _set(o, "spec.model", DELETE), ["spec.model", "Required"]),
    ("md-name-and-uri", MD, lambda o: _set(o, "spec.model", {"name": "a", "storageUri": "s3://b/c"}),
     ["spec.model", "exactly one of spec.model.name"]),
    ("md-neither-name-nor-uri", MD, lambda o: _set(o, "spec.model", {"alias": "champion"}),
     ["spec.model", "exactly one of"]),
    ("md-alias-and-version", MD, lambda o: _set(o, "spec.model.version", "3"),
     ["spec.model.alias and spec.model.version are mutually exclusive"]),
    ("md-version-zero", MD, lambda o: _set(_set(o, "spec.model.alias", DELETE), "spec.model.version", "0"),
     ["spec.model.version"]),
    ("md-bad-storage-scheme", MD, lambda o: _set(o, "spec.model", {"storageUri": "ftp://models/x"}),
     ["spec.model.storageUri"]),
    ("md-bad-deployment-mode", MD, lambda o: _set(o, "spec.serving.deploymentMode", "Serverful"),
     ["spec.serving.deploymentMode", "Unsupported value"]),
    ("md-bad-runtime", MD, lambda o: _set(o, "spec.serving.runtime", "triton"), ["spec.serving.runtime"]),
    ("md-min-over-max", MD, lambda o: _set(_set(o, "spec.serving.minReplicas", 5), "spec.serving.maxReplicas", 2),
     ["spec.serving.minReplicas must be less than or equal to spec.serving.maxReplicas"]),
    ("md-standard-scale-to-zero", MD,
     lambda o: _set(_set(o, "spec.serving.deploymentMode", "RawDeployment"), "spec.serving.minReplicas", 0),
     ["spec.serving.minReplicas must be at least 1 in Standard"]),
    ("md-negative-replicas", MD, lambda o: _set(o, "spec.serving.minReplicas", -1), ["spec.serving.minReplicas"]),
    ("md-scale-metric-without-target", MD, lambda o: _set(o, "spec.serving.scaleMetric", "rps"),
     ["spec.serving.scaleMetric and spec.serving.scaleTarget"]),
    ("md-weight-over-100", MD, lambda o: _set(o, "spec.rollout.steps.1.weight", 150),
     ["spec.rollout.steps[1].weight", "100"]),
    ("md-weight-zero", MD, lambda o: _set(o, "spec.rollout.steps.0.weight", 0), ["spec.rollout.steps[0].weight"]),
    ("md-weights-decreasing", MD, lambda o: _set(o, "spec.rollout.steps", [{"weight": 50}, {"weight": 10}]),
     ["spec.rollout.steps", "strictly increasing"]),
    ("md-weights-repeated", MD, lambda o: _set(o, "spec.rollout.steps", [{"weight": 20}, {"weight": 20}]),
     ["spec.rollout.steps", "strictly increasing"]),
    ("md-negative-pause", MD, lambda o: _set(o, "spec.rollout.steps.0.pause", "-5m"),
     ["spec.rollout.steps[0].pause"]),
    ("md-prose-pause", MD, lambda o: _set(o, "spec.rollout.steps.0.pause", "5 minutes"),
     ["spec.rollout.steps[0].pause"]),
    ("md-bad-interval", MD, lambda o: _set(o, "spec.rollout.analysis.interval", "1d"),
     ["spec.rollout.analysis.interval"]),
    ("md-threshold-min-over-max", MD,
     lambda o: _set(o, "spec.rollout.analysis.metrics.0.thresholdRange", {"min": 2, "max": 1}),
     ["spec.rollout.analysis.metrics[0].thresholdRange", "min must be less than or equal"]),
    ("md-threshold-empty", MD, lambda o: _set(o, "spec.rollout.analysis.metrics.0.thresholdRange", {}),
     ["spec.rollout.analysis.metrics[0].thresholdRange", "needs min, max or both"]),
    ("md-baseline-min-over-max", MD,
     lambda o: _set(o, "spec.rollout.analysis.metrics.0.baseline", {"minRatio": 2, "maxRatio": 1}),
     ["spec.rollout.analysis.metrics[0].baseline", "minRatio must be less than or equal"]),
    ("md-metric-without-check", MD,
     lambda o: _set(o, "spec.rollout.analysis.metrics", [{"name": "m", "query": "up"}]),
     ["spec.rollout.analysis.metrics[0]", "needs thresholdRange, baseline or both"]),
    ("md-metric-unknown-builtin", MD, lambda o: _set(o, "spec.rollout.analysis.metrics", [
        {"name": "m", "builtin": "p99", "thresholdRange": {"max": 1}}]),
     ["spec.rollout.analysis.metrics[0].builtin", "Unsupported value"]),
    ("md-metric-query-and-builtin", MD, lambda o: _set(o, "spec.rollout.analysis.metrics", [
        {"name": "m", "builtin": "error-rate", "query": "up", "thresholdRange": {"max": 1}}]),
     ["spec.rollout.analysis.metrics[0]", "exactly one of query, builtin or quality"]),
    ("md-metric-neither-query-nor-builtin", MD, lambda o: _set(o, "spec.rollout.analysis.metrics", [
        {"name": "m", "thresholdRange": {"max": 1}}]),
     ["spec.rollout.analysis.metrics[0]", "exactly one of query, builtin or quality"]),
    ("md-slo-latency-without-threshold", MD, lambda o: _set(o, "spec.slos", [{"name": "latency", "objective": 99}]),
     ["spec.slos[0].latency", "a latency SLO needs latency.thresholdSeconds"]),
    ("md-slo-objective-100", MD, lambda o: _set(o, "spec.slos", [{"name": "availability", "objective": 100}]),
     ["spec.slos[0].objective"]),
    ("md-slo-threshold-not-a-bucket", MD, lambda o: _set(o, "spec.slos", [
        {"name": "latency", "objective": 99, "latency": {"thresholdSeconds": 0.3}}]),
     ["spec.slos[0].latency.thresholdSeconds", "Unsupported value"]),
    ("md-metric-bad-name", MD, lambda o: _set(o, "spec.rollout.analysis.metrics.0.name", "Bad_Name"),
     ["spec.rollout.analysis.metrics[0].name"]),
    ("md-metric-duplicate", MD, lambda o: _set(o, "spec.rollout.analysis.metrics", [
        {"name": "m", "query": "up", "thresholdRange": {"min": 1}},
        {"name": "m", "query": "up", "thresholdRange": {"max": 1}}]),
     ["spec.rollout.analysis.metrics[1]", "Duplicate value"]),
    ("md-negative-failure-limit", MD, lambda o: _set(o, "spec.rollout.analysis.failureLimit", -1),
     ["spec.rollout.analysis.failureLimit"]),
    ("md-bad-logger-mode", MD, lambda o: _set(o, "spec.logger", {"mode": "everything"}), ["spec.logger.mode"]),
    ("md-bad-webhook-url", MD, lambda o: _set(o, "spec.notifications", {"webhooks": [{"url": "slack please"}]}),
     ["spec.notifications.webhooks[0].url"]),
    ("md-bad-webhook-event", MD,
     lambda o: _set(o, "spec.notifications", {"webhooks": [{"url": "http://x", "events": ["Exploded"]}]}),
     ["spec.notifications.webhooks[0].events[0]"]),
    ("md-bad-poll-interval", MD, lambda o: _set(o, "spec.registry", {"pollInterval": "soon"}),
     ["spec.registry.pollInterval"]),
    ("md-unknown-field", MD, lambda o: _set(o, "spec.replicas", 3), ['unknown field "spec.replicas"']),
    ("md-unknown-nested-field", MD, lambda o: _set(o, "spec.serving.gpu", True), ['unknown field "spec.serving.gpu"']),
    ("rs-missing-training", RS, lambda o: _set(o, "spec.training", DELETE), ["spec.training", "Required"]),
    ("rs-missing-target", RS, lambda o: _set(o, "spec.training.dataset.target", DELETE),
     ["spec.training.dataset.target", "Required"]),
    ("rs-bad-task", RS, lambda o: _set(o, "spec.training.dataset.task", "ranking"),
     ["spec.training.dataset.task", "Unsupported value"]),
    ("rs-bad-dataset-uri", RS, lambda o: _set(o, "spec.training.dataset.uri", "ftp://x/y.csv"),
     ["spec.training.dataset.uri"]),
    ("rs-cron-minute-61", RS, lambda o: _set(o, "spec.triggers.schedule.cron", "61 * * * *"),
     ["spec.triggers.schedule.cron"]),
    ("rs-cron-hour-25", RS, lambda o: _set(o, "spec.triggers.schedule.cron", "0 25 * * *"),
     ["spec.triggers.schedule.cron"]),
    ("rs-cron-three-fields", RS, lambda o: _set(o, "spec.triggers.schedule.cron", "* * *"),
     ["spec.triggers.schedule.cron"]),
    ("rs-cron-words", RS, lambda o: _set(o, "spec.triggers.schedule.cron", "every day"),
     ["spec.triggers.schedule.cron"]),
    ("rs-bad-timezone", RS, lambda o: _set(o, "spec.triggers.schedule.timeZone", "Not a zone!"),
     ["spec.triggers.schedule.timeZone"]),
    ("rs-negative-for", RS, lambda o: _set(o, "spec.triggers.drift.for", "-10m"), ["spec.triggers.drift.for"]),
    ("rs-negative-cooldown", RS, lambda o: _set(o, "spec.triggers.drift.cooldown", "-1h"),
     ["spec.triggers.drift.cooldown"]),
    ("rs-bad-comparison", RS, lambda o: _set(o, "spec.triggers.drift.comparison", "=="),
     ["spec.triggers.drift.comparison"]),
    ("rs-drift-without-threshold", RS, lambda o: _set(o, "spec.triggers.drift.threshold", DELETE),
     ["spec.triggers.drift.threshold", "Required"]),
    ("rs-bad-concurrency", RS, lambda o: _set(o, "spec.concurrencyPolicy", "Sometimes"),
     ["spec.concurrencyPolicy", "Unsupported value"]),
    ("rs-negative-history", RS, lambda o: _set(o, "spec.successfulRunsHistoryLimit", -1),
     ["spec.successfulRunsHistoryLimit"]),
    ("rs-test-fraction-one", RS, lambda o: _set(o, "spec.training.split", {"testFraction": 1}),
     ["spec.training.split.testFraction"]),
    ("rs-no-families", RS, lambda o: _set(o, "spec.training.search", {"families": []}),
     ["spec.training.search.families"]),
    ("rs-unknown-family", RS, lambda o: _set(o, "spec.training.search", {"families": ["svm"]}),
     ["spec.training.search.families[0]"]),
    ("rs-backoff-too-high", RS, lambda o: _set(o, "spec.job", {"backoffLimit": 100}), ["spec.job.backoffLimit"]),
    ("rs-envfrom-both", RS,
     lambda o: _set(o, "spec.envFrom", [{"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}]),
     ["spec.envFrom[0]", "exactly one of secretRef or configMapRef"]),
    ("rs-unknown-field", RS, lambda o: _set(o, "spec.training.epochs", 10), ['unknown field "spec.training.epochs"']),
    # admission gaps found by the reliability review (issue 16): every name derived from user input
    ("md-name-with-dot", MD, lambda o: _set(o, "metadata.name", "churn.v2"), ["metadata.name", "DNS-1035"]),
    ("md-name-with-digit-first", MD, lambda o: _set(o, "metadata.name", "2churn"), ["metadata.name", "DNS-1035"]),
    ("md-name-too-long-for-canary", MD, lambda o: _set(o, "metadata.name", "c" * 42),
     ["metadata.name", "at most 41 characters", "<name>-v<version>-predictor"]),
    ("md-label-spoofs-canary", MD, lambda o: _set(o, "spec.serving.labels", {"modelops.dev/canary-version": "9"}),
     ["spec.serving.labels", "must not set modelops.dev/*"]),
    ("md-annotation-spoofs-hash", MD,
     lambda o: _set(o, "spec.serving.annotations", {"modelops.dev/desired-hash": "x"}),
     ["spec.serving.annotations", "must not set modelops.dev/*"]),
    ("md-bad-progress-deadline", MD, lambda o: _set(o, "spec.rollout.progressDeadline", "soon"),
     ["spec.rollout.progressDeadline"]),
    ("md-bad-initial-delay", MD, lambda o: _set(o, "spec.rollout.analysis.initialDelay", "after warm-up"),
     ["spec.rollout.analysis.initialDelay"]),
    ("rs-name-with-dot", RS, lambda o: _set(o, "metadata.name", "my.schedule"), ["metadata.name", "DNS-1123"]),
    ("rs-name-too-long", RS, lambda o: _set(o, "metadata.name", "s" * 64),
     ["metadata.name", "at most 63 characters"]),
    ("rs-cron-step-zero", RS, lambda o: _set(o, "spec.triggers.schedule.cron", "*/0 4 * * *"),
     ["spec.triggers.schedule.cron"]),
    ("rs-cron-hour-step-zero", RS, lambda o: _set(o, "spec.triggers.schedule.cron", "0 */00 * * *"),
     ["spec.triggers.schedule.cron"]),
    ("rs-unknown-timezone", RS, lambda o: _set(o, "spec.triggers.schedule.timeZone", "Mars/Olympus_Mons"),
     ["spec.triggers.schedule.timeZone", "IANA time zone"]),
    ("rs-timezone-directory", RS, lambda o: _set(o, "spec.triggers.schedule.timeZone", "America"),
     ["spec.triggers.schedule.timeZone", "IANA time zone"]),
    ("rs-credentials-in-storage-options", RS,
     lambda o: _set(o, "spec.training.dataset.storageOptions", {"aws_secret_access_key": "x"}),
     ["spec.training.dataset.storageOptions", "must not carry credentials"]),
    ("rs-max-pending-approvals-zero", RS, lambda o: _set(o, "spec.maxPendingApprovals", 0),
     ["spec.maxPendingApprovals"]),
    # quality analysis metrics and the performance trigger (issue 17)
    ("md-quality-bad-metric", MD, lambda o: _set(o, "spec.rollout.analysis.metrics", [QM("r2")]),
     ["spec.rollout.analysis.metrics[0].quality.metric", "Unsupported value"]),
    ("md-quality-bad-source", MD, lambda o: _set(o, "spec.rollout.analysis.metrics", [QM(source="guessed")]),
     ["spec.rollout.analysis.metrics[0].quality.source", "Unsupported value"]),
    ("md-quality-negative-max-drop", MD, lambda o: _set(o, "spec.rollout.analysis.metrics", [QM(maxDrop=-0.1)]),
     ["spec.rollout.analysis.metrics[0].quality.maxDrop"]),
    ("md-quality-zero-min-labels", MD, lambda o: _set(o, "spec.rollout.analysis.metrics", [QM(minLabels=0)]),
     ["spec.rollout.analysis.metrics[0].quality.minLabels"]),
    ("md-quality-min-labels-on-estimate", MD,
     lambda o: _set(o, "spec.rollout.analysis.metrics", [QM("accuracy", source="estimated", minLabels=50)]),
     ["spec.rollout.analysis.metrics[0].quality.minLabels", "realised only"]),
    ("md-quality-estimate-of-log-loss", MD,
     lambda o: _set(o, "spec.rollout.analysis.metrics", [QM("log_loss", source="estimated")]),
     ["spec.rollout.analysis.metrics[0].quality.metric", "estimates only"]),
    ("md-quality-and-query", MD,
     lambda o: _set(o, "spec.rollout.analysis.metrics", [{**QM(), "query": "up"}]),
     ["spec.rollout.analysis.metrics[0]", "exactly one of query, builtin or quality"]),
    ("md-neither-query-nor-quality", MD,
     lambda o: _set(o, "spec.rollout.analysis.metrics", [{"name": "m", "thresholdRange": {"min": 1}}]),
     ["spec.rollout.analysis.metrics[0]", "exactly one of query, builtin or quality"]),
    ("md-quality-without-check", MD,
     lambda o: _set(o, "spec.rollout.analysis.metrics", [{"name": "auc", "quality": {"metric": "auc"}}]),
     ["spec.rollout.analysis.metrics[0]", "needs thresholdRange, baseline or both"]),
    ("md-quality-with-baseline", MD,
     lambda o: _set(o, "spec.rollout.analysis.metrics", [{**QM(), "baseline": {"minRatio": 0.9}}]),
     ["spec.rollout.analysis.metrics[0]", "not baseline or minSamples"]),
    ("md-quality-on-storage-uri", MD,
     lambda o: _set(_set(o, "spec.model", {"storageUri": "s3://m/churn"}), "spec.rollout.analysis.metrics", [QM()]),
     ["spec.rollout.analysis.metrics", "quality needs spec.model.name"]),
    ("rs-performance-without-threshold", RS, lambda o: _set(o, "spec.triggers.performance", PERF(threshold=DELETE)),
     ["spec.triggers.performance", "needs threshold, maxDrop or both"]),
    ("rs-performance-bad-metric", RS, lambda o: _set(o, "spec.triggers.performance", PERF(metric="precision")),
     ["spec.triggers.performance.metric", "Unsupported value"]),
    ("rs-performance-without-model", RS, lambda o: _set(o, "spec.triggers.performance", PERF(model=DELETE)),
     ["spec.triggers.performance.model", "Required"]),
    ("rs-performance-negative-max-drop", RS, lambda o: _set(o, "spec.triggers.performance", PERF(maxDrop=-1)),
     ["spec.triggers.performance.maxDrop"]),
    ("rs-performance-min-labels-on-estimate", RS,
     lambda o: _set(o, "spec.triggers.performance", PERF(source="estimated", minLabels=10)),
     ["spec.triggers.performance.minLabels", "realised only"]),
    ("rs-performance-bad-for", RS, lambda o: _set(o, "spec.triggers.performance", PERF(**{"for": "1 hour"})),
     ["spec.triggers.performance.for"]),
    ("rs-performance-bad-version", RS, lambda o: _set(o, "spec.triggers.performance", PERF(version="latest")),
     ["spec.triggers.performance.version"]),
]


@pytest.mark.parametrize(("base", "path", "value"), [
    (MD, "metadata.name", "c" * 41),
    (RS, "metadata.name", "s" * 63),
    (RS, "spec.triggers.schedule.cron", "*/15 */2 * * *"),
    (RS, "spec.triggers.schedule.timeZone", "America/Argentina/Buenos_Aires"),
    (RS, "spec.triggers.schedule.timeZone", "UTC"),
    (RS, "spec.training.dataset.storageOptions", {"endpoint_url": "http://minio:9000", "anon": "false"}),
    (MD, "spec.rollout.analysis.metrics", [QM(minLabels=500), QM("accuracy", source="estimated") | {"name": "est"},
                                           {"name": "rmse", "quality": {"metric": "rmse"},
                                            "thresholdRange": {"max": 3.5}}]),
    (RS, "spec.triggers.performance", PERF(maxDrop=0.03, namespace="team-a", version="12", cooldown="2h")),
    (MD, "spec.rollout.analysis.initialDelay", "0s"),
    (MD, "spec.rollout.analysis.initialDelay", "1m30s"),
], ids=["md-name-41", "rs-name-63", "rs-cron-steps", "rs-tz-three-parts", "rs-tz-utc", "rs-storage-options",
        "md-quality-metrics", "rs-performance", "md-initial-delay-0", "md-initial-delay-90s"])
def test_valid_edge_cases_are_accepted(kube_crds: Any, namespace: str, base: dict[str, Any], path: str,
                                       value: Any) -> None:
    _create(kube_crds, namespace, _set(base, path, value))


def _create(kube: Any, ns: str, obj: dict[str, Any], dry_run: bool = True) -> dict[str, Any]:
    kw: dict[str, Any] = {"field_validation": "Strict"}
    if dry_run:
        kw["dry_run"] = "All"
    result: dict[str, Any] = kube.custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL[obj["kind"]], obj, **kw)
    return result


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (ValueError, KeyError, TypeError):
        return str(exc.body)


def test_crds_are_established_and_served(kube_crds: Any) -> None:
    for name in ("modeldeployments.modelops.dev", "retrainschedules.modelops.dev"):
        crd = kube_crds.apiext.read_custom_resource_definition(name)
        conds = {c.type: c.status for c in crd.status.conditions}
        assert conds.get("Established") == "True" and conds.get("NamesAccepted") == "True", conds
    names = kube_crds.kubectl("api-resources", "--categories=modelops", "-o", "name").stdout.split()
    assert sorted(names) == ["modeldeployments.modelops.dev", "retrainschedules.modelops.dev"]


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.yaml")))
def test_every_sample_is_accepted(kube_crds: Any, namespace: str, sample: str) -> None:
    obj = yaml.safe_load((SAMPLES / sample).read_text())
    created = _create(kube_crds, namespace, obj, dry_run=False)
    assert created["metadata"]["generation"] == 1
    # schema defaults are applied by the API server
    if obj["kind"] == "ModelDeployment":
        assert created["spec"]["rollout"]["strategy"] in ("Canary", "Immediate")
        assert created["spec"]["serving"]["protocolVersion"] in ("v1", "v2")
    else:
        assert created["spec"]["concurrencyPolicy"] in ("Allow", "Forbid", "Replace")
        assert created["spec"]["training"]["search"]["trials"] >= 1


def test_base_objects_are_valid(kube_crds: Any, namespace: str) -> None:
    for obj in (MD, RS):
        _create(kube_crds, namespace, obj)


@pytest.mark.parametrize(("case", "base", "mutate", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_object_is_rejected_naming_the_field(kube_crds: Any, namespace: str, case: str,
                                                     base: dict[str, Any],
                                                     mutate: Callable[[dict[str, Any]], dict[str, Any]],
                                                     expected: list[str]) -> None:
    with pytest.raises(ApiException) as err:
        _create(kube_crds, namespace, mutate(base))
    assert err.value.status in (400, 422), err.value.body
    message = _message(err.value)
    for part in expected:
        assert part in message, f"{case}: {part!r} not in API server message: {message}"


def test_at_least_25_invalid_cases() -> None:
    assert len(INVALID) >= 25


@pytest.mark.parametrize(("base", "path", "value", "expected"), [
    (MD, "spec.model.name", "other-model", "spec.model.name is immutable"),
    (_set(MD, "spec.serving.deploymentMode", "Standard"), "spec.serving.deploymentMode", "Knative",
     "spec.serving.deploymentMode is immutable"),
    (RS, "spec.training.modelName", "other-model", "spec.training.modelName is immutable"),
], ids=["md-model-name", "md-deployment-mode", "rs-model-name"])
def test_immutable_fields(kube_crds: Any, namespace: str, base: dict[str, Any], path: str, value: Any,
                          expected: str) -> None:
    created = _create(kube_crds, namespace, base, dry_run=False)
    changed = _set(created, path, value)
    with pytest.raises(ApiException) as err:
        kube_crds.custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL[base["kind"]],
                                                          base["metadata"]["name"], changed)
    assert err.value.status == 422
    assert expected in _message(err.value)
    # a mutable field still changes
    ok = _set(created, "spec.rollout.paused" if base["kind"] == "ModelDeployment" else "spec.suspend", True)
    kube_crds.custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL[base["kind"]],
                                                      base["metadata"]["name"], ok)


def test_kubectl_explain_and_get_modelops(kube_crds: Any, namespace: str) -> None:
    for obj in (MD, RS):
        _create(kube_crds, namespace, obj, dry_run=False)
    explain = kube_crds.kubectl("explain", "modeldeployment.spec").stdout
    for field in ("model", "serving", "rollout", "logger", "notifications", "MLflow"):
        assert field in explain, explain
    explain_rs = kube_crds.kubectl("explain", "retrainschedule.spec.triggers.drift").stdout
    assert "PromQL" in explain_rs and "cooldown" in explain_rs
    got = kube_crds.kubectl("get", "modelops", "-n", namespace).stdout
    assert "modeldeployment.modelops.dev/md" in got and "retrainschedule.modelops.dev/rs" in got
    assert "MODEL" in got and "WEIGHT" in got and "SCHEDULE" in got
    short = kube_crds.kubectl("get", "mdep,rsched", "-n", namespace, "-o", "name").stdout.split()
    assert short == ["modeldeployment.modelops.dev/md", "retrainschedule.modelops.dev/rs"]
