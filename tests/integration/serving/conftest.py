"""Real `modelops serve` processes over model directories built like the trainer writes them.

All servers of the session start together (their start-up is mostly imports and ONNX compilation), and stop
at the end of the session.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelops.formats.artifacts import tree_digest
from tests.fixtures.procs import free_port, http_ok, start, stop, wait_until
from tests.integration.serving import model_dirs as md

# name -> how to build it; the servers under test
MODELS = {
    "xgb_binary": lambda p: md.build_sklearn(p, "xgboost", "binary", serialization="skops", name="churn"),
    "hgb_multiclass": lambda p: md.build_sklearn(p, "hgb", "multiclass", name="tiers", version="7"),
    "rf_regression_fallback": lambda p: md.build_sklearn(p, "rf", "regression", unconvertible=True, name="spend"),
    "linear_strict": lambda p: md.build_sklearn(p, "linear", "binary", strict=True, name="strict"),
    "booster": lambda p: md.build_booster(p, name="booster"),
}
MAX_BODY = 1024 * 1024
MAX_ROWS = 1000


@dataclass
class Served:
    key: str
    name: str
    model_dir: Path
    http: str
    grpc: str
    proc: object
    log: Path

    def url(self, path: str) -> str:
        return self.http + path


def modelops_cmd() -> list[str]:
    exe = shutil.which("modelops") or str(Path(sys.executable).parent / "modelops")
    return [exe, "serve"]


def launch(model_dir: Path, log: Path, *extra: str) -> tuple[object, str, str]:
    """`modelops serve` on `model_dir`, with the digest the registry would record for it (as the operator
    sets MODELOPS_MODEL_SHA256) unless `extra` passes one."""
    http_port, grpc_port = free_port(), free_port()
    digest = [] if "--model-sha256" in extra else ["--model-sha256", tree_digest(model_dir)]
    proc = start([*modelops_cmd(), "--model-dir", str(model_dir), "--http-port", str(http_port),
                  "--grpc-port", str(grpc_port), "--max-body-bytes", str(MAX_BODY), "--max-rows", str(MAX_ROWS),
                  *digest, *extra], log)
    return proc, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for key, build in MODELS.items():
        build(root / key)
    return root


@pytest.fixture(scope="session")
def servers(model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    logs = tmp_path_factory.mktemp("logs")
    out: dict[str, Served] = {}
    try:
        for key in MODELS:
            log = logs / f"{key}.log"
            proc, http, grpc = launch(model_root / key, log)
            name = __import__("json").loads((model_root / key / "modelops.json").read_text())["modelName"]
            out[key] = Served(key, name, model_root / key, http, grpc, proc, log)
        for s in out.values():
            wait_until(lambda s=s: http_ok(s.url(f"/v2/models/{s.name}/ready")), timeout=180,
                       what=f"modelops serve ({s.key})", proc=s.proc, log=s.log)  # type: ignore[arg-type]
        yield out
    finally:
        for s in out.values():
            stop(s.proc)  # type: ignore[arg-type]
