"""Credentials for the Kubernetes API, shared by the operator and the console (both talk to it with httpx).

In-cluster (the Pod's ServiceAccount token, re-read as kubelet rotates it, and the cluster CA) or a
kubeconfig's current context (a token or token file, or a client certificate and key, inline or as files;
`insecure-skip-tls-verify`). Exec and auth-provider plugins are not supported: a kubeconfig that needs one
is refused with its name, not silently used without credentials.

Why not the `kubernetes` package: the operator makes a dozen kinds of calls and wants JSON; importing the
client's config loaders pulls in `kubernetes.client` (~28 MB of RSS, measured in bench/operator_memory.py),
and kopf imports `kubernetes.client` too whenever it is importable. Neither runtime installs it.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: How long a token read from a file is used before the file is read again (kubelet rotates projected
#: ServiceAccount tokens well before they expire; the official clients re-read about once a minute).
TOKEN_FILE_TTL = 30.0


class KubeconfigError(Exception):
    """No usable credentials: the message names the file and what is missing."""


@dataclass
class Credentials:
    server: str
    #: the TLS settings (CA, client certificate; True: the system's CAs, for a plain http test server too)
    verify: ssl.SSLContext | bool = True
    token: str = ""
    token_file: str = ""
    namespace: str = "default"
    _file_token: tuple[float, str] = field(default=(0.0, ""), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bearer(self) -> str:
        """The token to send (empty: none); a token file is re-read at most every TOKEN_FILE_TTL s."""
        if not self.token_file:
            return self.token
        now = time.monotonic()
        with self._lock:
            at, token = self._file_token
            if not token or now - at >= TOKEN_FILE_TTL:
                token = Path(self.token_file).read_text().strip()
                self._file_token = (now, token)
            return token

    def headers(self) -> dict[str, str]:
        token = self.bearer()
        return {"Authorization": f"Bearer {token}"} if token else {}


def _material(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        p = Path(entry[key]).expanduser()
        return (p if p.is_absolute() else base / p).read_bytes()
    return None


def in_cluster() -> Credentials | None:
    """The Pod's ServiceAccount, if this runs in a Pod that mounts one."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if not host or not (SA_DIR / "token").exists():
        return None
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    ns_file = SA_DIR / "namespace"
    namespace = ns_file.read_text().strip() if ns_file.exists() else "default"
    return Credentials(f"https://{host}:{port}", ssl.create_default_context(cafile=str(SA_DIR / "ca.crt")),
                       token_file=str(SA_DIR / "token"), namespace=namespace)


def from_kubeconfig(path: str | Path = "") -> Credentials:
    """The current context of `path` (default: the first file of KUBECONFIG, else ~/.kube/config)."""
    file = Path(path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config").expanduser()
    try:
        cfg = yaml.safe_load(file.read_text()) or {}
    except OSError as exc:
        raise KubeconfigError(f"kubeconfig {file}: {exc.strerror or exc}") from None
    ctx_name = cfg.get("current-context")
    context = next((c.get("context") or {} for c in cfg.get("contexts") or [] if c.get("name") == ctx_name), None)
    if context is None:
        raise KubeconfigError(f"kubeconfig {file}: no context named current-context {ctx_name!r}")
    cluster = next((c.get("cluster") or {} for c in cfg.get("clusters") or []
                    if c.get("name") == context.get("cluster")), None)
    if not cluster or not cluster.get("server"):
        raise KubeconfigError(f"kubeconfig {file}: context {ctx_name!r} names no cluster with a server")
    user: dict[str, Any] = next((u.get("user") or {} for u in cfg.get("users") or []
                                 if u.get("name") == context.get("user")), {})
    for plugin in ("exec", "auth-provider"):
        if user.get(plugin):
            raise KubeconfigError(f"kubeconfig {file}: user {context.get('user')!r} needs an {plugin} plugin, "
                                  "which modelops does not run; use a token or a client certificate")
    verify = ssl.create_default_context()
    ca = _material(cluster, "certificate-authority", file.parent)
    if cluster.get("insecure-skip-tls-verify"):
        verify.check_hostname, verify.verify_mode = False, ssl.CERT_NONE
    elif ca:
        verify.load_verify_locations(cadata=ca.decode())
    cert, key = _material(user, "client-certificate", file.parent), _material(user, "client-key", file.parent)
    if cert and key:
        with tempfile.TemporaryDirectory() as d:  # load_cert_chain reads files only; removed at once
            (Path(d) / "c.pem").write_bytes(cert)
            (Path(d) / "k.pem").write_bytes(key)
            verify.load_cert_chain(str(Path(d) / "c.pem"), str(Path(d) / "k.pem"))
    token_file = user.get("tokenFile") or ""
    if token_file and not Path(token_file).is_absolute():
        token_file = str(file.parent / token_file)
    return Credentials(str(cluster["server"]).rstrip("/"), verify, token=str(user.get("token") or ""),
                       token_file=token_file, namespace=str(context.get("namespace") or "default"))


def load(kubeconfig: str | Path = "") -> Credentials:
    """In-cluster credentials when running in a Pod and no kubeconfig is named, else the kubeconfig's."""
    if not kubeconfig:
        creds = in_cluster()
        if creds is not None:
            return creds
    return from_kubeconfig(kubeconfig)
