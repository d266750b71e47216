"""The two MLflow model-registry writes a decision needs, over MLflow's REST API (no global client state).

Credentials (basic auth or a bearer token) are passed per call and never appear in errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class MlflowAuth:
    username: str = ""
    password: str = ""
    token: str = ""

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def basic(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None


class RegistryError(RuntimeError):
    pass


def _post(uri: str, path: str, body: dict[str, str], auth: MlflowAuth, timeout: float) -> None:
    url = uri.rstrip("/") + "/api/2.0/mlflow/" + path
    try:
        resp = httpx.post(url, json=body, headers=auth.headers(), auth=auth.basic(), timeout=timeout)
    except httpx.HTTPError as exc:
        raise RegistryError(f"MLflow at {uri} is unreachable ({type(exc).__name__})") from None
    if resp.status_code != 200:
        try:
            detail = str(resp.json().get("message", ""))[:200]
        except ValueError:
            detail = ""
        raise RegistryError(f"MLflow {path} answered HTTP {resp.status_code} {detail}".strip())


def set_alias(uri: str, model: str, alias: str, version: str, auth: MlflowAuth, timeout: float = 5.0) -> None:
    _post(uri, "registered-models/alias", {"name": model, "alias": alias, "version": version}, auth, timeout)


def set_version_tag(uri: str, model: str, version: str, key: str, value: str, auth: MlflowAuth,
                    timeout: float = 5.0) -> None:
    _post(uri, "model-versions/set-tag", {"name": model, "version": version, "key": key, "value": value}, auth,
          timeout)
