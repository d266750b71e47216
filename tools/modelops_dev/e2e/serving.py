"""The serving stack of the e2e tier and the demo on any cluster the kubeconfig names: the Gateway API CRDs,
Traefik with its GatewayClass and the Gateway KServe uses, then KServe v0.20.0 from its own manifests with the
manager as a Pod (modelops_dev.e2e.gateway, modelops_dev.e2e.kserve). `modelops cluster install-serving`.

The webhook certificate is signed by the local cluster's CA when the kubeconfig is a `modelops cluster`
one (its pki/ directory sits next to it), else by a CA made for this install under
build/e2e/pki/<server hash> (the API server trusts it through the caBundle written into each webhook).
The images must be pullable by the cluster's nodes: `modelops cluster load-images` on the local node, a
registry (or `kind load docker-image`) elsewhere.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from modelops_dev.e2e import gateway, kserve


@dataclass(frozen=True)
class ServingImages:
    kserve: kserve.Images = field(default_factory=kserve.Images)
    traefik: str = "modelops/traefik:dev"

    def all(self) -> tuple[str, ...]:
        return (*self.kserve.all(), self.traefik)


def pki_root(kubeconfig: Path, server: str, fallback_root: Path) -> Path:
    """The local cluster's own CA when the kubeconfig belongs to `modelops cluster`, else one per API server."""
    local = kubeconfig.resolve().parent / "pki"
    if (local / "ca.key").exists():
        return local
    return fallback_root / hashlib.sha256(server.encode()).hexdigest()[:12]


def install_serving(kubectl: Callable[..., str], kubectl_run: Callable[..., object], *, kubeconfig: Path,
                    server: str, work: Path, images: ServingImages | None = None,
                    progress: Callable[[str], None] = print) -> float:
    """Install (idempotently: everything is server-side applied) and wait until KServe's webhooks answer and
    the Gateway is programmed. Returns the seconds it took."""
    from modelops_dev.cluster import versions

    images = images or ServingImages()
    t0 = time.monotonic()
    names = gateway.install_crds(kubectl)
    progress(f"  Gateway API {versions.GATEWAY_API_VERSION} CRDs (standard channel): {len(names)}")
    objs = gateway.traefik_manifests(images.traefik) + gateway.gateway_manifests()
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=modelops-e2e", "-f", "-",
            stdin="\n---\n".join(yaml.safe_dump(o) for o in objs), timeout=300)
    kubectl("rollout", "status", "-n", gateway.NAMESPACE, f"deployment/{gateway.NAME}", "--timeout=300s", timeout=320)
    progress(f"  Traefik {versions.TRAEFIK_VERSION} ready; GatewayClass {gateway.GATEWAY_CLASS}, Gateway {gateway.GATEWAY_NAMESPACE}/{gateway.GATEWAY_NAME}")
    certs = kserve.webhook_certs(pki_root(kubeconfig, server, work / "pki"), ())
    installer = kserve.Installer(kubectl, kubectl_run, progress=progress)
    kserve.install(installer, versions.serving_dir("kserve") / "config", certs, kserve.Options(images=images.kserve))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        gw = yaml.safe_load(kubectl("get", "gateway", "-n", gateway.GATEWAY_NAMESPACE, gateway.GATEWAY_NAME,
                                    "-o", "json"))
        if gateway.gateway_programmed(gw):
            break
        time.sleep(2)
    else:
        raise TimeoutError(f"Gateway {gateway.GATEWAY_NAMESPACE}/{gateway.GATEWAY_NAME} not Programmed after 120s: "
                           f"{(gw or {}).get('status')}")
    progress(f"  serving stack ready in {time.monotonic() - t0:.0f}s")
    return time.monotonic() - t0
