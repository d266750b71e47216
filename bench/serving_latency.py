"""Model-server latency, side by side, printed as JSON:  uv run python bench/serving_latency.py

1. In-process single-row predict on a ~5 MB XGBoost model (900 trees, depth 6, 30 features): stock XGBoost
   (DMatrix + predict, as KServe's xgbserver; and inplace_predict) vs the fast path (ONNX Runtime session, and
   our whole validate+predict step).
2. HTTP p50/p99 on loopback, one keep-alive connection, sequential single-row requests, servers measured in
   interleaved rounds so background load hits all of them alike: `modelops serve` (V1 and V2) vs bare
   FastAPI + XGBoost vs stock KServe + XGBoost vs `mlflow models serve` vs MLServer (in a throwaway venv under
   /tmp, if it installs).

The model is generated deterministically (no downloads) and cached under $MODELOPS_BENCH_DIR
(default /tmp/modelops-bench). Requests per server and wall time are bounded (--requests, --max-seconds).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(os.environ.get("MODELOPS_BENCH_DIR", "/tmp/modelops-bench"))
TREES, DEPTH, FEATURES, ROWS, SEED = 900, 6, 30, 10_000, 4


# ---------------------------------------------------------------------------------------------- model

def build_model() -> Path:
    """mlflow.xgboost model dir + modelops.json; cached by its parameters."""
    out = BENCH_DIR / f"xgb-{TREES}x{DEPTH}-{FEATURES}f-{ROWS}r-s{SEED}"
    if (out / "MLmodel").exists():
        return out
    import mlflow.xgboost
    import pandas as pd
    import xgboost as xgb
    from mlflow.models import infer_signature

    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
    logit = x[:, 0] + x[:, 1] * x[:, 2] + np.sin(3 * x[:, 3]) + 0.3 * x[:, 4:].sum(axis=1)
    y = (logit + rng.normal(scale=0.7, size=ROWS) > 0).astype(np.float32)
    names = [f"f{i}" for i in range(FEATURES)]
    params = {"objective": "binary:logistic", "max_depth": DEPTH, "eta": 0.03, "min_child_weight": 0,
              "lambda": 0.1, "tree_method": "hist", "seed": SEED, "nthread": os.cpu_count() or 1}
    booster = xgb.train(params, xgb.DMatrix(x, label=y, feature_names=names), num_boost_round=TREES)
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    example = pd.DataFrame(x[:3].astype(np.float64), columns=names)
    mlflow.xgboost.save_model(booster, str(tmp), signature=infer_signature(example, np.zeros(3)),
                              input_example=example, model_format="json", pip_requirements=["xgboost"])
    (tmp / "modelops.json").write_text(json.dumps({
        "task": "classification", "target": "y", "classes": [0, 1], "family": "xgboost", "modelName": "model",
        "version": "1", "runId": "bench", "metric": {},
        "features": [{"name": n, "dtype": "float32", "categorical": False} for n in names]}))
    tmp.rename(out)
    return out


def model_file(model_dir: Path) -> Path:
    return next(p for p in model_dir.iterdir() if p.name.startswith("model.") and p.suffix in (".json", ".ubj"))


def rows(n: int) -> np.ndarray:
    return np.random.default_rng(123).normal(size=(n, FEATURES))


# ---------------------------------------------------------------------------------------------- in-process

def percentiles(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1e6
    return {"p50_us": round(float(np.percentile(a, 50)), 1), "p99_us": round(float(np.percentile(a, 99)), 1),
            "n": len(samples)}


def in_process(model_dir: Path, iterations: int) -> dict[str, Any]:
    import xgboost as xgb

    from modelops.serving.config import ServeConfig
    from modelops.serving.model import ModelopsModel
    from modelops.serving.schema import Limits, decode_v1

    booster = xgb.Booster(params={"nthread": 1}, model_file=str(model_file(model_dir)))
    model = ModelopsModel("model", ServeConfig(model_dir=model_dir, warmup_iterations=50))
    model.load()
    assert model.fast is not None and model.fast.predictor is not None, model.fast
    session = model.fast.predictor.session
    data = rows(64)
    one32 = data[:1].astype(np.float32)
    body = {"instances": data[:1].tolist()}
    fns = {
        "xgboost_dmatrix_predict": lambda: booster.predict(xgb.DMatrix(one32, nthread=1), validate_features=False),
        "xgboost_inplace_predict": lambda: booster.inplace_predict(one32, validate_features=False),
        "onnxruntime_session_run": lambda: session.run(None, {"input": one32}),
        "fast_path_validate_and_predict": lambda: model.predict_batch(decode_v1(body, model.spec, Limits())),
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(50):
        for f in fns.values():
            f()
    # interleaved, so that background load affects every variant alike
    for _ in range(iterations):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    ref = booster.predict(xgb.DMatrix(data.astype(np.float32)), validate_features=False)
    fast = model.fast.predictor.predict(decode_v1({"instances": data.tolist()}, model.spec, Limits())).probabilities
    assert fast is not None
    return {
        **{k: percentiles(v) for k, v in times.items()},
        "parity_max_abs_diff_64_rows": float(np.max(np.abs(fast[:, 1] - ref))),
        "parity_check_at_load": {"max_diff": model.fast.max_diff, "rows": model.fast.sample_rows},
    }


# ---------------------------------------------------------------------------------------------- servers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, name: str, cmd: list[str], port: int, path: str, body: bytes, ready: str,
                 env: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> None:
        self.name, self.port, self.path, self.body = name, port, path, body
        self.headers = headers or {"content-type": "application/json"}
        self.ready_path = ready
        self.log = BENCH_DIR / f"{name}.log"
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True, cwd=ROOT)
        self.conn: http.client.HTTPConnection | None = None
        self.samples: list[float] = []
        self.error: str | None = None
        self.last: bytes = b""

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.error = f"exited {self.proc.returncode}: {self.log.read_text()[-600:]}"
                return False
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", self.ready_path)
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.3)
        self.error = f"not ready after {timeout:.0f}s: {self.log.read_text()[-600:]}"
        return False

    def request(self) -> float:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.connect()
            try:
                t0 = time.perf_counter()
                self.conn.request("POST", self.path, body=self.body, headers=self.headers)
                r = self.conn.getresponse()
                data = r.read()
                dt = time.perf_counter() - t0
                break
            except (ConnectionError, http.client.HTTPException):
                # servers close keep-alive connections that idled while the others were measured;
                # reconnect outside the timed region and measure again
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if r.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {r.status} {data[:300]!r}")
        self.last = data
        return dt

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def mlserver_python(timeout: float) -> tuple[str | None, str]:
    """A throwaway venv with MLServer + its XGBoost runtime (its pins conflict with our lock)."""
    venv = BENCH_DIR / "mlserver-venv"
    py = venv / "bin" / "python"
    if (venv / "bin" / "mlserver").exists():
        return str(py), "cached"
    uv = shutil.which("uv")
    if uv is None:
        return None, "uv not found"
    try:
        subprocess.run([uv, "venv", "--python", "3.11", str(venv)], check=True, capture_output=True,
                       timeout=timeout)
        r = subprocess.run([uv, "pip", "install", "--python", str(py), "mlserver", "mlserver-xgboost"],
                           capture_output=True, timeout=timeout, text=True)
        if r.returncode != 0:
            return None, r.stderr[-500:]
    except (subprocess.SubprocessError, OSError) as exc:
        return None, str(exc)[:500]
    return str(py), "installed"


def start_servers(model_dir: Path, with_mlserver: bool, install_timeout: float,
                  ours: dict[str, str] | None = None) -> tuple[list[Server], dict[str, str]]:
    """The servers side by side; `ours` adds variants of `modelops serve` (name -> extra arguments), each
    measured as NAME_v1 (and NAME_v2 in http_bench) like modelops_v1."""
    py = sys.executable
    row = rows(1)[0].tolist()
    v1 = json.dumps({"instances": [row]}).encode()
    names = [f"f{i}" for i in range(FEATURES)]
    mfile = str(model_file(model_dir))
    skipped: dict[str, str] = {}
    servers: list[Server] = []
    p = free_port()
    modelops = [str(Path(py).parent / "modelops"), "serve", "--model-dir", str(model_dir), "--http-port", str(p),
                "--grpc-port", str(free_port())]
    servers.append(Server("modelops_v1", modelops, p, "/v1/models/model:predict", v1, "/v2/models/model/ready"))
    for name, extra in (ours or {}).items():
        p = free_port()
        cmd = [str(Path(py).parent / "modelops"), "serve", "--model-dir", str(model_dir), "--http-port", str(p),
               "--grpc-port", str(free_port()), *extra.split()]
        servers.append(Server(f"{name}_v1", cmd, p, "/v1/models/model:predict", v1, "/v2/models/model/ready"))
    p = free_port()
    servers.append(Server("fastapi_xgboost", [py, str(ROOT / "bench/serving_baselines.py"), "fastapi", mfile, str(p)],
                          p, "/v1/models/model:predict", v1, "/ready"))
    p = free_port()
    servers.append(Server("kserve_xgboost", [py, str(ROOT / "bench/serving_baselines.py"), "kserve", mfile, str(p),
                                             str(free_port())],
                          p, "/v1/models/model:predict", v1, "/v1/models/model"))
    p = free_port()
    mlflow_body = json.dumps({"dataframe_split": {"columns": names, "data": [row]}}).encode()
    servers.append(Server("mlflow_models_serve",
                          [str(Path(py).parent / "mlflow"), "models", "serve", "-m", str(model_dir), "-p", str(p),
                           "-h", "127.0.0.1", "--env-manager", "local", "-w", "1"],
                          p, "/invocations", mlflow_body, "/ping",
                          env={"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}))
    if with_mlserver:
        mpy, how = mlserver_python(install_timeout)
        if mpy is None:
            skipped["mlserver"] = f"did not install: {how}"
        else:
            repo = BENCH_DIR / "mlserver-models" / "model"
            repo.mkdir(parents=True, exist_ok=True)
            shutil.copy(mfile, repo / "model.json")
            (repo / "model-settings.json").write_text(json.dumps({
                "name": "model", "implementation": "mlserver_xgboost.XGBoostModel",
                "parameters": {"uri": "./model.json"}}))
            p = free_port()
            (repo.parent / "settings.json").write_text(json.dumps({
                "http_port": p, "grpc_port": free_port(), "metrics_port": free_port(), "parallel_workers": 0,
                "host": "127.0.0.1"}))
            v2 = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, FEATURES],
                                         "data": row}]}).encode()
            servers.append(Server("mlserver_xgboost", [str(Path(mpy).parent / "mlserver"), "start",
                                                       str(repo.parent)],
                                  p, "/v2/models/model/infer", v2, "/v2/models/model/ready"))
    return servers, skipped


def http_bench(model_dir: Path, requests: int, max_seconds: float, with_mlserver: bool,
               install_timeout: float, ours_variants: dict[str, str] | None = None) -> dict[str, Any]:
    servers, skipped = start_servers(model_dir, with_mlserver, install_timeout, ours_variants)
    live: list[Server] = []
    try:
        for s in servers:
            if s.wait_ready(240):
                live.append(s)
            else:
                skipped[s.name] = s.error or "not ready"
        v2 = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, FEATURES],
                                     "data": rows(1)[0].tolist()}]}).encode()
        for name in ["modelops", *(ours_variants or {})]:
            ours = next((s for s in live if s.name == f"{name}_v1"), None)
            if ours is None:
                continue
            # our V2 REST on the same process, same row
            twin = Server.__new__(Server)
            twin.__dict__.update(ours.__dict__)
            twin.name, twin.path, twin.body, twin.conn, twin.samples = f"{name}_v2", "/v2/models/model/infer", \
                v2, None, []
            twin.proc = ours.proc
            live.insert(live.index(ours) + 1, twin)
        for s in list(live):  # warm-up: first requests pay imports and allocations
            try:
                for _ in range(200):
                    s.request()
            except (RuntimeError, OSError, http.client.HTTPException) as exc:
                skipped[s.name] = f"failed during warm-up: {exc}"[:600]
                live.remove(s)
        rounds = 20
        per_round = max(1, requests // rounds)
        started = time.monotonic()
        for _ in range(rounds):
            for s in live:
                for _ in range(per_round):
                    s.samples.append(s.request())
            if time.monotonic() - started > max_seconds:
                break
        out: dict[str, Any] = {s.name: percentiles(s.samples) for s in live}
        answers = {s.name: s.last[:200].decode(errors="replace") for s in live}
        return {"servers": out, "skipped": skipped, "sample_answers": answers,
                "wall_seconds": round(time.monotonic() - started, 1)}
    finally:
        seen = set()
        for s in servers:
            if id(s.proc) not in seen:
                seen.add(id(s.proc))
                s.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="measured requests per server")
    ap.add_argument("--iterations", type=int, default=3000, help="in-process predictions per variant")
    ap.add_argument("--max-seconds", type=float, default=300, help="cap on the HTTP measurement loop")
    ap.add_argument("--no-mlserver", action="store_true", help="skip installing MLServer into a /tmp venv")
    ap.add_argument("--install-timeout", type=float, default=420)
    ap.add_argument("--ours", action="append", default=[], metavar="NAME=ARGS",
                    help="another variant of ours, side by side: extra `modelops serve` arguments")
    args = ap.parse_args()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    variants = dict(v.partition("=")[::2] for v in args.ours)
    model_dir = build_model()
    mfile = model_file(model_dir)
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "python": platform.python_version()},
        "model": {"trees": TREES, "depth": DEPTH, "features": FEATURES, "file": mfile.name,
                  "bytes": mfile.stat().st_size, "build_seconds": round(time.monotonic() - t0, 1)},
    }
    result["in_process"] = in_process(model_dir, args.iterations)
    result["http_loopback"] = http_bench(model_dir, args.requests, args.max_seconds, not args.no_mlserver,
                                         args.install_timeout, variants)
    srv = result["http_loopback"]["servers"]
    comp = result["in_process"]["onnxruntime_session_run"]["p50_us"]
    ours = srv.get("modelops_v1", {}).get("p50_us")
    goals: dict[str, Any] = {"compute_p50_us": comp, "compute_p50_le_400us": comp <= 400}
    if ours and "fastapi_xgboost" in srv:
        r = ours / srv["fastapi_xgboost"]["p50_us"]
        goals["ours_over_fastapi_p50"] = round(r, 3)
        goals["ours_le_1.25x_fastapi"] = r <= 1.25
    if ours and "kserve_xgboost" in srv:
        r = ours / srv["kserve_xgboost"]["p50_us"]
        goals["ours_over_kserve_p50"] = round(r, 3)
        goals["ours_le_0.8x_kserve"] = r <= 0.8
    result["goals"] = goals
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["total_seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
