"""Review M8 on the real API server: the operator reads only the Secrets it is meant to.

A resource author can name any Secret of the namespace in `credentialsSecretRef` or `urlSecretRef`; the
operator uses a Secret only when it is labelled `modelops.dev/operator-readable: "true"`, and the chart's
`rbac.secretNames` limits its `get` to those names (RBAC resourceNames), so other Secrets are refused by
the API server itself. The operator's ServiceAccount here holds exactly the Role the chart renders.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modelops.adapters.kube import Kube, KubeError, connect
from modelops.adapters.kube_rest import Transport
from modelops.adapters.registry import RegistryError
from modelops.api.vocabulary import LABEL_SECRET_READABLE
from modelops.controller.clients import Clients
from modelops.kubeconfig import Credentials
from tests.charts.chart import render

pytestmark = pytest.mark.cluster


def _secret(kube: Any, namespace: str, name: str, labelled: bool) -> None:
    labels = {LABEL_SECRET_READABLE: "true"} if labelled else {}
    kube.core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        string_data={"MLFLOW_TRACKING_TOKEN": f"token-of-{name}", "url": f"https://hooks.example/{name}"}))


def _as_service_account(kube: Any, namespace: str, sa: str) -> Kube:
    token = kube.core.create_namespaced_service_account_token(sa, namespace, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
    ca = ssl.create_default_context(cafile=str(Path(kube.cluster.root) / "pki" / "ca.crt"))
    return Kube(Transport(Credentials(kube.cluster.state().server, ca, token=token)))


def test_unlabelled_secrets_are_never_used(kube: Any, namespace: str) -> None:
    _secret(kube, namespace, "mlflow-credentials", labelled=True)
    _secret(kube, namespace, "team-db-password", labelled=False)
    op = Kube(connect(kube.kubeconfig))  # even with every right, the adapter refuses what is not labelled for it
    assert op.secret_values(namespace, "mlflow-credentials")["MLFLOW_TRACKING_TOKEN"] == "token-of-mlflow-credentials"
    assert op.secret_value(namespace, "mlflow-credentials", "url") == "https://hooks.example/mlflow-credentials"
    with pytest.raises(KubeError) as err:
        op.secret_values(namespace, "team-db-password")
    assert err.value.status == 403 and LABEL_SECRET_READABLE in str(err.value)
    assert "token-of-team-db-password" not in str(err.value)
    with pytest.raises(KubeError):
        op.secret_value(namespace, "team-db-password", "url")  # never posted to as a webhook URL
    assert op.secret_value(namespace, "absent", "url") is None
    # what the ModelDeployment's status then says: credentials unavailable, naming the label
    made: list[dict[str, Any]] = []
    clients = Clients(op, registry_factory=lambda uri, **kw: made.append(kw) or object())
    with pytest.raises(RegistryError) as rerr:
        clients.registry("http://mlflow.example:5000", namespace, "team-db-password")
    assert rerr.value.reason == "CredentialsUnavailable" and LABEL_SECRET_READABLE in str(rerr.value)
    assert made == []  # no client was made with another team's Secret
    clients.registry("http://mlflow.example:5000", namespace, "mlflow-credentials")
    assert made[0]["token"] == "token-of-mlflow-credentials"


def test_rbac_secret_names_limit_the_operators_gets(kube: Any, namespace: str) -> None:
    objs = render(sets=[f"operator.watchNamespaces={{{namespace}}}", "rbac.secretNames={mlflow-credentials}"],
                  namespace=namespace, release="m8")
    role = next(o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "m8-modelops-operator")
    binding = next(o for o in objs if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "m8-modelops-operator")
    sa = binding["subjects"][0]["name"]
    kube.core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa)))
    kube.rbac.create_namespaced_role(namespace, role)
    kube.rbac.create_namespaced_role_binding(namespace, binding)
    _secret(kube, namespace, "mlflow-credentials", labelled=True)
    _secret(kube, namespace, "other-credentials", labelled=True)  # labelled, but not a name RBAC grants
    op = _as_service_account(kube, namespace, sa)
    deadline = time.monotonic() + 30
    while True:  # RBAC takes effect within moments of the binding
        try:
            values = op.secret_values(namespace, "mlflow-credentials")
            break
        except KubeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    assert values["MLFLOW_TRACKING_TOKEN"] == "token-of-mlflow-credentials"
    with pytest.raises(KubeError) as err:
        op.secret_values(namespace, "other-credentials")
    assert err.value.status == 403 and "forbidden" in str(err.value).lower()
    with pytest.raises(KubeError) as err:  # and never a list (no enumeration of Secrets)
        op.request("GET", f"/api/v1/namespaces/{namespace}/secrets")
    assert err.value.status == 403
