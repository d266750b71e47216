"""Model-server saturation: requests/s and latency under concurrency, side by side, printed as JSON.

    uv run python bench/serving_saturation.py [--seconds 3] [--concurrency 1 8 32 128] [--no-mlserver]

Load comes from `hey` (github.com/rakyll/hey, a compiled Go load generator), built once from its Go module
with `nice -n 10` into ~/.cache/modelops/hey/<version>/bin (progress on stderr). Every server gets the same
~5 MB XGBoost model as bench/serving_latency.py (900 trees, 30 features; that file's build_model/Server/
start_servers are reused):

- modelops serve (ours; ONNX Runtime fast path), as deployed (workers from the CPU limit, no batching) and
  with micro-batching (--batch-max-rows 64), V1 and V2 REST;
- stock KServe's Python model server with an xgbserver-like Model, V1 and V2 REST;
- bare FastAPI + XGBoost, V1 and V2;
- MLServer + mlserver-xgboost (in a throwaway venv; V2 only);
- a minimal uvicorn echo app (answers a constant body without parsing: the HTTP stack's limit).

Matrix: concurrency x {1-row, 64-row} x {V1, V2}, `--seconds` of closed-loop load per point, servers
interleaved within each point. Then the goal's figure, single-row V2 at concurrency 32: requests/s at
p99 <= 10 ms, found by rate-limiting hey (-q) at falling shares of the server's closed-loop throughput until
p99 <= 10 ms. gRPC is not measured: hey speaks HTTP only.
Load average is printed with the figures (other jobs on a shared host slow every server alike).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from serving_latency import (  # noqa: E402
    BENCH_DIR,
    FEATURES,
    Server,
    build_model,
    free_port,
    model_file,
    rows,
    start_servers,
)

HEY_MODULE, HEY_VERSION = "github.com/rakyll/hey", "v0.1.4"
SLO_P99_S = 0.010
SLO_SHARES = (0.9, 0.75, 0.6, 0.45, 0.3, 0.2, 0.1)


def ensure_hey() -> Path:
    """The hey binary, built from its Go module once per version (nice -n 10, progress on stderr)."""
    cache = Path.home() / ".cache" / "modelops" / "hey" / HEY_VERSION
    binary = cache / "bin" / "hey"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise SystemExit("go is not installed: needed once to build hey (apt-get install golang, or go.dev/dl)")
    partial = cache.with_name(HEY_VERSION + f".partial-{os.getpid()}")
    print(f"building {HEY_MODULE}@{HEY_VERSION} into {cache} (once)", file=sys.stderr, flush=True)
    env = {**os.environ, "GOBIN": str(partial / "bin"), "GOFLAGS": "-mod=mod"}
    subprocess.run(["nice", "-n", "10", go, "install", "-v", f"{HEY_MODULE}@{HEY_VERSION}"], env=env, check=True,
                   cwd=tempfile.gettempdir())
    if not binary.exists():
        partial.rename(cache)
    return binary


def parse_hey(text: str) -> dict[str, Any]:
    def num(pattern: str) -> float | None:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None

    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", text)}
    errors = re.search(r"Error distribution:\n((?:.*\n?)*)", text)
    ok = codes.get(200, 0)
    out: dict[str, Any] = {
        "rps": num(r"Requests/sec:\s+([\d.]+)"),
        "p50_ms": None if num(r"50%+ in ([\d.]+) secs") is None else round(num(r"50%+ in ([\d.]+) secs") * 1e3, 2),
        "p99_ms": None if num(r"99%+ in ([\d.]+) secs") is None else round(num(r"99%+ in ([\d.]+) secs") * 1e3, 2),
        "ok": ok, "non_200": sum(n for c, n in codes.items() if c != 200),
    }
    if errors:
        out["errors"] = errors.group(1).strip()[:300]
    if out["rps"] is not None:
        out["rps"] = round(out["rps"], 1)
    return out


def hey(binary: Path, url: str, body: Path, concurrency: int, seconds: float, qps: float | None = None) -> dict[str, Any]:
    cmd = [str(binary), "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST", "-T", "application/json",
           "-D", str(body), "-disable-compression", "-t", "10"]
    if qps is not None:
        cmd += ["-q", f"{qps:.2f}"]
    r = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60)
    res = parse_hey(r.stdout)
    if r.returncode != 0:
        res["hey_error"] = r.stderr[-300:]
    return res


def bodies(batch: int) -> dict[str, bytes]:
    data = rows(batch).tolist()
    flat = [v for row in data for v in row]
    v2 = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [batch, FEATURES], "data": flat}]}
    v2_64 = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [batch, FEATURES], "data": flat}]}
    return {"v1": json.dumps({"instances": data}).encode(), "v2": json.dumps(v2).encode(),
            "v2_fp64": json.dumps(v2_64).encode()}


V1_PATH, V2_PATH = "/v1/models/model:predict", "/v2/models/model/infer"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="closed-loop load per matrix point")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--no-mlserver", action="store_true")
    ap.add_argument("--install-timeout", type=float, default=420)
    args = ap.parse_args()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    binary = ensure_hey()
    model_dir = build_model()
    result: dict[str, Any] = {"benchmark": "serving_saturation", "load_generator": f"hey {HEY_VERSION}",
                              "cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
                              "loadavg_start": [round(v, 2) for v in os.getloadavg()], "seconds_per_point": args.seconds}
    servers, skipped = start_servers(model_dir, not args.no_mlserver, args.install_timeout)
    py = sys.executable
    p = free_port()
    servers.append(Server("modelops_batching", [str(Path(py).parent / "modelops"), "serve", "--model-dir",
                                                str(model_dir), "--http-port", str(p), "--grpc-port",
                                                str(free_port()), "--batch-max-rows", "64",
                                                "--batch-max-delay-ms", "1"],
                          p, V1_PATH, b"", "/v2/models/model/ready"))
    p = free_port()
    servers.append(Server("uvicorn_echo", [py, str(ROOT / "bench/serving_baselines.py"), "echo", "-", str(p)],
                          p, V1_PATH, b"", "/"))
    live: dict[str, Server] = {}
    try:
        for s in servers:
            if s.name == "mlflow_models_serve":  # latency-only baseline; not part of this matrix
                s.stop()
                continue
            if s.name == "uvicorn_echo" or s.wait_ready(240):
                live[s.name] = s
            else:
                skipped[s.name] = s.error or "not ready"
        if "uvicorn_echo" in live and not live["uvicorn_echo"].wait_ready(30):
            skipped["uvicorn_echo"] = live.pop("uvicorn_echo").error or "not ready"
        names = {"modelops_v1": "modelops", "modelops_batching": "modelops_batching", "kserve_xgboost": "kserve",
                 "fastapi_xgboost": "fastapi", "mlserver_xgboost": "mlserver", "uvicorn_echo": "uvicorn_echo"}
        protocols = {"modelops": ("v1", "v2"), "modelops_batching": ("v1", "v2"), "kserve": ("v1", "v2"),
                     "fastapi": ("v1", "v2"), "mlserver": ("v2",), "uvicorn_echo": ("v1", "v2")}
        targets = {names[k]: s for k, s in live.items() if k in names}
        files: dict[tuple[str, str, int], Path] = {}
        tmp = Path(tempfile.mkdtemp(prefix="modelops-sat-"))
        for batch in args.batches:
            b = bodies(batch)
            for name in targets:
                for proto in protocols[name]:
                    key = "v2_fp64" if proto == "v2" and name.startswith("modelops") else proto
                    f = tmp / f"{name}-{proto}-{batch}.json"
                    f.write_bytes(b[key])
                    files[(name, proto, batch)] = f

        def url(name: str, proto: str) -> str:
            return f"http://127.0.0.1:{targets[name].port}{V1_PATH if proto == 'v1' else V2_PATH}"

        for name in list(targets):  # warm-up, and a check that each answers 200
            for proto in protocols[name]:
                w = hey(binary, url(name, proto), files[(name, proto, 1)], 4, 1.0)
                if w["ok"] == 0 or w["non_200"]:
                    skipped[f"{name}_{proto}"] = f"warm-up failed: {w}"
        matrix: list[dict[str, Any]] = []
        for proto in ("v2", "v1"):
            for batch in args.batches:
                for c in args.concurrency:
                    for name in targets:
                        if proto not in protocols[name] or f"{name}_{proto}" in skipped:
                            continue
                        load = round(os.getloadavg()[0], 2)
                        res = hey(binary, url(name, proto), files[(name, proto, batch)], c, args.seconds)
                        matrix.append({"server": name, "protocol": proto, "batch_rows": batch, "concurrency": c,
                                       **res, "rows_per_s": round((res["rps"] or 0) * batch, 1), "loadavg_1m": load})
                        print(json.dumps(matrix[-1]), file=sys.stderr, flush=True)
        result["matrix"] = matrix
        # The goal's figure: single-row V2 REST at concurrency 32, requests/s while p99 <= 10 ms.
        slo: dict[str, Any] = {}
        for name in targets:
            if "v2" not in protocols[name] or f"{name}_v2" in skipped:
                continue
            closed = next((m for m in matrix if m["server"] == name and m["protocol"] == "v2"
                           and m["batch_rows"] == 1 and m["concurrency"] == 32), None)
            if closed is None or not closed["rps"]:
                continue
            if closed["p99_ms"] is not None and closed["p99_ms"] <= SLO_P99_S * 1e3:
                slo[name] = {"rps": closed["rps"], "p99_ms": closed["p99_ms"], "share_of_closed_loop": 1.0}
                continue
            slo[name] = {"rps": 0.0, "p99_ms": None, "share_of_closed_loop": None}
            for share in SLO_SHARES:
                target = closed["rps"] * share
                res = hey(binary, url(name, "v2"), files[(name, "v2", 1)], 32, args.seconds, qps=target / 32)
                print(json.dumps({"slo_probe": name, "share": share, **res}), file=sys.stderr, flush=True)
                if res["p99_ms"] is not None and res["p99_ms"] <= SLO_P99_S * 1e3 and not res["non_200"]:
                    slo[name] = {"rps": res["rps"], "p99_ms": res["p99_ms"], "share_of_closed_loop": share,
                                 "loadavg_1m": round(os.getloadavg()[0], 2)}
                    break
        result["slo_v2_1row_c32_p99_le_10ms"] = slo
        ours = max((slo.get(n, {}).get("rps") or 0.0) for n in ("modelops", "modelops_batching"))
        goals: dict[str, Any] = {"ours_rps_at_slo": ours}
        if slo.get("kserve", {}).get("rps"):
            goals["ours_over_kserve"] = round(ours / slo["kserve"]["rps"], 2)
            goals["ours_ge_3x_kserve"] = goals["ours_over_kserve"] >= 3
        if slo.get("uvicorn_echo", {}).get("rps"):
            goals["ours_over_echo"] = round(ours / slo["uvicorn_echo"]["rps"], 3)
            goals["ours_ge_0.6x_echo"] = goals["ours_over_echo"] >= 0.6
        result["goals"] = goals
        result["skipped"] = skipped
        result["model"] = {"file": model_file(model_dir).name, "bytes": model_file(model_dir).stat().st_size}
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        seen = set()
        for s in servers:
            if id(s.proc) not in seen:
                seen.add(id(s.proc))
                s.stop()
    result["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
