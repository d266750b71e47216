"""Gather the evidence of one pending approval from the API server, MLflow and Prometheus (async I/O),
and shape it with the pure builders of modelops.desired.approval_message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelops.console.sources import Mlflow, Prometheus, SourceError, gather_quiet
from modelops.console.views import metric_thresholds, model_of
from modelops.desired.approval_message import Evidence, MetricRow, from_objects

TEST_TAG = "modelops.dev/test."
#: seconds a registered version's evidence (trainer tags, run id) is reused between page views
VERSION_MAX_AGE = 30.0
LOWER_IS_BETTER = ("loss", "error", "rmse", "mae", "mse", "latency")


def _tags(version: Mapping[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in version.get("tags") or []}


def _test_metrics(tags: Mapping[str, str]) -> dict[str, float]:
    out = {}
    for k, v in tags.items():
        if k.startswith(TEST_TAG):
            try:
                out[k.removeprefix(TEST_TAG)] = float(v)
            except ValueError:
                continue
    return out


async def gather(kind: str, obj: Mapping[str, Any], version: str, mlflow: Mlflow,
                 prom: Prometheus) -> tuple[Evidence, dict[str, Any]]:
    """The Evidence, and extras for the page (plots with their run id, panel errors)."""
    model = model_of(kind, obj)
    st = obj.get("status") or {}
    if kind == "retrainschedules":
        run: Mapping[str, Any] = next((r for r in st.get("runs") or [] if str(r.get("version")) == version), {})
        champion = str(run.get("championVersion") or "")
    else:
        champion = str((st.get("stable") or {}).get("version") or "")
    errors: list[str] = []
    cand, champ, drift_rows = await gather_quiet(
        mlflow.version(model, version, max_age=VERSION_MAX_AGE),
        mlflow.version(model, champion, max_age=VERSION_MAX_AGE) if champion else _none(),
        prom.query(f'max by (feature) (modelops_drift_feature_score_ratio{{model="{_q(model)}"}})'))
    for r in (cand, champ, drift_rows):
        if isinstance(r, str):
            errors.append(r)
    cand = cand if isinstance(cand, dict) else {}
    champ = champ if isinstance(champ, dict) else {}
    ctags, htags = _tags(cand), _tags(champ)
    if not champion and ctags.get("modelops.dev/champion-version"):
        champion = ctags["modelops.dev/champion-version"]
    drift: dict[str, float] = {}
    if isinstance(drift_rows, list):
        for row in drift_rows:
            try:
                drift[str(row["metric"].get("feature", "?"))] = round(float(row["value"][1]), 6)
            except (KeyError, ValueError, TypeError):
                continue
    run_id = str(cand.get("run_id") or "")
    plots: list[str] = []
    if run_id:
        try:
            plots = sorted(f["path"] for f in await mlflow.artifacts(run_id, "plots")
                           if str(f.get("path", "")).endswith(".png"))
        except SourceError as exc:
            errors.append(str(exc))
    facts = {}
    for label, key in (("data sha256", "modelops.dev/dataset-sha256"), ("dataset", "modelops.dev/dataset-uri"),
                       ("model family", "modelops.dev/family"), ("trials", "modelops.dev/trials"),
                       ("gate verdict", "modelops.dev/verdict"), ("gate reason", "modelops.dev/verdict-reason"),
                       ("code version", "modelops.dev/code-version")):
        if ctags.get(key):
            facts[label] = ctags[key][:300]
    if run_id:
        facts["training run"] = run_id
    if cand.get("creation_timestamp"):
        from datetime import UTC, datetime

        facts["registered"] = datetime.fromtimestamp(int(cand["creation_timestamp"]) / 1000, UTC).strftime(
            "%Y-%m-%d %H:%M:%SZ")
    ev = from_objects(kind, obj, version, model=model, run_facts=facts, plots=plots, drift=drift)
    # offline metrics: the gate metric on the same split first, then every held-out test metric of both
    rows = list(ev.metrics)
    if not rows and ctags.get("modelops.dev/metric"):
        name = ctags["modelops.dev/metric"]
        cv = ctags.get("modelops.dev/champion-value")
        rows.append(MetricRow(f"{name} (gate, same split)", float(ctags.get("modelops.dev/metric-value", "nan")),
                              float(cv) if cv else None, not any(w in name for w in LOWER_IS_BETTER)))
    elif rows:
        rows = [MetricRow(f"{r.name} (gate, same split)", r.candidate, r.champion, r.higher_is_better)
                for r in rows]
    ctest, htest = _test_metrics(ctags), _test_metrics(htags)
    for k in sorted(ctest):
        rows.append(MetricRow(f"test {k}", ctest[k], htest.get(k), not any(w in k for w in LOWER_IS_BETTER)))
    slices = [MetricRow(k.removeprefix("slice."), v, htest.get(k), not any(w in k for w in LOWER_IS_BETTER))
              for k, v in sorted(ctest.items()) if k.startswith("slice.")]
    thresholds = metric_thresholds(obj) if kind == "modeldeployments" else {}
    canary = tuple(type(c)(c.name, c.value, thresholds.get(c.name, c.threshold), c.passed) for c in ev.canary)
    ev = Evidence(kind=ev.kind, namespace=ev.namespace, name=ev.name, model=ev.model, version=ev.version,
                  reason=ev.reason, champion_version=champion, metrics=tuple(rows),
                  slices=tuple(slices) or ev.slices, training=ev.training, canary=canary,
                  canary_weight=ev.canary_weight, drift=ev.drift, plots=ev.plots)
    return ev, {"run_id": run_id, "errors": errors}


async def _none() -> dict[str, Any]:
    return {}


def _q(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
