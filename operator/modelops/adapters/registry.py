"""The MLflow model registry over its REST API (httpx): aliases, versions, tags, artifact locations.

Why REST rather than `mlflow.MlflowClient`: credentials and timeouts are per client (each
ModelDeployment may name its own server and Secret, while MlflowClient reads them from process-wide
environment variables), and the operator does not pay mlflow's import cost and memory.

Artifact locations. KServe's storage initializer accepts gs://, s3://, https://, pvc://, ... but not
`models:/`, `runs:/` or `mlflow-artifacts:` (kserve#3555), so `storage_uri()` resolves a version to one:
1. the version tag `modelops.dev/storage-uri`, when the trainer published the model somewhere itself
   (for example a `model.tar.gz` the storage initializer downloads and unpacks);
2. the registry's download URI (`get-download-uri`, which already follows `models:/` and `runs:/`) when
   it is a URI KServe understands (s3://, gs://, https://, ...);
3. a proxied `mlflow-artifacts:` location, mapped onto `artifacts_destination` when the operator knows
   the server's `--artifacts-destination` (s3://bucket/prefix: KServe then reads the bucket directly),
   otherwise onto the server's HTTP artifact endpoint `<tracking>/api/2.0/mlflow-artifacts/artifacts/...`.
   Note that the storage initializer fetches an http(s) URI as one file or archive, so a directory-shaped
   model served over HTTP needs (1) or an object-store destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from modelops.adapters.breaker import Breaker, CircuitOpen, dependency_of
from modelops.api.vocabulary import TAG_STORAGE_URI

#: Schemes KServe's storage initializer downloads (KSERVE.md).
KSERVE_SCHEMES = ("gs", "s3", "pvc", "file", "http", "https", "hdfs", "webhdfs", "oci", "hf")


class RegistryError(Exception):
    """The registry could not answer. `reason` is a CamelCase word for a condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str = ""
    source: str = ""
    status: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, mv: Any) -> ModelVersion:
        """From MLflow's `model_version` object; RegistryError when it is not one."""
        try:
            return cls._from_json(mv)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise RegistryError("RegistryBadAnswer", f"MLflow answered a model version of an unexpected shape "
                                f"({type(exc).__name__})") from None

    @classmethod
    def _from_json(cls, mv: dict[str, Any]) -> ModelVersion:
        if not isinstance(mv, dict):
            raise TypeError("not an object")
        return cls(name=mv.get("name", ""), version=str(mv.get("version", "")), run_id=mv.get("run_id", ""),
                   source=mv.get("source", ""), status=mv.get("status", ""),
                   tags={t["key"]: t.get("value", "") for t in mv.get("tags") or []},
                   aliases=tuple(mv.get("aliases") or ()))


class MlflowRegistry:
    """A small, synchronous MLflow registry client with explicit timeouts and per-instance credentials."""

    def __init__(self, tracking_uri: str, *, username: str | None = None, password: str | None = None,
                 token: str | None = None, timeout: float = 5.0, artifacts_destination: str | None = None,
                 transport: httpx.BaseTransport | None = None, breaker: Breaker | None = None) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        #: with a breaker, an MLflow that keeps failing is not asked while the breaker is open (review M12)
        self.breaker = breaker
        self.dependency = dependency_of(self.tracking_uri)
        self.artifacts_destination = (artifacts_destination or "").rstrip("/") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._http = httpx.Client(base_url=self.tracking_uri, timeout=timeout, headers=headers, auth=auth,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    # ---------------------------------------------------------------------------------- plumbing
    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The JSON answer, None for RESOURCE_DOES_NOT_EXIST, RegistryError for anything else."""
        if self.breaker is not None:
            try:
                self.breaker.before(self.dependency)
            except CircuitOpen as exc:
                raise RegistryError("RegistryUnreachable", f"MLflow at {self.tracking_uri} is unreachable: {exc}") \
                    from None
        try:
            resp = self._http.request(method, f"/api/2.0/mlflow/{path}", params=params, json=body)
        except httpx.HTTPError as exc:
            if self.breaker is not None:
                self.breaker.failure(self.dependency)
            raise RegistryError("RegistryUnreachable", f"MLflow at {self.tracking_uri} is unreachable "
                                f"({type(exc).__name__}: {exc})") from exc
        if self.breaker is not None:
            (self.breaker.failure if resp.status_code >= 500 else self.breaker.success)(self.dependency)
        if resp.status_code == 404 or (resp.status_code == 400 and "RESOURCE_DOES_NOT_EXIST" in resp.text):
            return None
        if resp.status_code in (401, 403):
            raise RegistryError("RegistryUnauthorized", f"MLflow at {self.tracking_uri} answered "
                                f"{resp.status_code}: check spec.registry.credentialsSecretRef")
        if resp.status_code >= 400:
            raise RegistryError("RegistryError", f"MLflow {method} {path}: {resp.status_code} {resp.text[:300]}")
        if not resp.content:
            return {}
        try:
            data = resp.json()
        except ValueError:
            raise RegistryError("RegistryBadAnswer", f"MLflow at {self.tracking_uri} answered HTTP "
                                f"{resp.status_code} with no JSON ({resp.headers.get('content-type', '?')}); "
                                "is a proxy or login page in front of it?") from None
        if not isinstance(data, dict):
            raise RegistryError("RegistryBadAnswer", f"MLflow at {self.tracking_uri} answered JSON that is not "
                                "an object")
        return data

    # ---------------------------------------------------------------------------------- reads
    def get_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version behind `alias`, None when the alias is not set."""
        try:
            data = self._call("GET", "registered-models/alias", params={"name": name, "alias": alias})
        except RegistryError as exc:
            # MLflow answers a missing alias with 400 INVALID_PARAMETER_VALUE "... alias X not found."
            if exc.reason == "RegistryError" and "not found" in str(exc):
                return None
            raise
        return ModelVersion.from_json(data.get("model_version")) if data else None

    def get_version(self, name: str, version: str) -> ModelVersion | None:
        data = self._call("GET", "model-versions/get", params={"name": name, "version": version})
        return ModelVersion.from_json(data.get("model_version")) if data else None

    def download_uri(self, name: str, version: str) -> str:
        data = self._call("GET", "model-versions/get-download-uri", params={"name": name, "version": version})
        if not data or not data.get("artifact_uri"):
            raise RegistryError("VersionNotFound", f"MLflow has no artifact location for {name} version {version}")
        return str(data["artifact_uri"])

    def storage_uri(self, mv: ModelVersion) -> str:
        """A URI KServe's storage initializer can fetch (see the module docstring for the order)."""
        if mv.tags.get(TAG_STORAGE_URI):
            return mv.tags[TAG_STORAGE_URI]
        return self.kserve_uri(self.download_uri(mv.name, mv.version))

    def kserve_uri(self, artifact_uri: str) -> str:
        parts = urlsplit(artifact_uri)
        if parts.scheme == "mlflow-artifacts":
            path = parts.path.lstrip("/")
            if self.artifacts_destination:
                return f"{self.artifacts_destination}/{path}"
            base = f"http://{parts.netloc}" if parts.netloc else self.tracking_uri
            return f"{base}/api/2.0/mlflow-artifacts/artifacts/{path}"
        if parts.scheme in KSERVE_SCHEMES:
            return artifact_uri
        if parts.scheme == "" and artifact_uri.startswith("/"):
            return f"file://{artifact_uri}"
        raise RegistryError("UnsupportedArtifactUri", f"artifact location {artifact_uri!r} has no scheme KServe's "
                            f"storage initializer can fetch ({', '.join(KSERVE_SCHEMES)}); set the version tag "
                            f"{TAG_STORAGE_URI}")

    # ---------------------------------------------------------------------------------- writes
    def set_alias(self, name: str, alias: str, version: str, if_version: str | None = None) -> bool:
        """Point `alias` at `version`; with `if_version`, only when it currently points there (or already at
        `version`: a re-run after a crash is a no-op). True if the alias points at `version` afterwards."""
        if if_version is not None:
            current = self.get_alias(name, alias)
            if current is not None and current.version == version:
                return True
            if current is None or current.version != if_version:
                return False
        self._call("POST", "registered-models/alias", body={"name": name, "alias": alias, "version": version})
        return True

    def delete_alias(self, name: str, alias: str, if_version: str | None = None) -> bool:
        """Remove `alias`; with `if_version`, only when it points at that version. True if removed."""
        current = self.get_alias(name, alias)
        if current is None or (if_version is not None and current.version != if_version):
            return False
        self._call("DELETE", "registered-models/alias", body={"name": name, "alias": alias})
        return True

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._call("POST", "model-versions/set-tag", body={"name": name, "version": version, "key": key,
                                                            "value": value})
