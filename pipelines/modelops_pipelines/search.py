"""The hyperparameter search: seeded Optuna (TPE by default) over families, with trial and time budgets.

Trials run one after another (parallel trials would make the result depend on timing); each trial's
estimator uses every CPU the container may use instead. Pruning: the median pruner compares a trial's
staged validation score with the other trials' scores at the same stage.

Data is prepared once per search, not per trial: each preprocessing kind is fitted once, and XGBoost
trials share one quantised QuantileDMatrix of the fit rows (binned once) and stop through XGBoost's own
training callbacks (the pruner's staged reports and early stopping on the validation loss). A trial that
early stopping ends records the rounds it kept (user attribute `n_estimators`); the refit uses those.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from modelops_pipelines import families as fam
from modelops_pipelines.metrics import higher_is_better, score
from modelops_pipelines.spec import SearchSpec
from modelops_pipelines.tracking import TrialRecord


class SearchError(RuntimeError):
    """The search produced no usable model."""


@dataclass
class SearchData:
    X_fit: pd.DataFrame
    y_fit: np.ndarray
    X_valid: pd.DataFrame
    y_valid: np.ndarray
    numeric: list[str]
    categorical: list[str]
    task: str
    n_classes: int | None


@dataclass
class SearchResult:
    family: str
    params: dict[str, Any]
    value: float
    best_trial: int
    trials: list[TrialRecord]
    seconds: float
    stopped_by: str  # "trials" | "timeout"
    counts: dict[str, int] = field(default_factory=dict)


def _sampler(spec: SearchSpec) -> Any:
    import optuna

    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    startup = min(10, max(5, spec.trials // 4))
    return optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=startup)


def _pruner(spec: SearchSpec) -> Any:
    import optuna

    if not spec.pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)


def _trial_params(family: str, ft: Any) -> dict[str, Any]:
    """The estimator parameters a trial actually fitted (early stopping may have kept fewer rounds)."""
    params = fam.strip_prefix(family, ft.params)
    if "n_estimators" in ft.user_attrs and "n_estimators" in params:
        params["n_estimators"] = int(ft.user_attrs["n_estimators"])
    return params


def run_search(data: SearchData, spec: SearchSpec, metric: str, *, n_jobs: int,
               on_trial: Callable[[TrialRecord], None] | None = None,
               progress: Callable[[str], None] | None = None) -> SearchResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    direction: Literal["maximize", "minimize"] = "maximize" if higher_is_better(metric) else "minimize"
    study = optuna.create_study(direction=direction, sampler=_sampler(spec), pruner=_pruner(spec))
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    xgb_cache: list[fam.XGBPrepared] = []
    records: list[TrialRecord] = []
    say = progress or (lambda _msg: None)

    def transformed(kind: str) -> tuple[np.ndarray, np.ndarray]:
        if kind not in cache:
            pre = fam.build_preprocessor(kind, data.numeric, data.categorical)
            xf = np.asarray(pre.fit_transform(data.X_fit), dtype=np.float64)
            xv = np.asarray(pre.transform(data.X_valid), dtype=np.float64)
            cache[kind] = (xf, xv)
        return cache[kind]

    def objective(trial: optuna.Trial) -> float:
        family = trial.suggest_categorical("family", list(spec.families))
        params = fam.suggest_params(trial, family, data.task)
        xf, xv = transformed(fam.preprocess_kind(family))
        last: list[float] = []

        def on_stage(step: int, pred: np.ndarray) -> None:
            value = score(metric, data.y_valid, pred, data.n_classes)
            if not math.isfinite(value):
                raise ValueError(f"validation {metric} is {value}")
            last.append(value)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            if family == "xgboost":
                if not xgb_cache:
                    xgb_cache.append(fam.XGBPrepared(xf, data.y_fit, xv, data.y_valid, n_jobs=n_jobs))
                booster = fam.staged_fit_xgb(data.task, params, xgb_cache[0], on_stage, n_classes=data.n_classes,
                                             n_jobs=n_jobs, seed=spec.seed, early_stopping=spec.pruning)
                kept = booster.num_boosted_rounds()
                if kept < params["n_estimators"]:
                    trial.set_user_attr("n_estimators", kept)
            else:
                fam.staged_fit(family, data.task, params, xf, data.y_fit, xv, on_stage, n_classes=data.n_classes,
                               n_jobs=n_jobs, seed=spec.seed, n_categorical=len(data.categorical),
                               n_numeric=len(data.numeric))
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        return last[-1]

    best_so_far: list[tuple[float, int]] = []

    def after_trial(study: optuna.Study, ft: optuna.trial.FrozenTrial) -> None:
        family = str(ft.params.get("family", "?"))
        state = ft.state.name
        start = ft.datetime_start.timestamp() if ft.datetime_start else time.time()
        end = ft.datetime_complete.timestamp() if ft.datetime_complete else time.time()
        record = TrialRecord(number=ft.number, family=family, params=_trial_params(family, ft),
                             state=state, value=ft.value if state == "COMPLETE" else None,
                             intermediate=dict(ft.intermediate_values), start_ms=int(start * 1000),
                             end_ms=int(end * 1000), error=ft.user_attrs.get("error"))
        records.append(record)
        if on_trial is not None:
            on_trial(record)
        if state == "COMPLETE" and ft.value is not None:
            better = (not best_so_far or (ft.value > best_so_far[0][0] if direction == "maximize"
                                          else ft.value < best_so_far[0][0]))
            if better:
                best_so_far[:] = [(ft.value, ft.number)]
        best = f"best {best_so_far[0][0]:.4f} (#{best_so_far[0][1] + 1})" if best_so_far else "no best yet"
        if state == "COMPLETE":
            what = f"{metric}={ft.value:.4f}"
        elif state == "PRUNED":
            what = f"pruned at stage {max(ft.intermediate_values, default=0) + 1}/{fam.STAGES}"
        else:
            what = f"failed: {record.error}"
        say(f"trial {ft.number + 1}/{spec.trials} {family:<22} {what:<28} {best}  {end - start:.1f}s")

    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    # OpenMP/BLAS pools default to the host's cores; HistGradientBoosting has no n_jobs, so cap them here.
    with threadpool_limits(limits=n_jobs):
        study.optimize(objective, n_trials=spec.trials, timeout=spec.timeout_seconds, callbacks=[after_trial],
                       catch=(Exception,), gc_after_trial=False, show_progress_bar=False)
    seconds = time.perf_counter() - started
    counts = {s: sum(1 for r in records if r.state == s) for s in ("COMPLETE", "PRUNED", "FAIL")}
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        first_error = next((r.error for r in records if r.error), "every trial was pruned")
        raise SearchError(f"no trial completed out of {len(records)}; first error: {first_error}")
    best = study.best_trial
    family = str(best.params["family"])
    stopped_by = "trials" if len(records) >= spec.trials else "timeout"
    return SearchResult(family=family, params=_trial_params(family, best), value=float(best.value or 0.0),
                        best_trial=best.number, trials=records, seconds=seconds, stopped_by=stopped_by,
                        counts={"complete": counts["COMPLETE"], "pruned": counts["PRUNED"], "failed": counts["FAIL"]})
