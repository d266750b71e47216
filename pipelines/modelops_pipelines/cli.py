"""`modelops train` and `modelops generate-data` (the trainer role's commands).

Only the standard library and typer are imported here at module level (see modelops/cli.py); pandas,
scikit-learn, MLflow and friends are imported inside the command bodies.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer


def _tame_openmp() -> None:
    # Spinning OpenMP workers burn a CFS-throttled container's quota (and a shared host's cores) while
    # waiting; measured here: HistGradientBoosting 2 threads 17.7 s (spinning) vs 2.5 s (passive). Must be
    # set before scikit-learn/xgboost load their OpenMP runtime.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def train_command(
    spec: Annotated[Path, typer.Option("--spec", help="Training spec, YAML or JSON (RetrainSchedule spec.training).")],
    termination_log: Annotated[str | None, typer.Option(
        "--termination-log", help="Where to write the result JSON. Default: $MODELOPS_TERMINATION_LOG, else "
                                  "/dev/termination-log when it exists.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", help="MLflow tracking server. Default: $MLFLOW_TRACKING_URI.")] = None,
    run_key: Annotated[str | None, typer.Option(
        "--run-key", envvar="MODELOPS_RUN_KEY",
        help="Idempotency key (e.g. the Job name): if a version with this key exists, report it instead of "
             "training again.")] = None,
) -> None:
    """Validate the dataset, search hyperparameters, log every trial to MLflow, gate against the champion,
    register a version. The result JSON is the last line on stdout and the container's termination message.

    \b
    Exit codes:
      0  trained (status succeeded, gate_failed or awaiting_approval)
      1  failed (retrying may help)
      2  invalid spec or dataset (retrying will not help)
    """
    _tame_openmp()
    from modelops_pipelines.progress import stderr_progress, waiting
    from modelops_pipelines.result import base_result, encode, termination_log_path, write_termination_log

    say = stderr_progress()
    log_path = termination_log_path(termination_log)
    real_stdout = sys.stdout
    result: dict[str, object]
    try:
        from modelops_pipelines.spec import describe_validation_error, load_spec

        if run_key is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}", run_key):
            raise ValueError(f"--run-key {run_key!r} must be letters, digits, '.', '_' or '-'")
        train_spec = load_spec(spec)
    except Exception as exc:  # pydantic.ValidationError, YAML/JSON errors, missing file, bad run key
        result = base_result(None, None)
        result["message"] = f"invalid spec {spec}: {_first_lines(describe_validation_error(exc), 12)}"
        print(f"[modelops train] FAILED: {result['message']}", file=sys.stderr)
        code = 2
    else:
        # The first run after installation spends a minute here on a busy machine (cold imports).
        with waiting(say, "importing pandas, NumPy and scikit-learn"):
            import sklearn.model_selection  # noqa: F401  (the split; imported here to be counted here)

            from modelops_pipelines.train import train

        # Libraries print to stdout (progress bars, "View run at ..."); stdout is reserved for the result.
        with contextlib.redirect_stdout(sys.stderr):
            result, code = train(train_spec, tracking_uri=tracking_uri, run_key=run_key, progress=say)
    text = encode(result)
    error = write_termination_log(text, log_path)
    if error:
        print(f"[modelops train] warning: {error}", file=sys.stderr)
    print(text, file=real_stdout, flush=True)
    raise typer.Exit(code)


def _first_lines(text: str, n: int) -> str:
    lines = text.strip().splitlines()
    return "; ".join(line.strip() for line in lines[:n]) + (" ..." if len(lines) > n else "")


def generate_data_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.csv or .parquet).")],
    rows: Annotated[int, typer.Option(help="Number of customers (at least 1).")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same arguments give byte-identical output.")] = 0,
    shift: Annotated[float, typer.Option(
        help="Distribution shift from 0 (reference) up: 1 is strongly drifted (older, poorer, more churn).")]
    = 0.0,
    missing_rate: Annotated[float, typer.Option(
        help="Share of missing values in months_on_book, credit_limit and education_level (0 to 0.9).")]
    = 0.0,
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet, or auto (from the extension).")] = "auto",
) -> None:
    """Write the deterministic credit-card churn table (target column 'churn') used by the demo."""
    # checked here rather than with typer's min/max: those print their range in --help's narrow columns
    for value, ok, name, rule in ((rows, rows >= 1, "--rows", "at least 1"), (shift, shift >= 0, "--shift", "0 or more"),
                                  (missing_rate, 0 <= missing_rate <= 0.9, "--missing-rate", "from 0 to 0.9")):
        if not ok:
            raise typer.BadParameter(f"{value} is not {rule}", param_hint=name)
    from modelops_pipelines.generate import generate_churn, write_table

    frame = generate_churn(rows=rows, seed=seed, shift=shift, missing_rate=missing_rate)
    path = write_table(frame, out, fmt)
    typer.echo(json.dumps({"path": str(path), "rows": len(frame), "churnRate": round(float(frame["churn"].mean()), 4),
                           "seed": seed, "shift": shift}))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("generate-data")(generate_data_command)
