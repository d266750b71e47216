"""Helpers of the rollout cluster tests (processes, load, MLflow setup, polling)."""

from __future__ import annotations

import contextlib
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from modelops.api import GROUP, VERSION
from tests.fixtures.kserve import GROUP as KGROUP
from tests.fixtures.kserve import PLURAL as KPLURAL
from tests.fixtures.kserve import VERSION as KVERSION
from tests.fixtures.procs import free_port, http_ok, require_binary, start, stop, wait_until


class PrometheusProc:
    """A real Prometheus (Debian's `prometheus`) scraping file_sd targets every second."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets = root / "targets.json"
        self.targets.write_text("[]")
        (root / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "model-servers", "scrape_interval": "1s", "scrape_timeout": "900ms",
                                "file_sd_configs": [{"files": [str(self.targets)], "refresh_interval": "1s"}]}],
        }))
        self.proc: Any = None
        self.log = root / "prometheus.log"

    def start(self) -> None:
        binary = require_binary("prometheus", "apt-get install prometheus")
        self.proc = start([binary, f"--config.file={self.root / 'prometheus.yml'}",
                           f"--storage.tsdb.path={self.root / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                           "--storage.tsdb.retention.time=1h"], self.log)
        wait_until(lambda: http_ok(f"{self.url}/-/ready"), 60, "prometheus", self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def set_targets(self, targets: list[tuple[int, dict[str, str]]]) -> None:
        tmp = self.targets.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{p}"], "labels": labels} for p, labels in targets]))
        tmp.replace(self.targets)


#: A row every model version accepts unless it requires more features (FEATURES of model_dirs).
ROW = {"age": 30.5, "visits": 3, "plan": "pro", "region": "east"}


def serve_cmd() -> list[str]:
    return [str(Path(sys.executable).with_name("modelops")), "serve"]


class ModelServers:
    """Real `modelops serve` processes for the stable and canary side of one InferenceService, each serving the
    registry's model version of its side (downloaded from MLflow, as KServe's storage initializer would)."""

    def __init__(self, root: Path, prom: PrometheusProc) -> None:
        self.root, self.prom = root, prom
        self.procs: dict[str, Any] = {}
        self.ports: dict[str, int] = {}
        self.model = ""

    def start(self, namespace: str, isvc: str, tracking_uri: str, model: str, versions: dict[str, str]) -> None:
        """versions: side -> MLflow model version of `model` that side serves (under the name `isvc`, as KServe
        names the model after the InferenceService)."""
        import mlflow.artifacts
        from mlflow import MlflowClient

        from modelops.formats.artifacts import TAG_ARTIFACT_SHA256

        self.model = isvc
        registry = MlflowClient(tracking_uri)
        logs = {}
        for side in ("stable", "canary"):
            model_dir = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=registry.get_model_version_download_uri(model, versions[side]),
                dst_path=str(self.root / f"model-{side}"), tracking_uri=tracking_uri))
            port = free_port()
            logs[side] = self.root / f"server-{side}.log"
            digest = registry.get_model_version(model, versions[side]).tags.get(TAG_ARTIFACT_SHA256, "")
            self.procs[side] = start([*serve_cmd(), "--model-dir", str(model_dir), "--model-name", isvc,
                                      "--http-port", str(port), "--no-grpc", "--model-sha256", digest], logs[side])
            self.ports[side] = port
        for side, port in self.ports.items():  # both load (imports, ONNX compilation, parity check) at once
            wait_until(lambda p=port: http_ok(f"http://127.0.0.1:{p}/v2/models/{isvc}/ready"), 300,
                       f"{side} modelops serve", self.procs[side], logs[side])
        self.prom.set_targets([(self.ports[s], {"namespace": namespace, "isvc": isvc, "side": s})
                               for s in ("stable", "canary")])

    def stop(self) -> None:
        for proc in self.procs.values():
            stop(proc)


class LoadGenerator(threading.Thread):
    """Sends ~`rps` V1 predict requests a second, to the canary with the share the InferenceService status
    reports (what the KServe/Knative router does in a cluster). Counts answers by side and HTTP status."""

    def __init__(self, kube: Any, namespace: str, name: str, servers: ModelServers, rps: float = 40) -> None:
        super().__init__(daemon=True, name="load")
        self.kube, self.namespace, self.name, self.servers, self.rps = kube, namespace, name, servers, rps
        self.halt = threading.Event()
        self.canary_share = 0.0
        self.sent = {"stable": 0, "canary": 0}
        self.codes: dict[tuple[str, int], int] = {}

    def _share(self) -> float:
        isvc = self.kube.custom.get_namespaced_custom_object(KGROUP, KVERSION, self.namespace, KPLURAL, self.name)
        comp = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
        for t in comp.get("traffic") or []:
            if t.get("latestRevision") and t.get("revisionName") != comp.get("latestRolledoutRevision"):
                return float(t.get("percent", 0)) / 100
        for c in (isvc.get("status") or {}).get("canaryStatuses") or []:
            return float(c.get("trafficPercent", 0)) / 100
        return 0.0

    def run(self) -> None:
        last = 0.0
        rnd = random.Random(0)
        while not self.halt.is_set():
            if time.monotonic() - last > 0.5:
                with contextlib.suppress(Exception):
                    self.canary_share = self._share()
                last = time.monotonic()
            side = "canary" if rnd.random() < self.canary_share else "stable"
            row = {**ROW, "age": round(rnd.uniform(18, 80), 1), "visits": rnd.randrange(30)}
            code = 0
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{self.servers.ports[side]}/v1/models/{self.servers.model}:predict",
                    data=json.dumps({"instances": [row]}).encode(), method="POST",
                    headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    resp.read()
                    code = resp.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            except Exception:
                pass
            self.sent[side] += 1
            self.codes[(side, code)] = self.codes.get((side, code), 0) + 1
            time.sleep(1 / self.rps)

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


# ------------------------------------------------------------------------------------------------ helpers
def register_versions(tracking_uri: str, name: str, model_dirs: list[Path]) -> list[str]:
    """A registered model whose versions are the given MLflow model directories (uploaded to the server)."""
    from mlflow import MlflowClient

    from modelops.formats.artifacts import TAG_ARTIFACT_SHA256
    from modelops_pipelines.registry import artifact_digest

    client = MlflowClient(tracking_uri)
    client.create_registered_model(name)
    exp = client.create_experiment(f"{name}-{time.time_ns()}")
    out = []
    for model_dir in model_dirs:
        run = client.create_run(exp)
        client.log_artifacts(run.info.run_id, str(model_dir), "model")
        client.set_terminated(run.info.run_id)
        source = f"{run.info.artifact_uri}/model"
        # the digest the trainer records (modelops train does the same), verified by the model server
        mv = client.create_model_version(name, source, run.info.run_id,
                                         tags={TAG_ARTIFACT_SHA256: artifact_digest(source, tracking_uri)})
        out.append(str(mv.version))
    return out


def md_get(kube: Any, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = kube.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "modeldeployments", name)
    return obj


def isvc_get(kube: Any, ns: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        obj: dict[str, Any] = kube.custom.get_namespaced_custom_object(KGROUP, KVERSION, ns, KPLURAL, name)
        return obj
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.2, dump: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    extra = f"\n{json.dumps(dump(), indent=1, default=str)[:6000]}" if dump else ""
    raise AssertionError(f"{what}: not reached within {timeout}s (last: {last!r}){extra}")


def cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def storage_uri_of(isvc: dict[str, Any]) -> str:
    pred = isvc["spec"]["predictor"]
    if "model" in pred:
        return str(pred["model"]["storageUri"])
    env = {e["name"]: e.get("value") for e in pred["containers"][0]["env"]}
    return str(env["STORAGE_URI"])
