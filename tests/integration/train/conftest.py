"""Trainer integration tests: real `mlflow server` (SQLite, served artifacts), real datasets from sklearn."""

from __future__ import annotations

import os

import pytest

# Spinning OpenMP workers make fits 10x slower on a shared machine (see modelops_pipelines.cli); this must
# be set before scikit-learn loads its OpenMP runtime, i.e. at collection time.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


@pytest.fixture()
def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
