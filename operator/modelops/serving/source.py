"""Where `modelops serve` gets its model, and which registry version it is.

In a cluster KServe's storage initializer puts the model in /mnt/models and the operator sets
MODELOPS_MODEL_VERSION. By hand, a user passes an MLflow URI instead:

- ``models:/NAME/VERSION[/PATH]``, ``models:/NAME@ALIAS[/PATH]``: the registry says which version (an alias
  is resolved once, at start-up, and the download is pinned to that version);
- ``runs:/RUN_ID/PATH``: the version is the one registered from that run, if exactly one is.

The artifacts are downloaded once into a cache directory keyed by (tracking URI, model, version), so a second
start with the same version reads the cache and does not download again (a numbered version does not even
contact the registry). A plain directory's version is looked up in the registry by the MLflow run that
logged it when a tracking URI is configured. The version always comes from the registry, never from a guess:
when it cannot be known it stays empty and a warning says how to set it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.formats.artifacts import TAG_ARTIFACT_SHA256

log = logging.getLogger("modelops.serving")

URI_PREFIXES = ("models:/", "runs:/")
#: where downloaded models are kept unless --cache-dir / MODELOPS_MODEL_CACHE say otherwise
CACHE_ENV = "MODELOPS_MODEL_CACHE"
#: seconds between "downloading ... so far" lines
PROGRESS_SECONDS = 2.0

_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))(?P<path>/.*)?$")
_RUNS = re.compile(r"^runs:/(?P<run>[^/]+)(?P<path>/.*)?$")


class SourceError(Exception):
    """The model URI is malformed, or the registry cannot say what it points at."""


@dataclass(frozen=True)
class ModelSource:
    directory: Path
    #: registered model name and version, when the registry says so
    name: str | None = None
    version: str | None = None
    #: how the version was found, for the start-up log line
    origin: str = ""
    #: the digest the registry recorded for this version (version tag modelops.dev/artifact-sha256), which the
    #: loader verifies before unpickling anything; None when the registry has none
    sha256: str | None = None


#: MLflow model version tag with the artifacts' digest (modelops.formats.artifacts.TAG_ARTIFACT_SHA256)
_TAG_SHA256 = TAG_ARTIFACT_SHA256
#: written beside a cached download (hidden, like partial downloads): the digest the registry had for it
_SOURCE_FILE = ".modelops-source.json"


def is_uri(text: str) -> bool:
    return text.startswith(URI_PREFIXES)


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelops" / "models"


def _client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60]


def _cache_entry(cache: Path, tracking_uri: str, pinned_uri: str, label: str) -> Path:
    digest = hashlib.sha256(f"{tracking_uri}\0{pinned_uri}".encode()).hexdigest()[:16]
    return cache / f"{_safe(label)}-{digest}"


def fetch(uri: str, tracking_uri: str, cache: Path) -> ModelSource:
    """Resolve `uri` in the registry and return its local copy, downloading it only the first time."""
    if m := _MODELS.match(uri):
        name, path = m["name"], m["path"] or ""
        version = m["version"]
        if version is not None and version.isdigit():
            entry = _cache_entry(cache, tracking_uri, f"models:/{name}/{version}{path}", f"{name}-v{version}")
            if (entry / "MLmodel").exists():  # a numbered version never changes: no registry call at all
                log.info("using cached %s (version %s) from %s", uri, version, entry)
                return ModelSource(entry, name, version, f"{uri} (cached)", _cached_sha256(entry))
        mv = _registry_version(uri, name, version, m["alias"], tracking_uri)
        version = str(mv.version)
        sha256 = _tag_sha256(mv)
        pinned = f"models:/{name}/{version}{path}"
        label, origin = f"{name}-v{version}", f"{uri} -> version {version}" if m["alias"] else uri
    elif m := _RUNS.match(uri):
        pinned, label = uri, f"run-{m['run']}"
        name, version, sha256 = _version_of_run(m["run"], None, tracking_uri)
        origin = f"{uri} (registered as {name} version {version})" if version else uri
        if version is None:
            log.warning("%s is not registered as exactly one model version: the version on the endpoints stays "
                        "empty (pass --model-version, or serve models:/NAME/VERSION)", uri)
    else:
        raise SourceError(f"{uri!r}: expected models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH")
    entry = _cache_entry(cache, tracking_uri, pinned, label)
    if (entry / "MLmodel").exists():
        log.info("using cached %s from %s", pinned, entry)
    else:
        _download(pinned, tracking_uri, entry, sha256)
    return ModelSource(entry, name, version, origin, sha256)


def _tag_sha256(mv: Any) -> str | None:
    tags = getattr(mv, "tags", None) or {}
    value = tags.get(_TAG_SHA256) if isinstance(tags, dict) else None
    return str(value) if value else None


def _cached_sha256(entry: Path) -> str | None:
    """The registry's digest recorded beside a cached download (the cache is as trusted as the disk)."""
    try:
        value = json.loads((entry.parent / f".{entry.name}{_SOURCE_FILE}").read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def _registry_version(uri: str, name: str, version: str | None, alias: str | None, tracking_uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        if version == "latest":
            found = client.search_model_versions(f"name='{name}'")
            if not found:
                raise SourceError(f"{uri}: model {name!r} has no versions in the registry at {tracking_uri}")
            return max(found, key=lambda v: int(v.version))
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise SourceError(f"{uri}: the registry at {tracking_uri} says: {exc.message}") from None


def _version_of_run(run_id: str, name: str | None,
                    tracking_uri: str) -> tuple[str | None, str | None, str | None]:
    """(name, version, digest) of the one registered version created from `run_id` (of model `name` if given)."""
    query = f"run_id='{run_id}'" + (f" and name='{name}'" if name else "")
    found = _client(tracking_uri).search_model_versions(query)
    if len(found) != 1:
        return name, None, None
    return str(found[0].name), str(found[0].version), _tag_sha256(found[0])


def version_of_directory(model_dir: Path, tracking_uri: str) -> tuple[str | None, str, str | None]:
    """(version, why, digest) of a model directory, by the MLflow run in its MLmodel; version None if unknown.

    The digest is the one the registry recorded for that version: the loader verifies the directory against it.
    """
    import yaml

    try:
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return None, f"cannot read {model_dir / 'MLmodel'}: {exc}", None
    run_id = mlmodel.get("run_id")
    if not run_id:
        return None, f"{model_dir / 'MLmodel'} names no run_id", None
    name = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        name = json.loads((model_dir / "modelops.json").read_text()).get("modelName")
    with _short_http_retries():
        try:
            _, version, sha256 = _version_of_run(str(run_id), name, tracking_uri)
        except Exception as exc:  # the registry is optional here: the model itself is on disk
            return (None, f"registry lookup of run {run_id} at {tracking_uri} failed: {type(exc).__name__}: {exc}",
                    None)
    if version is None:
        return None, f"run {run_id} is not registered as exactly one version{f' of {name!r}' if name else ''}", None
    return version, f"registry: run {run_id} is {name or 'the model'} version {version}", sha256


@contextlib.contextmanager
def _short_http_retries() -> Iterator[None]:
    """An optional lookup must not hold the server's start for MLflow's default minutes of retries."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    for p in root.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file():
                files, size = files + 1, size + p.stat().st_size
    return files, size


def _download(pinned: str, tracking_uri: str, entry: Path, sha256: str | None = None) -> None:
    """Download into a temporary sibling of `entry`, then rename: a half download is never used.

    The registry's digest is kept beside the entry (not inside: that would change the tree's digest), so a
    later start from the cache still verifies the artifacts against what the registry recorded.
    """
    import mlflow.artifacts

    entry.parent.mkdir(parents=True, exist_ok=True)
    partial = entry.parent / f".{entry.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    log.info("downloading %s from %s into %s", pinned, tracking_uri, entry)
    start = time.monotonic()
    done = threading.Event()

    def report() -> None:
        while not done.wait(PROGRESS_SECONDS):
            files, size = _tree_size(partial)
            log.info("downloading %s: %d files, %.1f MB so far (%.0f s)", pinned, files, size / 1e6,
                     time.monotonic() - start)

    reporter = threading.Thread(target=report, name="download-progress", daemon=True)
    reporter.start()
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=pinned, dst_path=str(partial),
                                                         tracking_uri=tracking_uri))
    except Exception as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise SourceError(f"downloading {pinned} from {tracking_uri} failed: {type(exc).__name__}: {exc}") from None
    finally:
        done.set()
        reporter.join()
    if not (local / "MLmodel").exists():
        shutil.rmtree(partial, ignore_errors=True)
        raise SourceError(f"{pinned} is not an MLflow model (no MLmodel among its artifacts)")
    files, size = _tree_size(local)
    (entry.parent / f".{entry.name}{_SOURCE_FILE}").write_text(json.dumps({"uri": pinned, "sha256": sha256}))
    try:
        os.replace(local, entry)
    except OSError:  # another server filled the cache entry meanwhile: use that one
        if not (entry / "MLmodel").exists():
            raise
    shutil.rmtree(partial, ignore_errors=True)
    log.info("downloaded %s: %d files, %.1f MB in %.1f s; cached in %s", pinned, files, size / 1e6,
             time.monotonic() - start, entry)
