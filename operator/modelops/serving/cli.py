"""`modelops serve`: the model server. Only stdlib and typer here; the server imports happen in the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command(name="serve")(serve)


def serve(
    model_dir: Annotated[Path, typer.Option(envvar="MODELOPS_MODEL_DIR", help="MLflow model directory (KServe's storage initializer puts it in /mnt/models).")] = Path("/mnt/models"),
    model_name: Annotated[str, typer.Option(envvar="MODELOPS_MODEL_NAME", help="Name on the endpoints; default: modelName from modelops.json, else 'model'.")] = "",
    model_version: Annotated[str, typer.Option(envvar="MODELOPS_MODEL_VERSION", help="Registry version on the endpoints, metrics and logged responses; default: version from modelops.json.")] = "",
    model_sha256: Annotated[str, typer.Option(envvar="MODELOPS_MODEL_SHA256", help="sha256 of the model directory recorded at registration (the version tag modelops.dev/artifact-sha256); the server refuses other artifacts.")] = "",
    allow_unverified_pickle: Annotated[bool, typer.Option(envvar="MODELOPS_ALLOW_UNVERIFIED_PICKLE", help="Load a pickled (sklearn) model without a digest to verify. Off: MLflow write access would be code execution here.")] = False,
    http_port: Annotated[int, typer.Option(envvar="MODELOPS_HTTP_PORT")] = 8080,
    grpc_port: Annotated[int, typer.Option(envvar="MODELOPS_GRPC_PORT")] = 8081,
    grpc: Annotated[bool, typer.Option("--grpc/--no-grpc", help="Serve Open Inference Protocol V2 over gRPC.")] = True,
    max_body_bytes: Annotated[int, typer.Option(help="Largest HTTP body / gRPC message accepted (413).")] = 8 * 1024 * 1024,
    max_rows: Annotated[int, typer.Option(help="Most rows per request (422 above).")] = 10_000,
    fast_path: Annotated[bool, typer.Option("--fast-path/--no-fast-path", help="Compile the model to ONNX Runtime when it passes the parity check.")] = True,
    tolerance: Annotated[float, typer.Option(help="Parity bar: max abs difference of probabilities (relative for regression values).")] = 1e-5,
    workers: Annotated[int, typer.Option(help="Requests predicted concurrently; 0 = the cgroup CPU limit.")] = 0,
    threads_per_request: Annotated[int, typer.Option(help="Threads one prediction may use.")] = 1,
    batch_max_rows: Annotated[int, typer.Option(help="Micro-batching: merge concurrent requests up to this many rows (0 = off).")] = 0,
    batch_max_delay_ms: Annotated[float, typer.Option(help="Micro-batching: longest wait for more requests.")] = 2.0,
    drain_seconds: Annotated[float, typer.Option(envvar="MODELOPS_DRAIN_SECONDS", help="After SIGTERM, keep serving (readiness failing) this long.")] = 0.0,
    grace_seconds: Annotated[int, typer.Option(help="Then wait at most this long for in-flight requests.")] = 30,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log a line per HTTP request.")] = False,
) -> None:
    """Serve an MLflow model with KServe's V1/V2 REST and gRPC protocols, compiled to ONNX Runtime if it can be."""
    from modelops.serving.config import ServeConfig
    from modelops.serving.resources import cpu_limit
    from modelops.serving.server import run

    if not (model_dir / "MLmodel").exists():
        typer.echo(f"error: {model_dir}/MLmodel not found; --model-dir must be an MLflow model directory", err=True)
        raise typer.Exit(2)
    config = ServeConfig(
        model_dir=model_dir, model_name=model_name or None, model_version=model_version or None,
        model_sha256=model_sha256 or None, allow_unverified_pickle=allow_unverified_pickle,
        http_port=http_port, grpc_port=grpc_port, grpc=grpc,
        max_body_bytes=max_body_bytes, max_rows=max_rows, fast_path=fast_path, tolerance=tolerance,
        workers=workers or cpu_limit(), threads_per_request=threads_per_request, batch_max_rows=batch_max_rows,
        batch_max_delay_ms=batch_max_delay_ms, drain_seconds=drain_seconds, grace_seconds=grace_seconds,
    )
    from modelops.serving.loader import ArtifactRefused

    try:
        run(config, access_log=access_log)
    except ArtifactRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
