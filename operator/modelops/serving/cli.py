"""`modelops serve`: the model server. Only stdlib and typer here; the server imports happen in the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

# --help groups the options in three tables, so that each table's help column is wide enough to read
MODEL, SERVER, SPEED = "Model", "Server", "Prediction"


def register(app: typer.Typer) -> None:
    app.command(name="serve")(serve)


def serve(
    model_dir: Annotated[str, typer.Option(
        envvar="MODELOPS_MODEL_DIR", rich_help_panel=MODEL,
        help="MLflow model directory (KServe's storage initializer puts it in /mnt/models). A models:/ or "
             "runs:/ URI here is read as --model-uri.")] = "/mnt/models",
    model_uri: Annotated[str, typer.Option(
        envvar="MODELOPS_MODEL_URI", rich_help_panel=MODEL,
        help="Serve from the MLflow registry instead: models:/NAME/VERSION, models:/NAME@ALIAS or "
             "runs:/RUN_ID/PATH. Downloaded once into --cache-dir.")] = "",
    tracking_uri: Annotated[str, typer.Option(
        envvar="MLFLOW_TRACKING_URI", rich_help_panel=MODEL,
        help="MLflow tracking/registry server for --model-uri, and to look up a directory's version.")] = "",
    cache_dir: Annotated[Path | None, typer.Option(
        rich_help_panel=MODEL,
        help="Where --model-uri downloads are kept. Default: $MODELOPS_MODEL_CACHE, else "
             "~/.cache/modelops/models.")] = None,
    model_name: Annotated[str, typer.Option(
        envvar="MODELOPS_MODEL_NAME", rich_help_panel=MODEL,
        help="Name on the endpoints. Default: modelName from modelops.json, else the registered name, "
             "else 'model'.")] = "",
    model_version: Annotated[str, typer.Option(
        envvar="MODELOPS_MODEL_VERSION", rich_help_panel=MODEL,
        help="Registry version on the endpoints, metrics and logged responses. Default: the version "
             "--model-uri resolves to, else the version registered from the directory's MLflow run (needs "
             "--tracking-uri).")] = "",
    model_sha256: Annotated[str, typer.Option(
        envvar="MODELOPS_MODEL_SHA256", rich_help_panel=MODEL,
        help="sha256 of the model directory recorded at registration (version tag "
             "modelops.dev/artifact-sha256); other artifacts are refused.")] = "",
    allow_unverified_pickle: Annotated[bool, typer.Option(
        "--allow-unverified-pickle", envvar="MODELOPS_ALLOW_UNVERIFIED_PICKLE", rich_help_panel=MODEL,
        help="Load a pickled (sklearn) model without a digest to verify. Off by default: MLflow write "
             "access would be code execution here.")] = False,
    http_port: Annotated[int, typer.Option(
        envvar="MODELOPS_HTTP_PORT", rich_help_panel=SERVER, help="REST port (V1 and V2).")] = 8080,
    grpc_port: Annotated[int, typer.Option(
        envvar="MODELOPS_GRPC_PORT", rich_help_panel=SERVER, help="gRPC port (V2).")] = 8081,
    grpc: Annotated[bool, typer.Option(
        "--grpc/--no-grpc", rich_help_panel=SERVER, help="Serve V2 over gRPC too.")] = True,
    max_body_bytes: Annotated[int, typer.Option(
        rich_help_panel=SERVER, help="Largest HTTP body or gRPC message (413 above).")] = 8 * 1024 * 1024,
    max_rows: Annotated[int, typer.Option(
        rich_help_panel=SERVER, help="Most rows per request (422 above).")] = 10_000,
    event_loop: Annotated[str, typer.Option(
        "--loop", rich_help_panel=SERVER,
        help="Event loop: uvloop, asyncio, or auto (uvloop when installed).")] = "auto",
    access_log: Annotated[bool, typer.Option(
        "--access-log/--no-access-log", rich_help_panel=SERVER, help="Log a line per HTTP request.")] = False,
    drain_seconds: Annotated[float, typer.Option(
        envvar="MODELOPS_DRAIN_SECONDS", rich_help_panel=SERVER,
        help="After SIGTERM, keep serving (not ready) this long.")] = 0.0,
    grace_seconds: Annotated[int, typer.Option(
        rich_help_panel=SERVER, help="Then wait this long for requests in flight.")] = 30,
    fast_path: Annotated[bool, typer.Option(
        "--fast-path/--no-fast-path", rich_help_panel=SERVER,
        help="Compile the model to ONNX Runtime when it passes the parity check.")] = True,
    tolerance: Annotated[float, typer.Option(
        rich_help_panel=SPEED,
        help="Parity bar: largest difference of probabilities (relative for regression).")] = 1e-5,
    workers: Annotated[int, typer.Option(
        rich_help_panel=SPEED, help="Requests predicted at once; 0: the cgroup CPU limit.")] = 0,
    threads_per_request: Annotated[int, typer.Option(
        rich_help_panel=SPEED, help="Threads one prediction may use.")] = 1,
    inline_rows: Annotated[int, typer.Option(
        rich_help_panel=SPEED,
        help="Compiled-model calls up to this many rows run on the event loop; larger ones (and every call "
             "with 0) on the --workers threads.")] = 64,
    coalesce: Annotated[bool, typer.Option(
        "--coalesce/--no-coalesce", rich_help_panel=SERVER,
        help="Predict the requests that arrive in one event-loop turn with one model call (no added "
             "wait).")] = True,
    http_fast_path: Annotated[bool, typer.Option(
        "--raw-http/--no-raw-http", rich_help_panel=SERVER,
        help="Answer the V1/V2 infer routes at the HTTP protocol level (other routes: KServe's app).")] = True,
    batch_max_rows: Annotated[int, typer.Option(
        rich_help_panel=SPEED, help="Timed micro-batching: wait for up to this many rows (0: off).")] = 0,
    batch_max_delay_ms: Annotated[float, typer.Option(
        rich_help_panel=SPEED, help="Longest wait for a batch to fill.")] = 2.0,
) -> None:
    """Serve an MLflow model with KServe's V1/V2 REST and gRPC protocols, compiled to ONNX Runtime if it can
    be."""
    import logging

    from modelops.serving.config import ServeConfig
    from modelops.serving.resources import cpu_limit

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("modelops.serving")
    log.setLevel(logging.INFO)
    if event_loop not in ("auto", "uvloop", "asyncio"):
        _fail(f"--loop {event_loop!r}: expected auto, uvloop or asyncio")
    directory, name, version, sha256 = _model_source(model_dir, model_uri, tracking_uri, cache_dir, model_version,
                                                     log)
    if not model_name and name and not _contract(directory).get("modelName"):
        model_name = name
    config = ServeConfig(
        model_dir=directory, model_name=model_name or None, model_version=model_version or version,
        model_sha256=model_sha256 or sha256 or None, allow_unverified_pickle=allow_unverified_pickle,
        http_port=http_port, grpc_port=grpc_port, grpc=grpc,
        max_body_bytes=max_body_bytes, max_rows=max_rows, fast_path=fast_path, tolerance=tolerance,
        workers=workers or cpu_limit(), threads_per_request=threads_per_request, batch_max_rows=batch_max_rows,
        batch_max_delay_ms=batch_max_delay_ms, inline_rows=inline_rows, coalesce=coalesce,
        http_fast_path=http_fast_path,
        event_loop=event_loop, drain_seconds=drain_seconds,
        grace_seconds=grace_seconds,
    )
    from modelops.serving.loader import ArtifactRefused
    from modelops.serving.server import run

    try:
        run(config, access_log=access_log)
    except ArtifactRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None


def _model_source(model_dir: str, model_uri: str, tracking_uri: str, cache_dir: Path | None, model_version: str,
                  log: Any) -> tuple[Path, str | None, str | None, str | None]:
    """(local directory, registered name, registry version, registry digest) for the command line; exits 2 on
    bad input."""
    from modelops.serving import source

    if source.is_uri(model_dir):
        if model_uri and model_uri != model_dir:
            _fail(f"--model-dir {model_dir} and --model-uri {model_uri}: give one")
        model_uri = model_dir
    if model_uri:
        if not source.is_uri(model_uri):
            _fail(f"--model-uri {model_uri!r}: expected models:/NAME/VERSION, models:/NAME@ALIAS or "
                  f"runs:/RUN_ID/PATH (a directory goes to --model-dir)")
        if not tracking_uri:
            _fail(f"--model-uri {model_uri}: which registry? Set --tracking-uri or MLFLOW_TRACKING_URI")
        try:
            got = source.fetch(model_uri, tracking_uri, cache_dir or source.default_cache_dir())
        except source.SourceError as exc:
            _fail(str(exc))
        log.info("model %s version %s (%s)", got.name or "?", got.version or "unknown", got.origin)
        return got.directory, got.name, got.version, got.sha256
    directory = Path(model_dir)
    if not (directory / "MLmodel").exists():
        _fail(f"{directory}/MLmodel not found: --model-dir must be an MLflow model directory (or use "
              f"--model-uri models:/NAME/VERSION)")
    if model_version:
        log.info("model version %s (--model-version)", model_version)
        return directory, None, None, None
    if _contract(directory).get("version"):
        return directory, None, None, None  # the loader reads it from modelops.json
    version, why, sha256 = None, "no --tracking-uri / MLFLOW_TRACKING_URI to look it up in the registry", None
    if tracking_uri:
        version, why, sha256 = source.version_of_directory(directory, tracking_uri)
    if version:
        log.info("model version %s (%s)", version, why)
    else:
        log.warning("model version unknown (%s): endpoints, metrics and logged responses carry an empty "
                    "version; pass --model-version, or serve --model-uri models:/NAME/VERSION", why)
    return directory, None, version, sha256


def _contract(directory: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads((directory / "modelops.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
