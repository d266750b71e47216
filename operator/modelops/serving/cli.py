"""`modelops serve`: the model server. Only stdlib and typer here; the server imports happen in the command."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command(name="serve")(serve)


def serve(
    model_dir: Path = typer.Option(Path("/mnt/models"), envvar="MODELOPS_MODEL_DIR",
                                   help="MLflow model directory (KServe's storage initializer puts it in /mnt/models)."),
    model_name: str = typer.Option("", envvar="MODELOPS_MODEL_NAME",
                                   help="Name on the endpoints; default: modelName from modelops.json, else 'model'."),
    http_port: int = typer.Option(8080, envvar="MODELOPS_HTTP_PORT"),
    grpc_port: int = typer.Option(8081, envvar="MODELOPS_GRPC_PORT"),
    grpc: bool = typer.Option(True, "--grpc/--no-grpc", help="Serve Open Inference Protocol V2 over gRPC."),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, help="Largest HTTP body / gRPC message accepted (413)."),
    max_rows: int = typer.Option(10_000, help="Most rows per request (422 above)."),
    fast_path: bool = typer.Option(True, "--fast-path/--no-fast-path",
                                   help="Compile the model to ONNX Runtime when it passes the parity check."),
    tolerance: float = typer.Option(1e-5, help="Parity bar: max abs difference of probabilities (relative for "
                                               "regression values)."),
    workers: int = typer.Option(0, help="Requests predicted concurrently; 0 = the cgroup CPU limit."),
    threads_per_request: int = typer.Option(1, help="Threads one prediction may use."),
    batch_max_rows: int = typer.Option(0, help="Micro-batching: merge concurrent requests up to this many rows "
                                               "(0 = off)."),
    batch_max_delay_ms: float = typer.Option(2.0, help="Micro-batching: longest wait for more requests."),
    drain_seconds: float = typer.Option(0.0, envvar="MODELOPS_DRAIN_SECONDS",
                                        help="After SIGTERM, keep serving (readiness failing) this long."),
    grace_seconds: int = typer.Option(30, help="Then wait at most this long for in-flight requests."),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log", help="Log a line per HTTP request."),
) -> None:
    """Serve an MLflow model with KServe's V1/V2 REST and gRPC protocols, compiled to ONNX Runtime if it can be."""
    from modelops.serving.config import ServeConfig
    from modelops.serving.resources import cpu_limit
    from modelops.serving.server import run

    if not (model_dir / "MLmodel").exists():
        typer.echo(f"error: {model_dir}/MLmodel not found; --model-dir must be an MLflow model directory", err=True)
        raise typer.Exit(2)
    config = ServeConfig(
        model_dir=model_dir, model_name=model_name or None, http_port=http_port, grpc_port=grpc_port, grpc=grpc,
        max_body_bytes=max_body_bytes, max_rows=max_rows, fast_path=fast_path, tolerance=tolerance,
        workers=workers or cpu_limit(), threads_per_request=threads_per_request, batch_max_rows=batch_max_rows,
        batch_max_delay_ms=batch_max_delay_ms, drain_seconds=drain_seconds, grace_seconds=grace_seconds,
    )
    run(config, access_log=access_log)
