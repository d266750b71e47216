"""modelops: a Kubernetes-native MLOps operator."""

from __future__ import annotations

try:
    from importlib.metadata import version as _version

    __version__ = _version("modelops")
except Exception:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"
