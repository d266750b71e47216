"""MLflow model registry writes: retried with bounded backoff, and idempotent.

Idempotence: a version is identified by the training's parent run id. Before creating a version (and
before every retry of a create that may have reached the server) we look for a version of the model with
that run id, so a retried or re-run registration never creates a second version. An optional run key
(the Job name, say) finds the version of an earlier attempt of the same training.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: registry tag keys written on every version (the operator and `modelops approve` read them)
TAG_PREFIX = "modelops.dev/"
TAG_VERDICT = "modelops.dev/verdict"
TAG_APPROVAL = "modelops.dev/approval"
TAG_RUN_KEY = "modelops.dev/run-key"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"

_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED", "ABORTED",
                    "DEADLINE_EXCEEDED"}


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection trouble or a server-side 5xx-like MLflow error."""
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover - mlflow is part of the trainer extra
        MlflowException = ()  # type: ignore[assignment,misc]
    if isinstance(exc, MlflowException):
        return getattr(exc, "error_code", "") in _TRANSIENT_CODES
    import requests

    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout | ConnectionError
                      | TimeoutError)


def retry(fn: Callable[[], T], what: str, *, attempts: int = 5, base_delay: float = 0.5, max_delay: float = 8.0,
          transient: Callable[[BaseException], bool] = is_transient,
          sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `fn`, retrying transient failures with capped exponential backoff and full jitter."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not transient(exc):
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            import sys

            print(f"registry: {what} failed ({type(exc).__name__}: {exc}); retry {attempt}/{attempts - 1} "
                  f"in {delay:.1f}s", file=sys.stderr)
            sleep(delay)
    raise AssertionError("unreachable")


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


def ensure_registered_model(client: Any, name: str) -> None:
    def create() -> None:
        from mlflow.exceptions import MlflowException

        try:
            client.create_registered_model(name, tags={"modelops.dev/managed": "true"})
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise

    retry(create, f"create registered model {name!r}")


def version_for_run(client: Any, name: str, run_id: str) -> Any | None:
    """The version of `name` created from `run_id`, if any (lowest number if there are several)."""
    found = retry(lambda: client.search_model_versions(f"name='{name}' and run_id='{run_id}'"),
                  "search model versions")
    return min(found, key=lambda v: int(v.version)) if found else None


def version_for_run_key(client: Any, name: str, run_key: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        found = retry(lambda: client.search_model_versions(
            f"name='{name}' and tags.`{TAG_RUN_KEY}` = '{run_key}'"), "search model versions by run key")
    except MlflowException as exc:
        if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return min(found, key=lambda v: int(v.version)) if found else None


def register_version(client: Any, name: str, *, source: str, run_id: str, model_id: str | None,
                     tags: dict[str, str]) -> tuple[Any, bool]:
    """Create (or find) the version of `name` for `run_id`; returns (version, created)."""
    ensure_registered_model(client, name)
    existing = version_for_run(client, name, run_id)
    if existing is not None:
        set_version_tags(client, name, existing.version, tags)
        return existing, False

    state = {"attempted": False}

    def create() -> Any:
        if state["attempted"]:  # an earlier attempt may have reached the server before failing
            again = version_for_run(client, name, run_id)
            if again is not None:
                return again
        state["attempted"] = True
        return client.create_model_version(name, source=source, run_id=run_id, tags=tags, model_id=model_id,
                                           await_creation_for=60)

    version = retry(create, f"create version of {name!r}")
    return version, True


def set_version_tags(client: Any, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        retry(lambda k=key, v=value: client.set_model_version_tag(name, version, k, v),  # type: ignore[misc]
              f"tag version {version}")


def artifact_digest(model_uri: str, tracking_uri: str | None = None) -> str:
    """`tree_digest` of the model's artifacts as the registry stores them (downloaded back, so the digest is
    of what KServe's storage initializer will fetch); recorded as the version tag TAG_ARTIFACT_SHA256."""
    import tempfile
    from pathlib import Path

    import mlflow.artifacts

    from modelops.formats.artifacts import tree_digest

    with tempfile.TemporaryDirectory(prefix="modelops-digest-") as tmp:
        local = retry(lambda: mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp,
                                                                  tracking_uri=tracking_uri),
                      f"download {model_uri} for its digest")
        return tree_digest(Path(local))


def set_alias(client: Any, name: str, alias: str, version: str) -> None:
    retry(lambda: client.set_registered_model_alias(name, alias, version), f"set alias {alias}")


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    """The version an alias points at, or None if the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return retry(lambda: client.get_model_version_by_alias(name, alias), f"read alias {alias}")
    except MlflowException as exc:
        if _error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise
