"""The e2e loop's view of a cluster: kubectl and helm for objects, the API server's service proxy for HTTP.

Everything goes through the *current kubeconfig*, so the loop runs against the local node
(`modelops cluster up --node`) or any real cluster. HTTP to in-cluster Services (MLflow, Prometheus, the
model servers, the drift exporter) goes through `/api/v1/namespaces/NS/services/NAME:PORT/proxy/...`:
no port-forwards and no routes from this machine to cluster IPs are needed.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any


class KubeError(RuntimeError):
    pass


def _tool(name: str) -> str:
    """`name` from the local cluster's build (same version as the node), else from PATH."""
    try:
        from modelops_dev.cluster import versions

        local = versions.bin_dir() / name
        if local.exists():
            return str(local)
    except Exception:
        pass
    found = shutil.which(name)
    if not found:
        raise KubeError(f"{name} not found: run `modelops cluster build` (it builds kubectl and helm)")
    return found


class Kube:
    def __init__(self, kubeconfig: str | None = None) -> None:
        self.kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        self.kubectl_bin = _tool("kubectl")
        self.helm_bin = _tool("helm")
        self.env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        self._api: Any = None

    # ---- CLIs ------------------------------------------------------------------------------------------
    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 120) -> str:
        proc = subprocess.run([self.kubectl_bin, *args], env=self.env, text=True, capture_output=True,
                              input=stdin, timeout=timeout)
        if check and proc.returncode != 0:
            raise KubeError(f"kubectl {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def helm(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run([self.helm_bin, *args], env=self.env, text=True, capture_output=True, timeout=timeout)
        if proc.returncode != 0:
            raise KubeError(f"helm {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def get(self, kind: str, name: str | None = None, namespace: str | None = None,
            selector: str | None = None) -> Any:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        if selector:
            args += ["-l", selector]
        out = self.kubectl(*args, check=False)
        return json.loads(out) if out.strip() else None

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]], namespace: str | None = None,
              server_side: bool = False) -> str:
        items = manifest if isinstance(manifest, list) else [manifest]
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        args = ["apply", "-f", "-"] + (["--server-side", "--field-manager=modelops-e2e"] if server_side else [])
        if namespace:
            args += ["-n", namespace]
        for attempt in (1, 2, 3):
            try:
                return self.kubectl(*args, stdin=body)
            except KubeError as exc:
                # kubectl's schema download (/openapi) times out on a loaded API server right after large CRDs
                # changed (it regenerates the spec); an apply is idempotent, so it is tried again
                if attempt == 3 or "Timeout" not in str(exc):
                    raise
                time.sleep(10)
        raise AssertionError("unreachable")

    # ---- HTTP through the API server's service proxy ----------------------------------------------------
    def _client(self) -> Any:
        """An httpx client with the kubeconfig's server, CA and credentials (client certificate or token)."""
        if self._api is None:
            import httpx
            from kubernetes import client, config

            cfg = client.Configuration()
            config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
            headers = {}
            token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
            if token:
                headers["Authorization"] = token if token.lower().startswith("bearer") else f"Bearer {token}"
            # one SSLContext with the CA and the client certificate (httpx 0.28 ignores `cert=` next to a
            # `verify=` path: requests went out anonymous)
            ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.ssl_ca_cert else ssl.create_default_context()
            if not cfg.verify_ssl:
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            if cfg.cert_file:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
            self._api = httpx.Client(base_url=cfg.host, verify=ctx, headers=headers, timeout=15.0)
        return self._api

    def proxy(self, namespace: str, service: str, port: int | str, path: str, *, method: str = "GET",
              body: Any = None, headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
              timeout: float = 15.0, kind: str = "services") -> tuple[int, bytes]:
        """(status, body) of an HTTP call to Service `service`:`port` through the API server (`kind`
        "pods": to Pod `service`)."""
        if kind not in ("services", "pods"):
            raise ValueError(f"the API server proxies to services or pods, not {kind!r}")
        url = f"/api/v1/namespaces/{namespace}/{kind}/{service}:{port}/proxy/{path.lstrip('/')}"
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        import httpx

        try:
            resp = self._client().request(method, url, content=data, headers=hdrs, params=params, timeout=timeout)
        except httpx.TransportError as exc:  # a timeout or a dropped connection: the callers' KubeError
            raise KubeError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        return resp.status_code, resp.content

    def proxy_json(self, namespace: str, service: str, port: int | str, path: str, **kw: Any) -> Any:
        status, data = self.proxy(namespace, service, port, path, **kw)
        if status >= 400:
            raise KubeError(f"{service}:{port}/{path}: HTTP {status}: {data[:300]!r}")
        return json.loads(data)
