"""The Gateway API data plane of the e2e tier and the demo, on any cluster the kubeconfig names.

- the Gateway API CRDs, standard channel, at the version KServe v0.20.0 is compiled against (v1.5.1, from
  the module sigs.k8s.io/gateway-api; `modelops cluster build-serving gateway-api`), server-side applied;
- Traefik v3 (built from its Go module) with its Kubernetes Gateway provider: a Deployment and a ClusterIP
  Service in namespace `traefik`, RBAC as Traefik's documentation lists it (read the routes, services,
  endpoint slices, namespaces, secrets; update the routes' and gateways' status);
- the GatewayClass `traefik` (controller `traefik.io/gateway-controller`) and the Gateway
  `kserve/kserve-ingress-gateway` that KServe's inferenceservice-config names, with one HTTP listener on
  Traefik's `web` entry point (port 8000) that admits routes from every namespace.

Traefik honours weighted HTTPRoute backendRefs (a weighted round robin of its services) without an Envoy
binary, which is why it was chosen over Envoy Gateway, Istio, Contour or kgateway (all Envoy-based: no
Envoy binary can be built from a Go module) and NGINX Gateway Fabric (its data plane is NGINX plus njs).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

NAMESPACE = "traefik"
NAME = "traefik"
GATEWAY_CLASS = "traefik"
CONTROLLER_NAME = "traefik.io/gateway-controller"
GATEWAY_NAMESPACE = "kserve"
GATEWAY_NAME = "kserve-ingress-gateway"
WEB_PORT = 8000
PING_PORT = 8082


def traefik_args(web_port: int = WEB_PORT, ping_port: int = PING_PORT, status_ip: str = "") -> list[str]:
    """Traefik's static configuration: the Kubernetes Gateway provider, the `web` and `ping` entry points. The
    Gateway's status address is Traefik's Service, or `status_ip` for a Traefik outside the cluster."""
    status = ([f"--providers.kubernetesgateway.statusaddress.ip={status_ip}"] if status_ip else
              [f"--providers.kubernetesgateway.statusaddress.service.name={NAME}",
               f"--providers.kubernetesgateway.statusaddress.service.namespace={NAMESPACE}"])
    return [
        "--providers.kubernetesgateway=true",
        *status,
        f"--entryPoints.web.address=:{web_port}",
        f"--entryPoints.ping.address=:{ping_port}",
        "--ping=true", "--ping.entryPoint=ping",
        "--log.level=INFO", "--accesslog=false", "--global.checknewversion=false", "--global.sendanonymoususage=false",
    ]


def traefik_manifests(image: str, *, replicas: int = 1, cpu_request: str = "50m") -> list[dict[str, Any]]:
    """Namespace, RBAC, Deployment and Service of Traefik as the Gateway API implementation (pure)."""
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "modelops-e2e"}
    gw = "gateway.networking.k8s.io"
    rules = [
        {"apiGroups": [""], "resources": ["namespaces", "services", "secrets", "configmaps"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [gw], "resources": ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants",
                                          "backendtlspolicies"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [gw], "resources": ["gatewayclasses/status", "gateways/status", "httproutes/status",
                                          "grpcroutes/status", "backendtlspolicies/status"], "verbs": ["update"]},
    ]
    args = traefik_args()
    probe = {"httpGet": {"path": "/ping", "port": PING_PORT}, "periodSeconds": 3, "failureThreshold": 3}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "modelops-e2e:traefik-gateway", "labels": labels}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "modelops-e2e:traefik-gateway", "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "modelops-e2e:traefik-gateway"},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": NAME, "enableServiceLinks": False,
                      "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                          "seccompProfile": {"type": "RuntimeDefault"}},
                      "containers": [{
                          "name": "traefik", "image": image, "imagePullPolicy": "IfNotPresent", "args": args,
                          "ports": [{"name": "web", "containerPort": WEB_PORT}, {"name": "ping", "containerPort": PING_PORT}],
                          "readinessProbe": probe, "livenessProbe": {**probe, "failureThreshold": 10},
                          "resources": {"requests": {"cpu": cpu_request, "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                          "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                              "capabilities": {"drop": ["ALL"]}},
                          "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
                      "volumes": [{"name": "tmp", "emptyDir": {}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
         "spec": {"selector": {"app.kubernetes.io/name": NAME},
                  "ports": [{"name": "web", "port": WEB_PORT, "targetPort": "web", "protocol": "TCP"}]}},
    ]


def gateway_manifests(port: int = WEB_PORT) -> list[dict[str, Any]]:
    """The GatewayClass and the Gateway KServe's inferenceservice-config names (pure). Traefik serves a
    listener on the entry point whose port is the listener's port."""
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
         "spec": {"controllerName": CONTROLLER_NAME}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
         "spec": {"gatewayClassName": GATEWAY_CLASS,
                  "listeners": [{"name": "web", "protocol": "HTTP", "port": port,
                                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    ]


def gateway_programmed(gateway: dict[str, Any] | None) -> bool:
    return any(c.get("type") == "Programmed" and c.get("status") == "True"
               for c in ((gateway or {}).get("status") or {}).get("conditions") or [])


def crd_files() -> list[Path]:
    """The standard-channel CRD files of the pinned Gateway API release (`modelops cluster build-serving`)."""
    from modelops_dev.cluster import versions
    from modelops_dev.cluster.build import serving_ready

    if not serving_ready("gateway-api"):
        raise RuntimeError("the Gateway API CRDs are not in the cache; run: modelops cluster build-serving gateway-api")
    # the ValidatingAdmissionPolicy that guards CRD upgrades is not a CRD; everything else is
    return sorted(p for p in (versions.serving_dir("gateway-api") / "standard").glob("*.yaml") if "_vap_" not in p.name)


def install_crds(kubectl: Callable[..., str]) -> list[str]:
    """Server-side apply of the Gateway API CRDs, waited for until Established; returns their names.
    KServe's manager refuses to start in Gateway API mode without the HTTPRoute CRD."""
    files = crd_files()
    args: list[str] = []
    for f in files:
        args += ["-f", str(f)]
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=modelops-e2e", *args, timeout=300)
    names = [f.name.removeprefix("gateway.networking.k8s.io_").removesuffix(".yaml") + ".gateway.networking.k8s.io"
             for f in files]
    kubectl("wait", "--for=condition=Established", *[f"crd/{n}" for n in names], "--timeout=120s", timeout=130)
    return names
