"""Console settings, read from the environment (prefix MODELOPS_CONSOLE_); the chart sets them."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELOPS_CONSOLE_", extra="ignore")

    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(8080, description="Port to listen on.")
    kubeconfig: str = Field("", description="Kubeconfig file; empty: in-cluster credentials (ServiceAccount), "
                                            "then KUBECONFIG / ~/.kube/config.")
    namespaces: str = Field("", description="Comma-separated namespaces to show; empty: all.")
    mlflow_tracking_uri: str = Field("http://mlflow.modelops.svc:5000", description="MLflow server.")
    prometheus_url: str = Field("http://prometheus.monitoring.svc:9090", description="Prometheus HTTP API.")
    drift_exporter_url: str = Field("http://modelops-drift-exporter.modelops.svc:8080",
                                    description="Drift exporter base URL (recent predictions, drift now).")
    drift_token: str = Field("", description="The drift exporter's shared secret (the chart's Secret, as the "
                             "operator gets it): its read endpoints answer 401 without it.")
    public_url: str = Field("", description="The console's external URL, used in links; empty: the request's.")
    link_secret_file: str = Field("", description="File holding the HMAC secret of signed approve/reject links "
                                                  "(>= 32 bytes); empty: signed links are refused.")
    secure_cookies: bool = Field(True, description="Mark the session cookie Secure (HTTPS only). Set false "
                                                   "only for plain-HTTP local use.")
    http_timeout_seconds: float = Field(5.0, gt=0, description="Timeout of each call to MLflow / Prometheus.")
    auth_cache_seconds: float = Field(10.0, ge=0, description="How long a TokenReview answer is reused for the "
                                                              "same token (0: ask every request).")

    smtp_secret_dir: str = Field("", description="Directory of the mounted SMTP Secret (host, port, from, to, "
                                                 "username, password, security); empty: no approval emails.")
    slack_webhook_file: str = Field("", description="File holding a Slack incoming-webhook URL; empty: no Slack "
                                                    "messages.")
    notify_interval_seconds: float = Field(3.0, gt=0, description="How often pending approvals are looked for "
                                                                  "(each is announced once).")
    link_ttl_seconds: float = Field(86400.0, gt=0, description="How long a signed approve/reject link is valid.")

    def namespace_list(self) -> list[str]:
        return [n.strip() for n in self.namespaces.split(",") if n.strip()]

    def link_secret(self) -> bytes | None:
        if not self.link_secret_file:
            return None
        with open(self.link_secret_file, "rb") as fh:
            return fh.read().strip()
