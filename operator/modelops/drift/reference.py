"""Where reference profiles come from: a file, a model directory, or an MLflow URI.

``--reference`` takes ``[MODEL=]SOURCE``. SOURCE is a ``reference_profile.json`` file, a directory that
holds one (a model directory written by ``modelops train``), or an MLflow artifact URI: ``models:/NAME/
VERSION``, ``models:/NAME@ALIAS``, ``runs:/RUN_ID/PATH`` or a plain artifact location (s3://, gs://, ...).
``{version}`` in SOURCE is replaced by each model version seen in the events, so
``churn=models:/churn/{version}`` compares every served version with its own training data. Without
``MODEL=`` the reference applies to every model without a reference of its own.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.formats.reference_profile import PROFILE_FILENAME, read_profile

log = logging.getLogger(__name__)

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/", "s3://", "gs://", "wasbs://", "abfss://",
                  "hdfs://", "http://", "https://", "dbfs:/")
# A failed load is retried after this many seconds (events meanwhile get 503 reference_unavailable).
RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class ReferenceSpec:
    model: str | None  # None: the default for every model
    source: str

    @classmethod
    def parse(cls, text: str) -> ReferenceSpec:
        head, sep, tail = text.partition("=")
        if sep and head and "/" not in head and ":" not in head:
            return cls(model=head, source=tail)
        return cls(model=None, source=text)


def load_profile(source: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """Read a profile from a path or download it from MLflow."""
    if not source.startswith(MLFLOW_SCHEMES):
        return read_profile(source)
    import mlflow
    from mlflow.artifacts import download_artifacts

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="modelops-reference-") as tmp:
        base = source.rstrip("/")
        if base.endswith(".json"):
            return read_profile(download_artifacts(artifact_uri=base, dst_path=tmp))
        try:  # the profile next to the model files: one small download
            return read_profile(download_artifacts(artifact_uri=f"{base}/{PROFILE_FILENAME}", dst_path=tmp))
        except Exception as exc:  # MLflow raises several types for "not found"
            log.info("no %s directly under %s (%s); searching the artifacts", PROFILE_FILENAME, base, exc)
        root = Path(download_artifacts(artifact_uri=base, dst_path=tmp))
        found = sorted(root.rglob(PROFILE_FILENAME), key=lambda p: len(p.parts))
        if not found:
            raise FileNotFoundError(f"{source}: no {PROFILE_FILENAME} among the artifacts")
        return read_profile(found[0])


class ReferenceStore:
    """Profiles by (model, version), loaded lazily and cached; failures are retried after a pause."""

    def __init__(self, specs: Iterable[ReferenceSpec], tracking_uri: str | None = None,
                 loader: Any = load_profile) -> None:
        self.specs = {s.model: s for s in specs}
        self.tracking_uri = tracking_uri
        self.loader = loader
        self._cache: dict[str, dict[str, Any]] = {}
        self._failed: dict[str, tuple[float, str]] = {}

    def source_for(self, model: str, version: str) -> str | None:
        spec = self.specs.get(model) or self.specs.get(None)
        if spec is None:
            return None
        return spec.source.replace("{version}", version).replace("{model}", model)

    def knows(self, model: str) -> bool:
        return model in self.specs or None in self.specs

    def get(self, model: str, version: str) -> tuple[dict[str, Any], str]:
        """(profile, source). KeyError: no reference for this model; RuntimeError: it failed to load."""
        source = self.source_for(model, version)
        if source is None:
            raise KeyError(model)
        if source in self._cache:
            return self._cache[source], source
        failed = self._failed.get(source)
        if failed and time.monotonic() - failed[0] < RETRY_SECONDS:
            raise RuntimeError(failed[1])
        try:
            profile = self.loader(source, self.tracking_uri)
        except Exception as exc:
            msg = f"reference {source} could not be loaded: {exc}"
            log.warning(msg)
            self._failed[source] = (time.monotonic(), msg)
            raise RuntimeError(msg) from exc
        self._failed.pop(source, None)
        self._cache[source] = profile
        return profile, source

    def preload(self) -> None:
        """Load every reference without a {version} placeholder now, so a bad path fails at startup."""
        for spec in self.specs.values():
            if "{version}" not in spec.source:
                self.get(spec.model or "_default", "")
