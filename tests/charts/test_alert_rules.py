"""Every alert of the chart's PrometheusRule under `promtool test rules` (issue 14): each fires on the input that
should page and stays silent on a healthy one. promtool is the e2e Prometheus' version, built from its Go
module (`modelops images promtool`, run by scripts/bootstrap.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.chart import render

pytestmark = pytest.mark.unit
EXPORTER = ("driftExporter.enabled=true", "driftExporter.references={churn=models:/churn@champion}")
MD = {"namespace": "ml", "modeldeployment": "churn"}


def promtool() -> Path:
    from modelops_dev.images import promtool_path

    path = promtool_path()
    if not path.exists():
        pytest.fail(f"promtool is not built ({path}); run: uv run modelops images promtool (scripts/bootstrap.sh "
                    "does it)", pytrace=False)
    return path


def rule_groups() -> list[dict[str, Any]]:
    objs = render(sets=EXPORTER, api_versions=["monitoring.coreos.com/v1"])
    rule = next(o for o in objs if o["kind"] == "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def case(alert: str, series: dict[str, str], eval_time: str, fires: list[dict[str, Any]]) -> dict[str, Any]:
    """One promtool unit test: `series` (selector -> expanding notation) at 1m resolution, `alert` checked at
    `eval_time`, expecting exactly the alerts in `fires` (labels and annotations)."""
    return {"interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": [{"eval_time": eval_time, "alertname": alert,
                                 "exp_alerts": [{"exp_labels": f["labels"], "exp_annotations": f["annotations"]}
                                                for f in fires]}]}


def _drift(feature_ratio: str) -> dict[str, str]:
    return {'modelops_drift_feature_score_ratio{namespace="ml",model="churn",version="3",feature="age"}':
            feature_ratio}


HIST = "modelops_serving_request_duration_seconds_bucket"
SLOW = {f'{HIST}{{namespace="ml",isvc="churn",side="stable",le="0.1"}}': "0+10x40",
        f'{HIST}{{namespace="ml",isvc="churn",side="stable",le="1"}}': "0+100x40",
        f'{HIST}{{namespace="ml",isvc="churn",side="stable",le="+Inf"}}': "0+100x40"}
FAST = {k: "0+100x40" for k in SLOW}
OPERATOR = 'kube_deployment_status_replicas_available{namespace="modelops",deployment="modelops-operator"}'

FEATURE_DRIFT = {
    "labels": {"severity": "warning", "namespace": "ml", "model": "churn", "version": "3", "feature": "age"},
    "annotations": {"summary": "Feature age of model churn has drifted.",
                    "description": "The drift score of feature age (model churn, version 3) has been 2 times its "
                                   "threshold for 30m. A RetrainSchedule with a drift trigger on this model will "
                                   "fire."}}
DATASET_DRIFT = {
    "labels": {"severity": "warning", "namespace": "ml", "model": "churn", "version": "3"},
    "annotations": {"summary": "Model churn shows dataset drift.",
                    "description": "The share of drifted features of model churn version 3 has been above the "
                                   "dataset-drift share for 30m."}}
EXPORTER_DOWN = {
    "labels": {"severity": "critical"},  # absent() of a comparison carries no label of the selector
    "annotations": {"summary": "The modelops drift exporter is not scraped.",
                    "description": "No target of job modelops-drift-exporter has been up for 10 minutes: drift is "
                                   "not measured and drift-triggered retraining cannot fire."}}
OPERATOR_DOWN = {
    "labels": {"severity": "critical", "namespace": "modelops", "deployment": "modelops-operator"},
    "annotations": {"summary": "The modelops operator has no available replica.",
                    "description": "Deployment modelops/modelops-operator has had no available replica for 10 "
                                   "minutes: rollouts and retraining are stalled (requires kube-state-metrics)."}}
LATENCY = {
    "labels": {"severity": "critical", "namespace": "ml", "isvc": "churn"},
    "annotations": {"summary": "Model server churn is slow.",
                    "description": "p99 predict latency of ml/churn has been 990ms (above 0.5s) for 10 minutes."}}
RECONCILE = {
    "labels": {"severity": "warning", "kind": "ModelDeployment"},
    "annotations": {"summary": "Reconciles of ModelDeployment keep failing.",
                    "description": "The operator has failed ModelDeployment reconciles for 15 minutes; the "
                                   "objects' Reconciled condition says why."}}
ROLLED_BACK = {
    "labels": {"severity": "critical", **MD},
    "annotations": {"summary": "A canary of ml/churn was rolled back.",
                    "description": "The canary analysis failed and the version was tagged rejected; see `kubectl "
                                   "describe modeldeployment` for the failed checks."}}
STALLED = {
    "labels": {"severity": "warning", **MD},
    "annotations": {"summary": "The rollout of ml/churn has not moved for an hour.",
                    "description": "A canary step has been in progress for over an hour (paused, awaiting "
                                   "approval, or analysis without data)."}}
ROLLBACKS = 'modelops_rollout_rollbacks_total{namespace="ml",modeldeployment="churn"}'
STEP = 'modelops_rollout_step_started_timestamp_seconds{namespace="ml",modeldeployment="churn"}'
WEIGHT = 'modelops_rollout_canary_weight{namespace="ml",modeldeployment="churn"}'
ERRORS = 'modelops_reconcile_errors_total{kind="ModelDeployment"}'

# ---- SLO burn-rate alerts (decide/slo.py): the thresholds are what the operator exports for the objective
REQ = "modelops_serving_requests_total"
LAT = "modelops_serving_request_duration_seconds"


def _slo_series(slo: str, objective: float, window: str = "720h") -> dict[str, str]:
    from modelops.api.times import parse_duration
    from modelops.decide.slo import Slo

    th = Slo(slo, objective, parse_duration(window)).burn_thresholds()
    base = f'namespace="ml",isvc="churn",slo="{slo}"'
    return {f'modelops_slo_burn_rate_threshold{{{base},burn="{b}"}}': f"{v!r}x5000" for b, v in th.items()}


def _availability(errors_per_min: float, n: int = 60, step: int = 1) -> dict[str, str]:
    """1000 requests a minute of which `errors_per_min` answer 500 (ratio errors/1000 = burn x 0.001)."""
    ok, err = (1000 - errors_per_min) * step, errors_per_min * step
    return {f'{REQ}{{namespace="ml",isvc="churn",side="stable",status="200",pod="p"}}': f"0+{ok:g}x{n}",
            f'{REQ}{{namespace="ml",isvc="churn",side="stable",status="500",pod="p"}}': f"0+{err:g}x{n}",
            **_slo_series("availability", 99.9)}


def _latency(slow_per_min: float) -> dict[str, str]:
    """1000 requests a minute of which `slow_per_min` take longer than 0.1s (the SLO's bucket)."""
    sel = 'namespace="ml",isvc="churn",side="stable",pod="p"'
    return {f'{LAT}_bucket{{{sel},le="0.1"}}': f"0+{1000 - slow_per_min:g}x60",
            f'{LAT}_bucket{{{sel},le="+Inf"}}': "0+1000x60", f"{LAT}_count{{{sel}}}": "0+1000x60",
            'modelops_slo_latency_le{namespace="ml",isvc="churn",le="0.1"}': "1x60",
            **_slo_series("latency", 99.0)}


def _burn(slo: str, severity: str, value: str, fast: bool) -> dict[str, Any]:
    how = (("1h", "5m", "2% of the error budget per hour. No canary of this ModelDeployment starts or advances "
            "meanwhile (condition BudgetExhausted).") if fast else ("6h", "30m", "5% of the error budget per 6 hours."))
    return {"labels": {"severity": severity, "namespace": "ml", "isvc": "churn", "slo": slo},
            "annotations": {"summary": f"The {slo} SLO of ml/churn burns its error budget fast.",
                            "description": f"The {slo} error ratio of ml/churn is {value} over {how[0]} and {how[1]}: "
                                           f"at least {how[2]}"}}


FAST_BURN, SLOW_BURN = "ModelopsSLOFastBurn", "ModelopsSLOSlowBurn"
#: 1x the budget for the whole 30-day window, sampled every 2 minutes (so the 5m window has data): the budget is
#: spent exactly, nothing fires
ONE_X_30D = _availability(1, n=21600, step=2)
ONE_X_30D.update({k: v.replace("x5000", "x21700") for k, v in _slo_series("availability", 99.9).items()})

#: alert -> (firing cases, silent cases)
CASES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
    "ModelopsFeatureDrift": (
        [case("ModelopsFeatureDrift", _drift("2x60"), "40m", [FEATURE_DRIFT])],
        [case("ModelopsFeatureDrift", _drift("0.5x60"), "40m", []),
         case("ModelopsFeatureDrift", _drift("2x60"), "20m", [])]),  # not yet `for` 30m
    "ModelopsDatasetDrift": (
        [case("ModelopsDatasetDrift", {'modelops_drift_dataset_drift{namespace="ml",model="churn",version="3"}':
                                       "1x60"}, "40m", [DATASET_DRIFT])],
        [case("ModelopsDatasetDrift", {'modelops_drift_dataset_drift{namespace="ml",model="churn",version="3"}':
                                       "0x60"}, "40m", [])]),
    "ModelopsDriftExporterDown": (
        [case("ModelopsDriftExporterDown", {'up{job="modelops-drift-exporter",instance="a"}': "0x30"}, "15m",
              [EXPORTER_DOWN]),
         case("ModelopsDriftExporterDown", {'up{job="other"}': "1x30"}, "15m", [EXPORTER_DOWN])],  # never scraped
        [case("ModelopsDriftExporterDown", {'up{job="modelops-drift-exporter",instance="a"}': "1x30"}, "15m", [])]),
    "ModelopsOperatorUnavailable": (
        [case("ModelopsOperatorUnavailable", {OPERATOR: "0x30"}, "15m", [OPERATOR_DOWN])],
        [case("ModelopsOperatorUnavailable", {OPERATOR: "1x30"}, "15m", [])]),
    "ModelopsServingLatencyHigh": (
        [case("ModelopsServingLatencyHigh", SLOW, "20m", [LATENCY])],
        [case("ModelopsServingLatencyHigh", FAST, "20m", [])]),
    "ModelopsReconcileErrors": (
        [case("ModelopsReconcileErrors", {ERRORS: "0+1x60"}, "30m", [RECONCILE])],
        [case("ModelopsReconcileErrors", {ERRORS: "5x60"}, "30m", [])]),
    "ModelopsRolloutRolledBack": (
        # the operator exports the counter at 0 from the first pass, so the first rollback is an increase
        [case("ModelopsRolloutRolledBack", {ROLLBACKS: "0 0 0 1x20"}, "10m", [ROLLED_BACK])],
        [case("ModelopsRolloutRolledBack", {ROLLBACKS: "0x60"}, "10m", []),
         case("ModelopsRolloutRolledBack", {ROLLBACKS: "0 0 0 1x60"}, "50m", [])]),  # over 30m ago
    "ModelopsRolloutStalled": (
        [case("ModelopsRolloutStalled", {STEP: "0x80", WEIGHT: "10x80"}, "70m", [STALLED])],
        [case("ModelopsRolloutStalled", {STEP: "0x80", WEIGHT: "10x80"}, "50m", []),  # under an hour
         case("ModelopsRolloutStalled", {STEP: "0x80", WEIGHT: "0x80"}, "70m", [])]),  # no canary
    # a 14.4x burn pages within 5 minutes of series time; 6x does not page
    FAST_BURN: (
        [case(FAST_BURN, _availability(14.4), "5m", [_burn("availability", "critical", "1.44%", True)]),
         case(FAST_BURN, _latency(200), "5m", [_burn("latency", "critical", "20%", True)])],
        [case(FAST_BURN, _availability(6), "30m", []),
         case(FAST_BURN, _availability(0), "30m", []),
         case(FAST_BURN, _latency(5), "30m", [])]),
    # a 6x burn opens a ticket within 30 minutes; 1x does not
    SLOW_BURN: (
        [case(SLOW_BURN, _availability(6), "30m", [_burn("availability", "warning", "0.6%", False)])],
        [case(SLOW_BURN, _availability(1), "30m", [])]),
}
#: 1x over 30 days (2-minute samples, rules evaluated hourly: the burn alerts have no `for`, so each evaluation
#: stands alone; its own promtool file): neither burn alert fires at any point checked, while every window's ratio
#: exists (the silence is not for want of data)
LONG = {"interval": "2m", "input_series": [{"series": k, "values": v} for k, v in ONE_X_30D.items()],
        "alert_rule_test": [{"eval_time": t, "alertname": a, "exp_alerts": []}
                            for t in ("1h", "6h", "1d", "15d", "29d") for a in (FAST_BURN, SLOW_BURN)],
        "promql_expr_test": [{"expr": f'modelops:slo_errors:ratio_rate{w}{{slo="availability"}}', "eval_time": "15d",
                              "exp_samples": [{"labels": f'modelops:slo_errors:ratio_rate{w}{{namespace="ml",isvc='
                                                         '"churn",slo="availability"}', "value": 0.001}]}
                             for w in ("5m", "30m", "1h", "6h")]}


def test_every_shipped_alert_fires_and_stays_silent_under_promtool(tmp_path: Path) -> None:
    tool = promtool()
    groups = rule_groups()
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert alerts == set(CASES), f"alerts without a promtool case: {alerts - set(CASES)}; stale: {set(CASES) - alerts}"
    assert all(firing and silent for firing, silent in CASES.values())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    tests = [t for firing, silent in CASES.values() for t in (*firing, *silent)]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    proc = subprocess.run([str(tool), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([str(tool), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_1x_burn_over_30_days_fires_nothing_and_the_recorded_ratio_is_the_budget(tmp_path: Path) -> None:
    tool = promtool()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1h", "tests": [LONG]}, sort_keys=False))
    proc = subprocess.run([str(tool), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_recording_rule_of_the_slo_group_is_read_by_a_burn_alert() -> None:
    groups = {g["name"]: g for g in rule_groups()}
    slo = groups["modelops.slo"]["rules"]
    recorded = {r["record"] for r in slo if "record" in r}
    alerts = " ".join(r["expr"] for r in slo if "alert" in r)
    assert recorded == {f"modelops:slo_errors:ratio_rate{w}" for w in ("5m", "30m", "1h", "6h")}
    assert all(r in alerts for r in recorded)
    assert {r["alert"] for r in slo if "alert" in r} == {FAST_BURN, SLOW_BURN}


def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness can fail: a silent case that expects an alert is reported by promtool."""
    tool = promtool()
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    wrong = case("ModelopsOperatorUnavailable", {OPERATOR: "1x30"}, "15m", [OPERATOR_DOWN])
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [wrong]}, sort_keys=False))
    proc = subprocess.run([str(tool), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "ModelopsOperatorUnavailable" in proc.stdout + proc.stderr
