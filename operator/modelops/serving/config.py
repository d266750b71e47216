"""PURE: the model server's settings in one object (the CLI fills it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# KServe's storage initializer puts the model here.
DEFAULT_MODEL_DIR = Path("/mnt/models")
# Largest request body (HTTP) and message (gRPC) accepted; 8 MiB is KServe's own gRPC default.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    model_dir: Path = DEFAULT_MODEL_DIR
    model_name: str | None = None
    # the registry version being served (MODELOPS_MODEL_VERSION, set by the operator's InferenceService; by
    # hand, resolved from the registry by `modelops serve`): modelops.json is written before registration,
    # so the model directory itself cannot know it
    model_version: str | None = None
    # sha256 of the model directory the registry recorded (MODELOPS_MODEL_SHA256); verified before loading
    model_sha256: str | None = None
    # load an sklearn (pickled) model without a digest (MODELOPS_ALLOW_UNVERIFIED_PICKLE); off by default
    allow_unverified_pickle: bool = False
    http_port: int = 8080
    grpc_port: int = 8081
    grpc: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_rows: int = 10_000
    fast_path: bool = True
    tolerance: float = 1e-5
    parity_rows: int = 512
    workers: int = 1  # threads predicting concurrently (from the cgroup CPU limit)
    threads_per_request: int = 1
    inline_rows: int = 64  # fast-path batches up to this size run on the event loop (no thread hop)
    batch_max_rows: int = 0  # timed micro-batching off when 0
    # requests validated in one event-loop turn are predicted together (no added wait); batching.TurnBatcher
    coalesce: bool = True
    coalesce_max_rows: int = 64
    # the hot V1/V2 infer routes answered at the HTTP protocol level (serving.protocol); every other route,
    # and these in the cases listed there, by KServe's app
    http_fast_path: bool = True
    batch_max_delay_ms: float = 2.0
    # the asyncio loop of the REST and gRPC servers: "uvloop" (needs the uvloop package), "asyncio", or "auto"
    # (uvloop when installed). KServe's ModelServer runs its servers under asyncio.run(), which ignores uvicorn's
    # own loop setting, so without this the stock asyncio loop serves every request.
    event_loop: str = "auto"
    drain_seconds: float = 0.0  # keep serving, not ready, this long after SIGTERM before closing listeners
    grace_seconds: int = 30  # then wait this long at most for in-flight requests
    warmup_iterations: int = 200
