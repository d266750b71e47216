"""The REST hot path in one process, without sockets: CPU per request of `modelops serve`'s own Python code.

    uv run python bench/serving_hotpath.py [--requests 20000] [--concurrency 5] [--profile FILE] [--callgrind]

The model server as deployed (serving/server.py) minus the network: the bench XGBoost model of
bench/serving_latency.py loaded and compiled by `ModelopsModel`, uvicorn's server state, and
`ModelopsHttpProtocol` bound to it; `--concurrency` connections over transports that only keep what is written.
Each event-loop turn every connection receives one single-row KServe V2 request (the body
bench/serving_saturation.py sends), so one turn is one model call of `--concurrency` rows, as under load
(the quiet-machine saturation run measured 4.6 rows per call at concurrency 32). What is left out is what the
kernel and uvloop do per request (accept, read, write system calls): that part is the same for any server on
the same stack, and the echo app of bench/serving_baselines.py pays it too.

Prints JSON: CPU microseconds per request (process time, over --rounds interleaved rounds: min and median),
and checks every answer against the first one byte for byte (except the date header). --profile writes
cProfile stats of one more round (read them with `python -m pstats FILE`); --callgrind runs one round with
callgrind's instrumentation switched on around it (start this script under `valgrind --tool=callgrind
--instr-atstart=no`): instruction counts do not depend on the host's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from serving_latency import FEATURES, build_model, rows  # noqa: E402

from tests.fixtures.asgi_transport import Transport  # noqa: E402


def request_bytes(name: str) -> bytes:
    flat = [v for row in rows(1).tolist() for v in row]
    body = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, FEATURES],
                                   "data": flat}]}).encode()
    return (f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: hey/0.0.1\r\n"
            f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n\r\n").encode() + body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000, help="requests per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=5, help="connections, each one request per loop turn")
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--callgrind", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    argv, sys.argv = sys.argv, sys.argv[:1]
    import kserve  # noqa: F401  (parses sys.argv at import)

    sys.argv = argv
    import logging

    import uvloop
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from modelops.serving.config import ServeConfig
    from modelops.serving.model import ModelopsModel
    from modelops.serving.protocol import ModelopsHttpProtocol
    from modelops.serving.server import settle_heap

    logging.basicConfig(level=logging.WARNING)
    model_dir = build_model()
    model = ModelopsModel("model", ServeConfig(model_dir=model_dir, grpc=False, workers=1, parity_rows=128,
                                                warmup_iterations=20))
    model.load()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError(f"reached the app: {scope.get('path')}")

    config = Config(app=app, log_config=None, lifespan="off", access_log=False)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Mon, 30 Nov 2026 06:00:00 GMT"), (b"server", b"uvicorn")]
    cls = ModelopsHttpProtocol.bind(model, 8 << 20)
    wire = request_bytes(model.name)
    result: dict[str, Any] = {"benchmark": "serving_hotpath", "concurrency": args.concurrency,
                              "requests_per_round": args.requests, "loadavg_start": os.getloadavg()}

    async def go() -> None:
        conns = []
        for _ in range(args.concurrency):
            proto = cls(config=config, server_state=state, app_state={})
            t = Transport()
            proto.connection_made(t)  # type: ignore[arg-type]
            conns.append((proto, t))
        first: list[bytes] = []

        async def round_(n: int) -> None:
            turns = n // args.concurrency
            for _ in range(turns):
                for proto, _t in conns:
                    proto.data_received(wire)
                await asyncio.sleep(0)  # the batcher's flush (call_soon) runs in this turn
            for _proto, t in conns:
                for w in t.writes:
                    if not first:
                        first.append(w)
                    elif w != first[0]:
                        raise AssertionError(f"answers differ:\n{first[0]!r}\n{w!r}")
                t.writes.clear()

        await round_(2000)  # warm-up
        settle_heap()
        per: list[float] = []
        for _ in range(args.rounds):
            c0 = time.process_time()
            await round_(args.requests)
            per.append((time.process_time() - c0) / args.requests * 1e6)
        result["cpu_us_per_request"] = {"min": round(min(per), 2), "median": round(statistics.median(per), 2),
                                        "all": [round(p, 2) for p in per]}
        result["answer"] = first[0].decode("latin-1")
        if args.profile is not None:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
            await round_(args.requests)
            prof.disable()
            prof.dump_stats(str(args.profile))
        if args.callgrind:
            subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
            await round_(args.requests)
            subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(go())
    result["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
