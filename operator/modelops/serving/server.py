"""Wiring: the model, KServe's ModelServer (REST + gRPC), our hot-path layers in front of both."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from modelops.serving.config import ServeConfig

log = logging.getLogger("modelops.serving")


def run(config: ServeConfig, access_log: bool = False) -> None:
    # Per-request thread counts must be set before the native libraries start their pools.
    threads = str(config.threads_per_request)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    # kserve.model_server parses sys.argv at import time; our options are not its options.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve
        from kserve import model_server as kserve_model_server
    finally:
        sys.argv = argv

    from modelops.serving.grpc_server import ModelopsGRPCServer
    from modelops.serving.http import FastHTTP
    from modelops.serving.model import ModelopsModel, model_name_for
    from modelops.serving.protocol import ModelopsHttpProtocol

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)

    model = ModelopsModel(model_name_for(config), config)
    model.load()  # load, compile, parity check, warm-up: the ports open only after this

    if config.http_fast_path and model.turn is not None:
        # uvicorn's httptools protocol answering this model's infer routes itself (serving/protocol.py);
        # KServe builds its uvicorn Config inside ModelServer.start, so the class goes in through RESTServer
        protocol_class = ModelopsHttpProtocol.bind(model, config.max_body_bytes)
        rest_server = kserve_model_server.RESTServer

        class RESTServer(rest_server):  # type: ignore[misc,valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.config.http = protocol_class

        kserve_model_server.RESTServer = RESTServer

    class Server(kserve.ModelServer):  # type: ignore[misc]
        def start(self, models: list[Any]) -> None:
            if config.grpc:
                self._grpc_server = ModelopsGRPCServer(
                    config.grpc_port, self.dataplane, self.model_repository_extension, model,
                    max_receive_bytes=config.max_body_bytes, grace_period=config.grace_seconds)
                self.servers.append(self._grpc_server.start(max(2, config.workers)))
            super().start(models)

    server = Server(
        http_port=config.http_port,
        grpc_port=config.grpc_port,
        workers=1,
        max_threads=max(2, config.workers),
        max_asyncio_workers=max(2, config.workers),
        enable_grpc=False,  # ours is started above, with our servicer and limits
        enable_docs_url=False,
        enable_latency_logging=False,
        grace_period=config.grace_seconds,
    )
    app = kserve_model_server.app
    build = app.build_middleware_stack

    def build_with_fast_path() -> Any:
        # outermost, so that the hot path skips KServe's timing middleware and router
        return FastHTTP(build(), model, config.max_body_bytes, config.drain_seconds)

    app.build_middleware_stack = build_with_fast_path
    if not access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    loop = use_event_loop(config.event_loop)
    log.info("serving %s on http :%d, grpc :%s (%s loop; infer routes %s; %s)", model.name, config.http_port,
             config.grpc_port if config.grpc else "off", loop,
             "at the protocol level" if config.http_fast_path and model.turn is not None else "through ASGI",
             f"timed micro-batching {config.batch_max_rows} rows / {config.batch_max_delay_ms} ms"
             if model.batcher is not None else "one model call per loop turn" if model.turn is not None
             else "one model call per request")
    settle_heap()
    server.start([model])


def settle_heap() -> int:
    """Collect once, then move every object alive now (the imported libraries, the model, the app) into the
    garbage collector's permanent generation (`gc.freeze`), which its later collections skip.

    Without it each automatic full collection walks the ~200,000 objects of xgboost, scikit-learn, pandas,
    ONNX Runtime and KServe: measured 270-300 ms on the shared 2-core machine (load average 7), every request
    in flight waits for it, and a young process runs them more often (its long-lived generation is still
    small, so the 25% growth that triggers one comes sooner). That was the canary's latency-p99 of 0.27-0.32 s
    in the e2e loop, minutes after a healthy predictor had started. After the freeze a full collection walks
    only what came since: well under a millisecond. Returns the number of frozen objects."""
    import gc

    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("heap settled: %d objects moved to the permanent generation (full collections skip them)", frozen)
    return frozen


def use_event_loop(choice: str) -> str:
    """Make asyncio.run() (which KServe's ModelServer.start calls) create a uvloop loop when asked or available.

    uvicorn's own `loop` setting does not apply there: it is read only by uvicorn.run()/Server.run()."""
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ValueError(f"event loop {choice!r}: expected auto, uvloop or asyncio")
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return "asyncio"
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # KServe's setup_event_loop() asks for the current loop first; uvloop's policy has none until one is set
    asyncio.set_event_loop(asyncio.new_event_loop())
    return "uvloop"
