"""Operator settings, read from the environment (prefix MODELOPS_). Every default is documented here and
in the chart's values.yaml, which sets these variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelops import __version__


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELOPS_", extra="ignore")

    namespaces: str = Field("", description="Comma-separated namespaces to watch; empty watches all.")
    peering: str = Field("", description="KopfPeering name for several replicas; empty runs standalone "
                                         "(one replica, the chart's default).")
    liveness_host: str = Field("0.0.0.0", description="Address of the liveness endpoint.")
    liveness_port: int = Field(8080, description="Port of the liveness endpoint (GET /healthz).")
    metrics_port: int = Field(8081, description="Port of the operator's Prometheus metrics (GET /metrics, on "
                                                "liveness_host); 0 serves none.")
    log_format: str = Field("json", description="'json' (one object per line) or 'plain'.")
    log_level: str = Field("INFO", description="Python log level.")
    mlflow_tracking_uri: str = Field("http://mlflow.modelops.svc:5000",
                                     description="Default MLflow server for resources that name none.")
    prometheus_url: str = Field("http://prometheus.monitoring.svc:9090",
                                description="Default Prometheus HTTP API for analysis and drift queries.")
    drift_exporter_url: str = Field("http://modelops-drift-exporter.modelops.svc:8080/events",
                                    description="Default KServe logger target; with drift_exporter_shards > 1 it "
                                                "names the shard with {shard} (the exporter StatefulSet's pod "
                                                "ordinal).")
    drift_exporter_shards: int = Field(1, ge=1, description=(
        "Drift exporter shards: each InferenceService logs to the shard that owns (namespace, name) by "
        "rendezvous hashing (modelops.desired.drift_shards)."))
    drift_token: str = Field("", description=(
        "The drift exporter's shared secret (the chart's Secret). The operator writes each InferenceService's "
        "logger URL as <drift_exporter_url base>/events/ns/<namespace>/<HMAC of the namespace>, so the KServe "
        "agent authenticates without a header; empty: the plain drift_exporter_url (an exporter with --no-auth)."))
    allowed_storage_uri_prefixes: str = Field("", description=(
        "Comma-separated prefixes a model's storage URI must start with (e.g. s3://models/,http://mlflow."
        "modelops.svc:5000/); a version resolving elsewhere is not served (Warning StorageUriNotAllowed). "
        "Empty: any URI."))
    mlflow_artifacts_destination: str = Field(
        "", description="The MLflow server's --artifacts-destination (e.g. s3://mlflow/artifacts). When set, "
                        "proxied mlflow-artifacts: locations are handed to KServe as URIs under it; otherwise as "
                        "the server's HTTP artifact endpoint.")
    kserve_namespace: str = Field("kserve", description="Namespace of KServe's inferenceservice-config "
                                                        "ConfigMap (the cluster's default deployment mode).")
    gateway: str = Field("", description="Gateway (namespace/name) of modelops' weighted HTTPRoutes; empty uses "
                                         "KServe's ingress.kserveIngressGateway.")
    traffic_split: str = Field("auto", description="Who splits a Standard-mode canary at the gateway: auto, "
                                                   "modelops (a weighted HTTPRoute) or kserve.")
    reconcile_workers: int = Field(4, ge=1, description=(
        "Threads that talk to the Kubernetes API, MLflow and Prometheus for ModelDeployments. Measured with "
        "10,000 new ModelDeployments on a busy 2-core host, 16 threads filled no faster than 4 (~5 "
        "InferenceServices/s either way: the API server bounds it; bench/rollout_latency.10000.json)."))
    trainer_image: str = Field(f"modelops/trainer:{__version__}", description="Default trainer image.")
    server_image: str = Field(f"modelops/model-server:{__version__}", description="Default model server image.")
    retrain_resync_seconds: float = Field(30.0, gt=0, description=(
        "Longest time between two reconciles of a RetrainSchedule. Cron firings and drift checks are "
        "scheduled to the second regardless, and Job changes wake the controller at once."))
    retrain_workers: int = Field(8, ge=1, description="RetrainSchedules reconciled concurrently.")
    http_timeout_seconds: float = Field(5.0, gt=0, description=(
        "Timeout of each Prometheus query, MLflow registry call and webhook POST."))
    reconcile_budget_seconds: float = Field(10.0, gt=0, description=(
        "Time budget of one reconcile: every Prometheus query, MLflow call and webhook POST gets at most what "
        "is left of it, and what does not fit (more queries, outbox items) waits for the next pass, so one "
        "slow or unreachable dependency cannot hold the workers."))
    credentials_ttl_seconds: float = Field(300.0, gt=0, description=(
        "How long an MLflow client keeps the credentials it read from its Secret (a 401/403 drops it at once)."))
    leader_election: bool = Field(False, description=(
        "Reconcile only while holding the coordination.k8s.io Lease `lease_name` (several replicas: one "
        "acts, the others stand by with warm caches). Off: this process acts alone."))
    lease_name: str = Field("modelops-operator", description="Name of the leader Lease.")
    lease_namespace: str = Field("", description="Namespace of the leader Lease (the chart sets the release's).")
    pod_name: str = Field("", description="This replica's identity in the Lease (the chart sets the Pod name); "
                                          "empty: host name, process id and a random suffix.")
    lease_duration_seconds: float = Field(15.0, gt=0, description="leaseDurationSeconds of the Lease.")
    lease_renew_deadline_seconds: float = Field(10.0, gt=0, description=(
        "The leader stops acting when it could not renew for this long (less than the lease duration)."))
    lease_retry_period_seconds: float = Field(2.0, gt=0, description="Time between two acquire/renew attempts.")
    test_clock_file: str = Field("", description=(
        "TEST ONLY: a file with {\"now\": ISO time} or {\"offsetSeconds\": N} that replaces the operator's "
        "clock for trigger evaluation (see modelops/adapters/clock.py). Empty: the real clock."))

    def allowed_storage_uri_list(self) -> list[str]:
        return [p.strip() for p in self.allowed_storage_uri_prefixes.split(",") if p.strip()]

    def namespace_list(self) -> list[str]:
        return [n.strip() for n in self.namespaces.split(",") if n.strip()]
