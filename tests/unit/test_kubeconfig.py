"""modelops.kubeconfig: the credentials the operator and the console read (in-cluster or a kubeconfig),
without the `kubernetes` package. Client certificates from a real kubeconfig are exercised by the cluster
tier (tests/cluster/test_secret_access.py, every operator process)."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops import kubeconfig

pytestmark = pytest.mark.unit


def _write(tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None,
           namespace: str | None = "team-a") -> Path:
    ctx: dict[str, Any] = {"cluster": "c", "user": "u", **({"namespace": namespace} if namespace else {})}
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "here",
           "contexts": [{"name": "other", "context": {"cluster": "x", "user": "x"}}, {"name": "here", "context": ctx}],
           "clusters": [{"name": "c", "cluster": cluster or {"server": "https://10.0.0.1:6443/",
                                                              "insecure-skip-tls-verify": True}}],
           "users": [{"name": "u", "user": user}]}
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_token_context_server_and_namespace_of_the_current_context(tmp_path: Path) -> None:
    creds = kubeconfig.from_kubeconfig(_write(tmp_path, {"token": "abc"}))
    assert creds.server == "https://10.0.0.1:6443" and creds.namespace == "team-a"
    assert creds.headers() == {"Authorization": "Bearer abc"}
    assert isinstance(creds.verify, ssl.SSLContext) and creds.verify.verify_mode == ssl.CERT_NONE
    assert kubeconfig.from_kubeconfig(_write(tmp_path, {}, namespace=None)).namespace == "default"
    assert kubeconfig.from_kubeconfig(_write(tmp_path, {})).headers() == {}


def test_kubeconfig_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", f"{_write(tmp_path, {'token': 'e'})}:/nonexistent")
    assert kubeconfig.load().headers() == {"Authorization": "Bearer e"}


def test_a_token_file_is_read_relative_to_the_kubeconfig_and_reread_after_the_ttl(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tok").write_text("one\n")
    creds = kubeconfig.from_kubeconfig(_write(tmp_path, {"tokenFile": "tok"}))
    assert creds.bearer() == "one"
    (tmp_path / "tok").write_text("two\n")
    assert creds.bearer() == "one"  # within the TTL
    monkeypatch.setattr(kubeconfig, "TOKEN_FILE_TTL", 0.0)
    assert creds.bearer() == "two"  # rotated by kubelet: picked up


def test_the_ca_is_read_inline_or_from_a_file(tmp_path: Path) -> None:
    bundle = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    if not bundle.exists():
        pytest.fail(f"no system CA bundle at {bundle}: install ca-certificates")
    pem = bundle.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    (tmp_path / "ca.crt").write_text(pem)
    for cluster in ({"server": "https://k:6443", "certificate-authority": "ca.crt"},
                    {"server": "https://k:6443", "certificate-authority-data": base64.b64encode(pem.encode()).decode()}):
        creds = kubeconfig.from_kubeconfig(_write(tmp_path, {"token": "t"}, cluster))
        assert isinstance(creds.verify, ssl.SSLContext)
        assert creds.verify.verify_mode == ssl.CERT_REQUIRED and creds.verify.check_hostname
        assert creds.verify.get_ca_certs(), "the kubeconfig's CA is loaded"


@pytest.mark.parametrize("plugin", ["exec", "auth-provider"])
def test_credential_plugins_are_refused_by_name(tmp_path: Path, plugin: str) -> None:
    with pytest.raises(kubeconfig.KubeconfigError, match=plugin):
        kubeconfig.from_kubeconfig(_write(tmp_path, {plugin: {"command": "aws"}}))


def test_missing_file_or_context_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(kubeconfig.KubeconfigError, match="nope"):
        kubeconfig.from_kubeconfig(tmp_path / "nope")
    path = _write(tmp_path, {"token": "t"})
    path.write_text(path.read_text().replace("current-context: here", "current-context: gone"))
    with pytest.raises(kubeconfig.KubeconfigError, match="'gone'"):
        kubeconfig.from_kubeconfig(path)


def test_in_cluster_wins_unless_a_kubeconfig_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    bundle = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    (sa / "ca.crt").write_text(bundle.read_text())
    (sa / "token").write_text("pod-token")
    (sa / "namespace").write_text("modelops-system")
    monkeypatch.setattr(kubeconfig, "SA_DIR", sa)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    creds = kubeconfig.load()
    assert (creds.server, creds.namespace, creds.bearer()) == ("https://[fd00::1]:443", "modelops-system", "pod-token")
    assert kubeconfig.load(_write(tmp_path, {"token": "k"})).bearer() == "k"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    monkeypatch.setenv("KUBECONFIG", str(_write(tmp_path, {"token": "k2"})))
    assert kubeconfig.load().bearer() == "k2"
