"""Benchmark: drift of a 10k-row x 30-feature window, ours vs Evidently, and ingestion rate.

    uv run python bench/drift_window.py [--rows 10000] [--features 30] [--http-events 3000]

Prints one JSON object. Ours: `window_drift` against the reference *profile* (what the exporter runs
on every scrape), with the window columns taken out of the ring buffer as the service does. Evidently:
`Report([DataDriftPreset()])` on the same window against 5,000 raw reference rows (its default tests,
which ours mirror). Peak memory is the tracemalloc peak of one computation (numpy allocations included).
Ingestion: events/s through `Exporter.handle_http` in-process, and through the real HTTP service
(`modelops drift-exporter`, keep-alive connections from client threads) on this machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelops.drift.reference import ReferenceSpec, ReferenceStore
from modelops.drift.service import Exporter, ExporterConfig
from modelops.drift.stats import window_drift
from modelops.formats.reference_profile import write_profile
from modelops_pipelines.profile import build_reference_profile


def frame(rng: np.random.Generator, n: int, n_features: int, shift: float) -> pd.DataFrame:
    cols: dict[str, Any] = {}
    n_cat = n_features // 5
    for i in range(n_features - n_cat):
        s = shift if i % 4 == 0 else 0.0  # every fourth numeric feature shifts
        cols[f"num{i}"] = rng.normal(i + s, 1 + i % 3, n) if i % 2 == 0 else rng.lognormal(0.1 * s, 0.6, n)
    for j in range(n_cat):
        p = np.array([0.5, 0.25, 0.15, 0.1])
        if j % 2 == 0 and shift:
            p = np.array([0.3, 0.3, 0.2, 0.2])
        cols[f"cat{j}"] = rng.choice(["a", "b", "c", "d"], n, p=p)
    return pd.DataFrame(cols)


def timed(fn: Any, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def peak_mib(fn: Any) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def binary_headers(event_id: str, kind: str) -> dict[str, str]:
    return {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "http://localhost:9081/",
            "ce-type": f"org.kubeflow.serving.inference.{kind}", "ce-inferenceservicename": "bench",
            "ce-namespace": "default", "ce-component": "predictor", "ce-endpoint": "default",
            "ce-metadata": "{}", "content-type": "application/json"}


def events(window: pd.DataFrame, n_events: int, rows_per_event: int) -> list[tuple[dict[str, str], bytes]]:
    out = []
    records = window.to_numpy().tolist()
    for i in range(n_events):
        event_id = str(uuid.uuid4())
        part = [records[(i * rows_per_event + k) % len(records)] for k in range(rows_per_event)]
        out.append((binary_headers(event_id, "request"), json.dumps({"instances": part}).encode()))
        out.append((binary_headers(event_id, "response"), json.dumps({"predictions": [1] * rows_per_event})
                    .encode()))
    return out


def ingest_in_process(profile_dir: Path, window: pd.DataFrame, rows_per_event: int, n_events: int) -> float:
    ex = Exporter(ReferenceStore([ReferenceSpec.parse(str(profile_dir))]), ExporterConfig())
    evs = events(window, n_events, rows_per_event)
    t0 = time.perf_counter()
    for headers, body in evs:
        ex.handle_http(headers, body)
    return len(evs) / (time.perf_counter() - t0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ingest_http(profile_dir: Path, window: pd.DataFrame, n_events: int, threads: int) -> dict[str, Any]:
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("modelops")), "drift-exporter", "--host", "127.0.0.1", "--port",
           str(port), "--reference", str(profile_dir), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        evs = events(window, n_events // 2, 1)
        chunks = [evs[i::threads] for i in range(threads)]
        errors: list[int] = []

        def worker(chunk: list[tuple[dict[str, str], bytes]]) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for headers, body in chunk:
                conn.request("POST", "/", body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(r.status)

        ts = [threading.Thread(target=worker, args=(c,)) for c in chunks]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.perf_counter() - t0
        return {"events": len(evs), "client_threads": threads, "seconds": round(elapsed, 2),
                "events_per_s": round(len(evs) / elapsed), "errors": len(errors)}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--reference-rows", type=int, default=50_000)
    ap.add_argument("--evidently-reference-rows", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--http-events", type=int, default=3000)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    reference = frame(rng, args.reference_rows, args.features, 0.0)
    current = frame(rng, args.rows, args.features, 0.5)
    categorical = [c for c in reference if c.startswith("cat")]
    t0 = time.perf_counter()
    profile = build_reference_profile(reference, task="regression", categorical=categorical)
    profile_seconds = time.perf_counter() - t0

    # ours, as the service runs it: rows in the ring buffer, columns out, drift of the window
    with tempfile.TemporaryDirectory() as tmp:
        profile_dir = Path(tmp)
        write_profile(profile, profile_dir)
        ex = Exporter(ReferenceStore([ReferenceSpec.parse(str(profile_dir))]),
                      ExporterConfig(window_rows=args.rows, join_timeout=0))
        ex.ingest_batch("bench", {"version": "1", "instances": current.to_dict(orient="records")})
        tracked = ex.find("bench", "1")
        assert tracked is not None
        ex.evaluate(tracked, force=True)  # warm-up
        ours_s, ours_all = timed(lambda: ex.evaluate(tracked, force=True), args.repeat)
        result = ex.evaluate(tracked, force=True).result
        ours_mem = peak_mib(lambda: ex.evaluate(tracked, force=True))
        _, cols, _ = tracked.window.columns(time.monotonic())
        math_s, _ = timed(lambda: window_drift(profile, cols, args.rows, None, ex.cfg.drift, canonical=True),
                          args.repeat)

        in_process = {f"{k}_row_events_per_s": round(ingest_in_process(profile_dir, current, k, 2000))
                      for k in (1, 10)}
        http_rate = ingest_http(profile_dir, current, args.http_events, threads=4) if args.http_events else None

    # Evidently on raw rows
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ev_ref = reference.sample(args.evidently_reference_rows, random_state=0)
    definition = DataDefinition(numerical_columns=[c for c in current if c not in categorical],
                                categorical_columns=categorical)

    def run_evidently() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Report([DataDriftPreset()]).run(Dataset.from_pandas(current, data_definition=definition),
                                                   Dataset.from_pandas(ev_ref, data_definition=definition))

    run_evidently()  # warm-up (imports, registries)
    ev_s, ev_all = timed(run_evidently, 3)
    ev_mem = peak_mib(run_evidently)
    snapshot = run_evidently()
    ev_drifted = set()
    for m in snapshot.dict()["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith("ValueDrift"):
            p = "p_value" in cfg["method"]
            if (m["value"] < cfg["threshold"]) if p else (m["value"] >= cfg["threshold"]):
                ev_drifted.add(cfg["column"])
    ours_drifted = {f.name for f in result.features if f.drifted}

    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m": round(os.getloadavg()[0], 2)},
        "window": {"rows": args.rows, "features": args.features, "numeric": args.features - len(categorical),
                   "categorical": len(categorical), "reference_rows": args.reference_rows},
        "ours": {"seconds_median": round(ours_s, 5), "ms_median": round(ours_s * 1000, 2),
                 "ms_min": round(min(ours_all) * 1000, 2), "math_only_ms_median": round(math_s * 1000, 2),
                 "peak_mib": round(ours_mem, 2), "drifted_features": len(ours_drifted)},
        "evidently": {"reference_rows": args.evidently_reference_rows, "seconds_median": round(ev_s, 3),
                      "seconds_min": round(min(ev_all), 3), "peak_mib": round(ev_mem, 1),
                      "drifted_features": len(ev_drifted)},
        "speedup_x": round(ev_s / ours_s, 1),
        "verdict_agreement": round(1 - len(ours_drifted ^ ev_drifted) / args.features, 3),
        "goals": {"ms_per_window_le_100": ours_s * 1000 <= 100, "speedup_ge_100x": ev_s / ours_s >= 100},
        "profile_build_seconds": round(profile_seconds, 2),
        "ingestion": {"in_process": in_process, "http": http_rate},
    }, indent=1))


if __name__ == "__main__":
    main()
