"""`modelops train`: validate -> search -> refit -> evaluate -> log -> gate -> register -> result.

Order matters for what a failure leaves behind: the dataset is loaded and validated before MLflow is even
imported (a bad dataset fails in seconds and registers nothing); the gate is decided before the version is
created so the version is born with its verdict tags; the alias is the last write.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelops.formats.artifacts import TAG_ARTIFACT_SHA256
from modelops_pipelines.data import (
    DatasetError,
    PreparedData,
    describe_report,
    load_table,
    validate_and_prepare,
)
from modelops_pipelines.progress import Progress, stderr_progress, waiting
from modelops_pipelines.result import base_result
from modelops_pipelines.spec import TrainSpec
from modelops_pipelines.tracking import Timings

#: name of the model metadata file next to MLmodel (read by the model server)
MODELOPS_FILENAME = "modelops.json"
#: environment variable overriding the code version recorded on versions (e.g. the image's git sha)
CODE_VERSION_ENV = "MODELOPS_CODE_VERSION"
#: exit codes: 0 trained (whatever the verdict), 1 failed (maybe transient), 2 bad spec or dataset (permanent)
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

#: MLflow log records that say nothing to the user of a training Job; routed to DEBUG (shown with
#: `logging.getLogger("mlflow").setLevel(logging.DEBUG)`). (logger name, start of the message)
MLFLOW_NOISE = (
    # every sklearn log_model with cloudpickle: the model server loads only the version it was deployed with
    ("mlflow.sklearn", "Saving scikit-learn models in the pickle or cloudpickle format"),
    # images and uv environments without pip: our requirements are pinned explicitly (pip_requirements)
    ("mlflow.utils.environment", "Failed to resolve installed pip version"),
)


class _DemoteToDebug(logging.Filter):
    """Drops the known noise records unless their logger is enabled for DEBUG (then shows them as DEBUG)."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not str(record.msg).startswith(self.prefixes):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def quiet_mlflow() -> None:
    """In the trainer's process only: no artifact-download progress bars, the known warnings to DEBUG.

    The trainer's own progress lines say what is downloaded and why; tqdm bars written with carriage
    returns make a Job log unreadable. MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=true in the environment
    brings the bars back.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    by_logger: dict[str, list[str]] = {}
    for name, prefix in MLFLOW_NOISE:
        by_logger.setdefault(name, []).append(prefix)
    for name, prefixes in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DemoteToDebug) for f in logger.filters):
            logger.addFilter(_DemoteToDebug(tuple(prefixes)))


def local_store_notice(uri: str, cwd: Path) -> str:
    """The one line printed when no tracking server is configured: where runs go, how to use a server."""
    return (f"no MLflow tracking server set (--tracking-uri or MLFLOW_TRACKING_URI): runs and models go to "
            f"local files, {uri} and {cwd / 'mlruns'}; to use a server: "
            f"export MLFLOW_TRACKING_URI=http://HOST:5000")


def code_version() -> str:
    env = os.environ.get(CODE_VERSION_ENV)
    if env:
        return env
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelops")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Split:
    train: np.ndarray  # row indices used to fit the final model (fit + valid)
    test: np.ndarray   # held-out rows for evaluation and the gate
    fit: np.ndarray    # the search fits on these ...
    valid: np.ndarray  # ... and scores on these


def _split_two(index: np.ndarray, fraction: float, y: np.ndarray | None, order: np.ndarray | None,
               seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    n_hold = max(1, math.ceil(len(index) * fraction))
    if n_hold >= len(index):
        raise DatasetError(f"too few rows ({len(index)}) for a {what} split of {fraction:.0%}")
    if order is not None:  # time-ordered: the latest rows are held out
        ranked = index[np.argsort(order[index], kind="stable")]
        return ranked[:-n_hold], ranked[-n_hold:]
    from sklearn.model_selection import train_test_split

    try:
        a, b = train_test_split(index, test_size=n_hold, random_state=seed,
                                stratify=None if y is None else y[index])
    except ValueError as exc:
        raise DatasetError(f"cannot make a stratified {what} split: {exc}") from None
    return np.sort(a), np.sort(b)


def make_split(data: PreparedData, test_fraction: float, validation_fraction: float, seed: int) -> Split:
    n = len(data.X)
    idx = np.arange(n)
    y = data.y.to_numpy() if data.classes is not None else None
    order = None
    if data.time is not None:
        t = data.time
        order = (t.astype("int64") if not pd.api.types.is_numeric_dtype(t) else t).to_numpy()
    train, test = _split_two(idx, test_fraction, y, order, seed, "test")
    fit, valid = _split_two(train, validation_fraction, y, order, seed + 1, "validation")
    return Split(train=train, test=test, fit=fit, valid=valid)


def split_with_test(data: PreparedData, test_mask: np.ndarray, validation_fraction: float, seed: int) -> Split:
    """The split of an out-of-core sample, whose held-out rows were chosen while streaming."""
    idx = np.arange(len(data.X))
    y = data.y.to_numpy() if data.classes is not None else None
    train, test = idx[~test_mask], idx[test_mask]
    fit, valid = _split_two(train, validation_fraction, y, None, seed + 1, "validation")
    return Split(train=train, test=test, fit=fit, valid=valid)


def _feature_meta(data: PreparedData) -> list[dict[str, Any]]:
    cats = set(data.categorical)
    return [{"name": f, "dtype": "string" if f in cats else "float64", "categorical": f in cats}
            for f in data.features]


def _signature(data: PreparedData) -> Any:
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    cats = set(data.categorical)
    inputs = Schema([ColSpec("string" if f in cats else "double", f) for f in data.features])
    outputs = Schema([ColSpec("long" if data.classes is not None else "double")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _input_example(X: pd.DataFrame) -> pd.DataFrame:
    complete = X.dropna()
    return (complete if len(complete) >= 3 else X).head(3).reset_index(drop=True)


def _pip_requirements(family: str) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["mlflow", "scikit-learn", "pandas", "numpy", "scipy", "cloudpickle"]
    if family == "xgboost":
        names.append("xgboost")
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def permutation_importance(model: Any, X: pd.DataFrame, y: np.ndarray, metric: str, n_classes: int | None,
                           task: str, *, seed: int, max_rows: int = 1000, repeats: int = 3) -> dict[str, float]:
    """Mean loss of `metric` when one input column is shuffled, on (a sample of) the held-out split.

    All shuffled copies are scored in one predict call: per-call pipeline overhead dominates otherwise.
    """
    from modelops_pipelines.families import predict_scores
    from modelops_pipelines.metrics import improvement, score

    rng = np.random.default_rng(seed)
    if len(X) > max_rows:
        pick = np.sort(rng.choice(len(X), max_rows, replace=False))
        X, y = X.iloc[pick].reset_index(drop=True), y[pick]
    X = X.reset_index(drop=True)
    n = len(X)
    columns = [str(c) for c in X.columns]
    encoded = _columnwise_encoded(model, X)
    if encoded is not None:  # shuffle the encoded columns: the same values as encoding shuffled columns
        matrix, final, position = encoded
        blocks = [matrix]
        for col in columns:
            i = position[col]
            for _ in range(repeats):
                shuffled = matrix.copy()
                shuffled[:, i] = matrix[rng.permutation(n), i]
                blocks.append(shuffled)
        pred = predict_scores(final, np.vstack(blocks), task)
    else:
        copies = []
        for col in columns:
            for _ in range(repeats):
                shuffled = X.copy()
                shuffled[col] = X[col].to_numpy()[rng.permutation(n)]
                copies.append(shuffled)
        pred = predict_scores(model, pd.concat([X, *copies], ignore_index=True), task)
    base = score(metric, y, pred[:n], n_classes)
    out: dict[str, float] = {}
    for i, col in enumerate(columns):
        drops = [improvement(metric, base, score(metric, y, pred[n * (1 + i * repeats + r): n * (2 + i * repeats + r)],
                                                 n_classes)) for r in range(repeats)]
        out[col] = float(np.mean(drops))
    return out


def _columnwise_encoded(model: Any, X: pd.DataFrame) -> tuple[np.ndarray, Any, dict[str, int]] | None:
    """(X encoded by the pipeline's preprocessing, the final estimator, each input column's output column)
    when that preprocessing maps each input column to one output column independently of the others (the
    tree families' passthrough + ordinal encoding); None otherwise (e.g. one-hot encoding).

    Permutation importance then encodes the sample once instead of once per shuffled copy.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    if not isinstance(model, Pipeline) or len(model.steps) != 2 or not isinstance(model.steps[0][1], ColumnTransformer):
        return None
    pre = model.steps[0][1]
    order: list[str] = []
    if getattr(pre, "remainder", "drop") != "drop":
        return None
    for _name, transformer, cols in pre.transformers:  # as configured (fitted, "passthrough" is a function)
        if isinstance(transformer, str) and transformer == "drop":
            continue
        if not ((isinstance(transformer, str) and transformer == "passthrough")
                or isinstance(transformer, OrdinalEncoder)):
            return None
        order.extend(str(c) for c in cols)
    if sorted(order) != sorted(str(c) for c in X.columns) or len(set(order)) != len(order):
        return None
    matrix = np.asarray(pre.transform(X), dtype=np.float64)
    if matrix.shape != (len(X), len(order)):
        return None
    return matrix, model.steps[1][1], {c: i for i, c in enumerate(order)}


def _store_step(uri: str) -> str:
    """What the first contact with the tracking store is waiting for, in words."""
    if uri.startswith(("http://", "https://")):
        return f"connecting to the MLflow tracking server {uri}"
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return f"creating the local MLflow store {uri} (first use: creating its tables takes 10-30 s)"
    return f"opening the MLflow store {uri}"


class Trainer:
    """One training run. `run()` never raises; it returns (result, exit_code)."""

    def __init__(self, spec: TrainSpec, *, tracking_uri: str | None = None, run_key: str | None = None,
                 progress: Progress | None = None, synchronous_logging: bool = False) -> None:
        self.spec = spec
        self.tracking_uri = tracking_uri
        self.run_key = run_key
        self.say = progress or stderr_progress()
        self.synchronous_logging = synchronous_logging
        self.timings = Timings()
        self.result = base_result(spec.model_name, spec.dataset.uri)
        self._run_id: str | None = None
        self._scanned: Any = None  # an outofcore.Scanned when the table is trained out of core
        self._memory_budget: int | None = None

    # -- entry point -----------------------------------------------------------------------------------
    def run(self) -> tuple[dict[str, Any], int]:
        started = time.perf_counter()
        code = EXIT_OK
        try:
            self._run()
        except DatasetError as exc:
            self.result.update(status="failed", message=f"invalid dataset: {exc}")
            self.say(f"FAILED: invalid dataset: {exc}")
            code = EXIT_INVALID
        except Exception as exc:
            self.result.update(status="failed", message=f"{type(exc).__name__}: {exc}")
            self.say(f"FAILED: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            self._fail_parent_run(exc)
            code = EXIT_FAILED
        self.timings.add("total", time.perf_counter() - started)
        self.result["timings"] = self.timings.as_dict()
        return self.result, code

    # -- the steps -------------------------------------------------------------------------------------
    def _run(self) -> None:
        spec, say = self.spec, self.say
        from modelops_pipelines import outofcore

        with self.timings.measure("load"):
            plan = outofcore.plan(spec.dataset)
            if plan.stream:
                assert plan.source is not None
                outofcore.require_xgboost(spec)
                say(f"training {spec.dataset.uri} out of core: {plan.reason}")
                self._scanned = outofcore.scan(spec, plan.source, say)
                self._memory_budget = plan.memory_budget
                table, data = self._scanned.table, self._scanned.data
                self.result["datasetHash"] = f"sha256:{table.sha256}"
                split = split_with_test(data, self._scanned.test_mask, spec.split.validation_fraction,
                                        spec.split.seed)
            else:
                say(f"loading {spec.dataset.uri}")
                table = load_table(spec.dataset)
                self.result["datasetHash"] = f"sha256:{table.sha256}"
                data = validate_and_prepare(table.frame, spec)
                split = make_split(data, spec.split.test_fraction, spec.split.validation_fraction,
                                   spec.split.seed)
        say(f"dataset ok: {describe_report(data.report)}; sha256 {table.sha256[:12]}; "
            f"split {len(split.fit)} fit / {len(split.valid)} valid / {len(split.test)} test"
            + (" (time-ordered)" if data.time is not None else ""))

        with waiting(say, "importing MLflow"):
            import mlflow
            from mlflow import MlflowClient
            from threadpoolctl import threadpool_limits

        from modelops_pipelines.resources import available_cpus

        os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")  # explicit pip requirements only
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # one "View run" per trial
        quiet_mlflow()
        configured = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        uri = configured or mlflow.get_tracking_uri()
        if not configured:
            say(local_store_notice(uri, Path.cwd()))
        n_jobs = available_cpus()

        # The first call creates the store: an HTTP round trip to a server (retried while it is down), or
        # for a local sqlite file, creating and migrating its tables (10-30 s on first use).
        what = _store_step(uri)
        with waiting(say, what):
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            if self.run_key and self._resume_from_run_key(client):
                return
            with self.timings.measure("mlflow"):
                experiment_id = self._experiment_id(client)
        say(f"tracking {uri}; {n_jobs} thread(s) from the CPU limit")
        with self.timings.measure("mlflow"):
            parent = client.create_run(experiment_id, run_name=f"train-{spec.model_name}", tags=self._run_tags(table))
        self._run_id = parent.info.run_id
        self.result.update(runId=self._run_id, experimentId=experiment_id)
        with threadpool_limits(limits=n_jobs):
            self._train_in_run(mlflow, client, experiment_id, table, data, split, n_jobs)

    def _experiment_id(self, client: Any) -> str:
        from mlflow.exceptions import MlflowException

        name = self.spec.experiment_name
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return str(exp.experiment_id)
        try:
            return str(client.create_experiment(name))
        except MlflowException:  # created concurrently by another training
            again = client.get_experiment_by_name(name)
            if again is None:
                raise
            return str(again.experiment_id)

    def _run_tags(self, table: Any) -> dict[str, str]:
        tags = {
            "modelops.dev/model-name": self.spec.model_name,
            "modelops.dev/dataset-uri": table.uri,
            "modelops.dev/dataset-sha256": table.sha256,
            "modelops.dev/code-version": code_version(),
            "mlflow.source.name": "modelops train",
            "mlflow.source.type": "JOB",
        }
        if self.run_key:
            tags["modelops.dev/run-key"] = self.run_key
        return tags

    def _train_in_run(self, mlflow: Any, client: Any, experiment_id: str, table: Any, data: PreparedData,
                      split: Split, n_jobs: int) -> None:
        from mlflow.entities import Metric, Param

        from modelops_pipelines import families as fam
        from modelops_pipelines.metrics import all_scores
        from modelops_pipelines.search import SearchData, run_search
        from modelops_pipelines.tracking import TrialLogger

        spec, say, run_id = self.spec, self.say, self._run_id
        assert run_id is not None
        metric = spec.search_metric
        n_classes = len(data.classes) if data.classes is not None else None
        X, y = data.X, data.y.to_numpy()

        with self.timings.measure("mlflow"):
            params = {
                "model_name": spec.model_name, "task": data.task, "target": spec.dataset.target,
                "metric": metric, "promotion_metric": spec.promotion_metric,
                "trial_budget": spec.search.trials, "time_budget_s": spec.search.timeout_seconds,
                "families": ",".join(spec.search.families), "sampler": spec.search.sampler,
                "pruning": spec.search.pruning, "seed": spec.search.seed, "split_seed": spec.split.seed,
                "test_fraction": spec.split.test_fraction, "n_jobs": n_jobs,
                "rows": data.report.get("rows_used", len(X)), "out_of_core": self._scanned is not None,
                "features": len(data.features), "categorical_features": len(data.categorical),
                "classes": n_classes if n_classes is not None else "-",
            }
            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
            with tempfile.TemporaryDirectory() as meta_dir:
                Path(meta_dir, "spec.json").write_text(spec.model_dump_json(by_alias=True, indent=1))
                Path(meta_dir, "validation_report.json").write_text(json.dumps(data.report, indent=1, default=str))
                client.log_artifacts(run_id, meta_dir)

        logger = TrialLogger(client=client, experiment_id=experiment_id, parent_run_id=run_id, metric=metric,
                             timings=self.timings, synchronous=self.synchronous_logging)
        logger.start()
        search_data = SearchData(X_fit=X.iloc[split.fit], y_fit=y[split.fit], X_valid=X.iloc[split.valid],
                                 y_valid=y[split.valid], numeric=data.numeric, categorical=data.categorical,
                                 task=data.task, n_classes=n_classes)
        search_spec = spec.search
        if self._scanned is not None:  # only XGBoost refits out of core
            search_spec = spec.search.model_copy(update={"families": ["xgboost"]})
        say(f"searching: {search_spec.trials} trials max, {search_spec.timeout_seconds or 'no'} s budget, "
            f"families {', '.join(search_spec.families)}, {metric} on the validation split"
            + (f" of a {len(X)}-row sample" if self._scanned is not None else ""))
        try:
            with self.timings.measure("search"):
                found = run_search(search_data, search_spec, metric, n_jobs=n_jobs, on_trial=logger.submit,
                                   progress=say)
        finally:
            logger.flush()
        n_trials = len(found.trials)
        self.result.update(trials=n_trials, trialCounts=found.counts, family=found.family)
        say(f"search done in {found.seconds:.1f}s ({found.stopped_by} budget): {found.counts}; best trial "
            f"#{found.best_trial + 1} {found.family} valid {metric}={found.value:.4f}")

        # Refit the best configuration on all training rows (fit + valid); the test split stays unseen.
        with self.timings.measure("refit"):
            X_train, y_train = X.iloc[split.train], y[split.train]
            X_test, y_test = X.iloc[split.test], y[split.test]
            if self._scanned is not None:
                from modelops_pipelines import outofcore

                pipeline = outofcore.refit_xgboost(self._scanned, spec, found.params, n_jobs=n_jobs,
                                                   memory_budget=self._memory_budget, progress=say)
            else:
                pipeline = fam.build_pipeline(found.family, data.task, found.params, numeric=data.numeric,
                                              categorical=data.categorical, n_classes=n_classes, n_jobs=n_jobs,
                                              seed=spec.search.seed)
                pipeline.fit(X_train, y_train)
            test_pred = fam.predict_scores(pipeline, X_test, data.task)
            test_scores = all_scores(data.task, y_test, test_pred, n_classes)
        promo = spec.promotion_metric
        value = test_scores[promo]
        self.result.update(metric={"name": promo, "value": value}, metrics=test_scores)
        say("held-out test: " + ", ".join(f"{k}={v:.4f}" for k, v in test_scores.items()))

        say("writing charts, feature importance and the reference profile")
        with tempfile.TemporaryDirectory() as tmp_str:
            work = Path(tmp_str)
            with self.timings.measure("artifacts"):
                plots_dir = work / "plots"
                plots_dir.mkdir()
                importance = self._charts(pipeline, X_test, y_test, test_pred, data, n_classes, plots_dir)
                model_files = work / "model_files"
                model_files.mkdir()
                calibration = fit_calibration(data, X_test, y_test, test_pred, spec.search.seed)
                self._model_files(pipeline, X_train, data, found.family, promo, value, model_files,
                                  calibration)
            with self.timings.measure("mlflow"):
                client.log_artifacts(run_id, str(plots_dir), "plots")
                client.log_text(run_id, json.dumps(importance, indent=1), "feature_importance.json")
                metrics = [Metric(f"test_{k}", v, int(time.time() * 1000), 0) for k, v in test_scores.items()]
                metrics += [Metric("best_valid_" + metric, found.value, int(time.time() * 1000), 0),
                            Metric("trials_complete", found.counts["complete"], int(time.time() * 1000), 0),
                            Metric("trials_pruned", found.counts["pruned"], int(time.time() * 1000), 0),
                            Metric("search_seconds", found.seconds, int(time.time() * 1000), 0)]
                best_params = [Param("best_family", found.family)] + [
                    Param(f"best.{k}", f"{v:.6g}" if isinstance(v, float) else str(v))
                    for k, v in sorted(found.params.items())]
                client.log_batch(run_id, metrics=metrics, params=best_params)
            with (waiting(say, f"logging the model to {mlflow.get_tracking_uri()}"),
                  self.timings.measure("log_model"), mlflow.start_run(run_id=run_id, nested=False)):
                info = mlflow.sklearn.log_model(
                    pipeline, name="model", signature=_signature(data),
                    input_example=_input_example(X_train), pip_requirements=_pip_requirements(found.family),
                    serialization_format="cloudpickle")
                # Our two files go to the root of the model directory (extra_files would nest them).
                client.log_model_artifacts(info.model_id, str(model_files))
        self.result.update(source=info.model_uri, artifactUri=info.artifact_path)
        say(f"logged model {info.model_uri}")

        with self.timings.measure("gate"):
            self._gate_and_register(client, table, data, X_test, y_test, value, found, info, test_scores)

    def _charts(self, pipeline: Any, X_test: pd.DataFrame, y_test: np.ndarray, test_pred: np.ndarray,
                data: PreparedData, n_classes: int | None, out: Path) -> dict[str, float]:
        from modelops_pipelines import plots

        metric = self.spec.promotion_metric
        if data.classes is not None:
            names = [str(c) for c in data.classes]
            plots.roc_pr_curves(y_test, test_pred, names, out / "roc_pr_curves.png")
            plots.confusion(y_test, test_pred.argmax(axis=1), names, out / "confusion_matrix.png")
        else:
            plots.residuals(y_test, test_pred, out / "residuals.png")
        importance = permutation_importance(pipeline, X_test, y_test, metric, n_classes, data.task,
                                            seed=self.spec.search.seed)
        plots.feature_importance(importance, out / "feature_importance.png",
                                 f"Permutation importance (drop in test {metric})")
        return importance

    def _model_files(self, pipeline: Any, X_train: pd.DataFrame, data: PreparedData, family: str, metric: str,
                     value: float, out: Path, calibration: dict[str, Any] | None = None) -> None:
        from modelops.formats.quality import CALIBRATION_KEY
        from modelops.formats.reference_profile import write_profile
        from modelops_pipelines.profile import build_reference_profile

        predicted = pipeline.predict(X_train)
        if data.classes is not None:
            classes = data.classes
            predicted = np.asarray([classes[int(i)] for i in predicted], dtype=object)
        profile = build_reference_profile(X_train[data.features], task=data.task, categorical=data.categorical,
                                          predictions=predicted)
        if calibration is not None:  # fitted on the held-out split: the exporter's label-free estimates
            profile[CALIBRATION_KEY] = calibration
        write_profile(profile, out)
        meta = {
            "task": data.task,
            "target": self.spec.dataset.target,
            "features": _feature_meta(data),
            "classes": data.classes,
            "metric": {"name": metric, "value": value},
            "family": family,
            "modelName": self.spec.model_name,
            "runId": self._run_id,
            "datasetUri": self.spec.dataset.uri,
            "datasetHash": self.result["datasetHash"],
            "codeVersion": code_version(),
        }
        (out / MODELOPS_FILENAME).write_text(json.dumps(meta, indent=1, default=str))

    def _gate_and_register(self, client: Any, table: Any, data: PreparedData, X_test: pd.DataFrame,
                           y_test: np.ndarray, value: float, found: Any, info: Any,
                           test_scores: dict[str, float]) -> None:
        from modelops_pipelines import registry
        from modelops_pipelines.gate import decide

        spec, say = self.spec, self.say
        metric = spec.promotion_metric
        champ = registry.alias_version(client, spec.model_name, registry.CHAMPION_ALIAS)
        champ_value, champ_error = None, None
        if champ is not None:
            say(f"scoring the champion v{champ.version} on the same test rows (downloading {champ.source})")
            with self.timings.measure("champion"):
                champ_value, champ_error = self._score_champion(champ, data, X_test, y_test)
            self.result["champion"] = {"version": str(champ.version), "value": champ_value}
        decision = decide(metric, value, champ_value, spec.promotion.min_improvement,
                          None if champ is None else str(champ.version), champ_error)
        say(f"gate: {decision.reason}")
        tags = {
            "modelops.dev/metric": metric,
            "modelops.dev/metric-value": f"{value:.6g}",
            **{f"modelops.dev/test.{k}": f"{v:.6g}" for k, v in test_scores.items()},
            "modelops.dev/dataset-uri": table.uri,
            "modelops.dev/dataset-sha256": table.sha256,
            "modelops.dev/code-version": code_version(),
            "modelops.dev/trials": str(len(found.trials)),
            "modelops.dev/family": found.family,
            registry.TAG_VERDICT: decision.verdict,
            "modelops.dev/verdict-reason": decision.reason[:5000],
        }
        if champ is not None:
            tags["modelops.dev/champion-version"] = str(champ.version)
            if champ_value is not None:
                tags["modelops.dev/champion-value"] = f"{champ_value:.6g}"
        if self.run_key:
            tags[registry.TAG_RUN_KEY] = self.run_key
        with self.timings.measure("digest"):
            # the model server verifies this before unpickling anything (issue 16, H3)
            tags[TAG_ARTIFACT_SHA256] = registry.artifact_digest(info.model_uri, client.tracking_uri)
        hold = decision.passed and spec.promotion.require_approval
        if hold:
            tags[registry.TAG_APPROVAL] = "pending"
        with self.timings.measure("mlflow"):
            assert self._run_id is not None
            version, created = registry.register_version(client, spec.model_name, source=info.model_uri,
                                                         run_id=self._run_id, model_id=info.model_id, tags=tags)
            if decision.passed and not hold:
                registry.set_alias(client, spec.model_name, registry.CHALLENGER_ALIAS, str(version.version))
            client.set_terminated(self._run_id, "FINISHED")
            for k, v in (("modelops.dev/verdict", decision.verdict), ("modelops.dev/version", str(version.version))):
                client.set_tag(self._run_id, k, v)
        status = "awaiting_approval" if hold else ("succeeded" if decision.passed else "gate_failed")
        what = {"succeeded": f"alias {registry.CHALLENGER_ALIAS!r} -> v{version.version}",
                "awaiting_approval": "held for approval (modelops.dev/approval=pending)",
                "gate_failed": "registered, not promoted"}[status]
        self.result.update(status=status, version=str(version.version), verdict=decision.verdict,
                           message=f"{spec.model_name} v{version.version}: {decision.reason}; {what}")
        say(f"{'registered' if created else 'found existing'} {spec.model_name} v{version.version}: {status}")

    def _score_champion(self, champ: Any, data: PreparedData, X_test: pd.DataFrame,
                        y_test: np.ndarray) -> tuple[float | None, str | None]:
        """The champion's promotion metric on the same held-out rows, or why it cannot be scored."""
        import mlflow

        from modelops_pipelines.families import predict_scores
        from modelops_pipelines.metrics import score

        try:
            with tempfile.TemporaryDirectory() as tmp:
                local = mlflow.artifacts.download_artifacts(artifact_uri=champ.source, dst_path=tmp)
                meta_path = Path(local) / MODELOPS_FILENAME
                meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
                model = mlflow.sklearn.load_model(local)
            if meta.get("task", data.task) != data.task:
                return None, f"its task is {meta.get('task')!r}, this training's is {data.task!r}"
            if meta.get("target", self.spec.dataset.target) != self.spec.dataset.target:
                return None, f"it predicts {meta.get('target')!r}, not {self.spec.dataset.target!r}"
            if data.classes is not None and "classes" in meta and meta["classes"] != data.classes:
                return None, f"its classes {meta['classes']} differ from {data.classes}"
            columns = [f["name"] for f in meta.get("features", [])] or list(data.features)
            missing = [c for c in columns if c not in X_test.columns]
            if missing:
                return None, f"its input columns {missing} are not in this dataset's features"
            pred = predict_scores(model, X_test[columns], data.task)
            n_classes = len(data.classes) if data.classes is not None else None
            return score(self.spec.promotion_metric, y_test, pred, n_classes), None
        except Exception as exc:
            return None, f"{type(exc).__name__}: {str(exc)[:300]}"

    def _resume_from_run_key(self, client: Any) -> bool:
        """An earlier attempt with the same run key registered a version: report it, finish its alias."""
        from modelops_pipelines import registry

        key = self.run_key
        assert key is not None
        with self.timings.measure("mlflow"):
            try:
                version = registry.version_for_run_key(client, self.spec.model_name, key)
            except Exception as exc:  # no registered model yet, or the filter is unsupported
                self.say(f"run key lookup failed ({type(exc).__name__}: {exc}); training")
                return False
            if version is None:
                return False
            tags = dict(version.tags or {})
            verdict = tags.get(registry.TAG_VERDICT)
            pending = tags.get(registry.TAG_APPROVAL) == "pending"
            if verdict == "passed" and not pending:
                registry.set_alias(client, self.spec.model_name, registry.CHALLENGER_ALIAS, str(version.version))
        status = "gate_failed" if verdict != "passed" else ("awaiting_approval" if pending else "succeeded")
        value = tags.get("modelops.dev/metric-value")
        champion = None
        if "modelops.dev/champion-version" in tags:
            cv = tags.get("modelops.dev/champion-value")
            champion = {"version": tags["modelops.dev/champion-version"], "value": float(cv) if cv else None}
        self.result.update(
            status=status, version=str(version.version), runId=version.run_id, verdict=verdict,
            metric={"name": tags.get("modelops.dev/metric"), "value": float(value) if value else None},
            champion=champion, trials=int(tags.get("modelops.dev/trials", "0")),
            datasetHash=f"sha256:{tags['modelops.dev/dataset-sha256']}" if "modelops.dev/dataset-sha256" in tags
            else self.result["datasetHash"],
            message=f"run key {key!r} already registered {self.spec.model_name} v{version.version} "
                    f"({verdict}); nothing retrained")
        self.say(self.result["message"])
        return True

    def _fail_parent_run(self, exc: BaseException) -> None:
        if self._run_id is None:
            return
        try:
            from mlflow import MlflowClient

            uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
            client = MlflowClient(tracking_uri=uri)
            client.set_tag(self._run_id, "modelops.dev/error", f"{type(exc).__name__}: {exc}"[:4000])
            client.set_terminated(self._run_id, "FAILED")
        except Exception as inner:  # the server may be what failed
            self.say(f"could not mark run {self._run_id} failed: {inner}")


def fit_calibration(data: PreparedData, X_test: pd.DataFrame, y_test: np.ndarray, test_pred: np.ndarray,
                    seed: int) -> dict[str, Any] | None:
    """The calibrator of the held-out split (modelops_pipelines.calibration), or None when it cannot be fitted."""
    from modelops_pipelines import calibration as cal

    if data.classes is not None and len(data.classes) > 2:
        return cal.fit_multiclass(y_test, test_pred, data.classes)  # multi-class CBPE (isotonic_ovr)
    if data.classes is not None:
        return cal.fit_classification(y_test, test_pred, data.classes)
    return cal.fit_regression(X_test, y_test, test_pred, data.numeric, seed=seed)


def train(spec: TrainSpec, **kwargs: Any) -> tuple[dict[str, Any], int]:
    """Run one training; see Trainer for the keyword arguments. Returns (result, exit code)."""
    return Trainer(spec, **kwargs).run()
