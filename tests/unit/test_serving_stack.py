"""The e2e tier's serving stack, pure parts: KServe's manifests as modelops changes them (no cert-manager, our
images, Standard + Gateway API config, webhooks by Service or by URL), the Gateway/Traefik manifests, the
build script's directive carrying, and the image Dockerfiles."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from modelops_dev.e2e import gateway, kserve

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CERTS = kserve.Certs(ca="CA-PEM", cert="CERT-PEM", key="KEY-PEM")


def rendered() -> list[dict[str, Any]]:
    """The shape of `kubectl kustomize config/overlays/standalone/kserve` (trimmed to what is changed)."""
    hook = {"clientConfig": {"service": {"name": kserve.WEBHOOK_SERVICE, "namespace": "kserve",
                                         "path": "/validate-serving-kserve-io-v1beta1-inferenceservice"}},
            "name": "inferenceservice.kserve-webhook-server.validator"}
    return [
        {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "selfsigned-issuer"}},
        {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "serving-cert"}},
        {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
         "metadata": {"name": "inferenceservices.serving.kserve.io",
                      "annotations": {"cert-manager.io/inject-ca-from": "kserve/serving-cert"}},
         "spec": {"group": "serving.kserve.io"}, "status": None},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": "inferenceservice.serving.kserve.io",
                      "annotations": {"cert-manager.io/inject-ca-from": "kserve/serving-cert"}},
         "webhooks": [hook]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": kserve.MANAGER, "namespace": "kserve"},
         "spec": {"template": {"spec": {"containers": [
             {"name": "kube-rbac-proxy", "image": "quay.io/brancz/kube-rbac-proxy:v0.18.0"},
             {"name": "manager", "image": "kserve/kserve-controller:latest", "imagePullPolicy": "Always",
              "args": ["--metrics-addr=127.0.0.1:8080", "--leader-elect"],
              "resources": {"limits": {"cpu": "100m"}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": kserve.WEBHOOK_SERVICE, "namespace": "kserve"}},
        {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterStorageContainer", "metadata": {"name": "default"},
         "spec": {"container": {"name": "storage-initializer", "image": "kserve/storage-initializer:latest",
                                "resources": {"requests": {"cpu": "100m"}}}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": kserve.CONFIG_MAP, "namespace": "kserve"},
         "data": {"deploy": '{\n  # a comment KServe ships\n  "defaultDeploymentMode": "Serverless"\n}',
                  "ingress": json.dumps({"enableGatewayApi": False, "ingressDomain": "example.com"}),
                  "agent": json.dumps({"image": "kserve/agent:latest", "cpuRequest": "100m"}),
                  "logger": json.dumps({"image": "kserve/agent:latest", "cpuRequest": "100m"}),
                  "batcher": json.dumps({"image": "kserve/agent:latest", "cpuRequest": "1"}),
                  "storageInitializer": json.dumps({"image": "kserve/storage-initializer:latest",
                                                    "enableModelcar": True})}},
    ]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_pod_manager_no_cert_manager_our_images_and_ca_bundle() -> None:
    docs = kserve.kserve_manifests(rendered(), CERTS, kserve.Options())
    assert not [d for d in docs if d["apiVersion"].startswith("cert-manager.io/")]
    ca = base64.b64encode(b"CA-PEM").decode()
    (vwc,) = by_kind(docs, "ValidatingWebhookConfiguration")
    assert vwc["webhooks"][0]["clientConfig"]["caBundle"] == ca
    assert vwc["webhooks"][0]["clientConfig"]["service"]["name"] == kserve.WEBHOOK_SERVICE
    assert "cert-manager.io/inject-ca-from" not in vwc["metadata"]["annotations"]
    (crd,) = by_kind(docs, "CustomResourceDefinition")
    assert "status" not in crd and "cert-manager.io/inject-ca-from" not in crd["metadata"]["annotations"]
    (dep,) = by_kind(docs, "Deployment")
    (manager,) = dep["spec"]["template"]["spec"]["containers"]
    assert manager["image"] == "modelops/kserve-controller:dev" and manager["imagePullPolicy"] == "IfNotPresent"
    # one replica, no leader election (its lease renewals failed on a loaded node); other args kept
    assert manager["args"] == ["--metrics-addr=127.0.0.1:8080"]
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["metadata"]["name"] == kserve.WEBHOOK_SECRET and secret["type"] == "kubernetes.io/tls"
    assert base64.b64decode(secret["data"]["tls.crt"]) == b"CERT-PEM"
    assert base64.b64decode(secret["data"]["tls.key"]) == b"KEY-PEM"


def test_inferenceservice_config() -> None:
    docs = kserve.kserve_manifests(rendered(), CERTS, kserve.Options())
    (cm,) = by_kind(docs, "ConfigMap")
    data = {k: json.loads(v) for k, v in cm["data"].items()}
    assert data["deploy"]["defaultDeploymentMode"] == "Standard"
    assert data["ingress"]["enableGatewayApi"] is True
    assert data["ingress"]["kserveIngressGateway"] == "kserve/kserve-ingress-gateway"
    for key in ("agent", "logger", "batcher"):
        assert data[key]["image"] == "modelops/kserve-agent:dev"
    assert data["storageInitializer"]["image"] == "modelops/kserve-storage-initializer:dev"
    assert data["storageInitializer"]["enableModelcar"] is False
    # the init container KServe injects for http(s)/s3/gs URIs comes from the ClusterStorageContainer
    (csc,) = by_kind(docs, "ClusterStorageContainer")
    assert csc["spec"]["container"]["image"] == "modelops/kserve-storage-initializer:dev"
    assert csc["spec"]["container"]["imagePullPolicy"] == "IfNotPresent"
    assert csc["spec"]["container"]["securityContext"]["allowPrivilegeEscalation"] is False
    assert csc["spec"]["container"]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # what modelops' operator reads back from it (the default deployment mode) still parses
    from modelops.desired.inference_service import cluster_default_mode

    assert cluster_default_mode(cm["data"]["deploy"]) == "Standard"


def test_host_manager_webhooks_by_url_and_no_deployment() -> None:
    docs = kserve.kserve_manifests(rendered(), CERTS, kserve.Options(manager="host", host_webhook="127.0.0.1:9443"))
    assert not by_kind(docs, "Deployment")
    assert not [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == kserve.WEBHOOK_SERVICE]
    (vwc,) = by_kind(docs, "ValidatingWebhookConfiguration")
    cc = vwc["webhooks"][0]["clientConfig"]
    assert cc["url"] == "https://127.0.0.1:9443/validate-serving-kserve-io-v1beta1-inferenceservice"
    assert "service" not in cc


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="host_webhook"):
        kserve.kserve_manifests(rendered(), CERTS, kserve.Options(manager="host"))
    with pytest.raises(ValueError, match="expected pod or host"):
        kserve.kserve_manifests(rendered(), CERTS, kserve.Options(manager="vm"))
    with pytest.raises(ValueError, match="no Deployment kserve-controller-manager"):
        kserve.kserve_manifests([d for d in rendered() if d["kind"] != "Deployment"], CERTS, kserve.Options())


def test_gateway_and_traefik() -> None:
    gc, _ns, gw = gateway.gateway_manifests()
    assert gc["spec"]["controllerName"] == gateway.CONTROLLER_NAME
    assert f"{gw['metadata']['namespace']}/{gw['metadata']['name']}" == kserve.GATEWAY
    assert gw["spec"]["listeners"][0]["port"] == gateway.WEB_PORT
    objs = gateway.traefik_manifests("modelops/traefik:dev")
    dep = next(o for o in objs if o["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert "--providers.kubernetesgateway=true" in c["args"] and f"--entryPoints.web.address=:{gateway.WEB_PORT}" in c["args"]
    role = next(o for o in objs if o["kind"] == "ClusterRole")
    writes = [r for r in role["rules"] if "update" in r["verbs"]]
    assert all(res.endswith("/status") for r in writes for res in r["resources"])
    assert not gateway.gateway_programmed(gw)
    assert gateway.gateway_programmed({"status": {"conditions": [{"type": "Programmed", "status": "True"}]}})


def test_build_script_carries_replace_and_exclude_directives(tmp_path: Path) -> None:
    gomod = tmp_path / "go.mod"
    gomod.write_text("module x\n\ngo 1.25\n\nrequire a v1\n\n"
                     "exclude google.golang.org/grpc/stats/opentelemetry v0.0.0-00010101000000-000000000000\n"
                     "replace sigs.k8s.io/controller-runtime => sigs.k8s.io/controller-runtime v0.22.5\n"
                     "replace (\n\tk8s.io/api => k8s.io/api v0.34.5 // pinned\n\n\tgithub.com/x/ext => ./ext\n)\n")
    script = REPO / "tools" / "modelops_dev" / "cluster" / "build_serving.sh"
    fn = subprocess.run(["sed", "-n", "/^carried_directives()/,/^}/p", str(script)], capture_output=True, text=True,
                        check=True).stdout
    out = subprocess.run(["bash", "-c", f"{fn}\ncarried_directives {gomod}"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["exclude google.golang.org/grpc/stats/opentelemetry v0.0.0-00010101000000-000000000000",
                   "replace sigs.k8s.io/controller-runtime => sigs.k8s.io/controller-runtime v0.22.5",
                   "replace k8s.io/api => k8s.io/api v0.34.5",
                   "// dropped (local path): replace github.com/x/ext => ./ext"]


def test_traefik_build_compiles_only_the_protocol_level_dns_providers(tmp_path: Path) -> None:
    """The Traefik wrapper replaces lego with a copy whose DNS registry keeps exec/httpreq/manual/rfc2136."""
    lego = tmp_path / "modcache" / "lego"
    (lego / "providers" / "dns").mkdir(parents=True)
    names = ["alidns", "exec", "httpreq", "manual", "rfc2136", "route53"]
    (lego / "providers" / "dns" / "zz_gen_dns_providers.go").write_text(
        "package dns\n\nimport (\n" + "".join(f'\t"github.com/go-acme/lego/v4/providers/dns/{n}"\n' for n in names)
        + ")\n\nfunc NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {\n\tswitch name {\n"
        + "".join(f'\tcase "{n}":\n\t\treturn {n}.NewDNSProvider()\n' for n in names) + "\t}\n}\n")
    fake_go = tmp_path / "bin" / "go"
    fake_go.parent.mkdir()
    fake_go.write_text(f"""#!/usr/bin/env bash
case "$1 $2" in
  "list -m") echo v4.33.0 ;;
  "mod download") echo '{{"Dir": "{lego}"}}' ;;
  "mod edit") echo "$@" >> {tmp_path}/edits ;;
  *) exit 3 ;;
esac
""")
    fake_go.chmod(0o755)
    work = tmp_path / "wrapper"
    work.mkdir()
    script = REPO / "tools" / "modelops_dev" / "cluster" / "build_serving.sh"
    subprocess.run(["bash", "-c", f'source "{script}" && cd {work} && lego_protocol_dns_only {work}'], check=True,
                   capture_output=True, text=True, env={**os.environ, "PATH": f"{fake_go.parent}:{os.environ['PATH']}"})
    gen = (work / "lego" / "providers" / "dns" / "zz_gen_dns_providers.go").read_text()
    for kept in ("exec", "httpreq", "manual", "rfc2136"):
        assert f'case "{kept}":' in gen and f'providers/dns/{kept}"' in gen
    for dropped in ("alidns", "route53"):
        assert dropped not in gen
    assert "is not compiled into this Traefik build" in gen
    assert (tmp_path / "edits").read_text().split() == ["mod", "edit", "-replace", "github.com/go-acme/lego/v4=./lego"]
    assert (lego / "providers" / "dns" / "zz_gen_dns_providers.go").read_text().count("case") == len(names)


@pytest.mark.parametrize(("role", "binary", "dest"), [
    ("kserve-controller", "manager", "/manager"), ("kserve-agent", "agent", "/agent"),
    ("traefik", "traefik", "/traefik"), ("prometheus-operator", "operator", "/operator"),
    # the Prometheus Operator runs its reloader containers with the command /bin/prometheus-config-reloader
    ("prometheus-config-reloader", "prometheus-config-reloader", "/bin/prometheus-config-reloader")])
def test_go_images_copy_the_staged_binary_and_run_non_root(role: str, binary: str, dest: str) -> None:
    from modelops_dev import images

    dockerfile = REPO / images.GO_DOCKERFILE
    text = dockerfile.read_text()
    assert images.ROLES[role][1] is None and images.SERVING_BINARIES[role][1] == f"bin/{binary}"
    args = images.dockerfile_args(REPO, role)
    assert args[:2] == ["-f", str(dockerfile)] and args[args.index("--target") + 1] == role
    build_args = dict(a.split("=", 1) for a in args[3::2] if "=" in a)
    assert build_args["BINARY"] == f"build/serving/{binary}" and build_args["DEST"] == dest
    assert build_args["RUN_AS"] == "65532:65532"
    assert "COPY ${BINARY} ${DEST}" in text and "USER ${RUN_AS}" in text
    target = text.split(f"FROM binary AS {role}\n", 1)[1].split("\nFROM ", 1)[0]
    assert f'ENTRYPOINT ["{dest}"]' in target
    assert not re.search(r"^(RUN|COPY|ADD|USER) ", target, flags=re.M), "a role target adds metadata only"
    assert "!build/serving/" in (REPO / ".dockerignore").read_text()


def test_storage_initializer_image_runs_kserves_own_package() -> None:
    from modelops_dev import images

    text = (REPO / "images" / "kserve-storage-initializer" / "Dockerfile").read_text()
    assert images.ROLES["kserve-storage-initializer"] == ("modelops/kserve-storage-initializer", "storage-initializer")
    assert "kserve-storage-initializer" in images.GROUP_ROLES  # a dependency group, not a runtime extra
    assert "requirements-storage-initializer.txt" in text and "--no-index" in text and "--require-hashes" in text
    entry = (REPO / "images" / "kserve-storage-initializer" / "initializer_entrypoint.py").read_text()
    assert "from kserve_storage import Storage" in entry and "Storage.download_files" in entry
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"kserve-storage==0.20.0"' in pyproject  # the KServe release the tier installs
    from modelops_dev.cluster import versions

    assert versions.KSERVE_VERSION == "v0.20.0"


def test_storage_initializer_entrypoint_usage(tmp_path: Path) -> None:
    import sys

    script = REPO / "images" / "kserve-storage-initializer" / "initializer_entrypoint.py"
    proc = subprocess.run([sys.executable, str(script), "only-one-arg"], capture_output=True, text=True)
    assert proc.returncode == 2 and "SRC_URI DEST_DIR" in proc.stderr
    # a local directory as the source: kserve_storage copies it (its _download_local), nothing of ours
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.json").write_text("{}")
    proc = subprocess.run([sys.executable, str(script), str(src), str(tmp_path / "out")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "model.json").read_text() == "{}"


def test_split_meter_per_weight_setting() -> None:
    from modelops_dev.e2e.gateway_traffic import SplitMeter, weights_key

    m = SplitMeter()
    step = weights_key({"v1": 75, "v2": 25})
    for i in range(400):
        m.record(step, step, "2" if i % 4 == 0 else "1", 200)
    assert m.check(step) == "" and m.measured(step) == {"2": 25.0, "1": 75.0}
    m.record(step, weights_key({"v1": 40, "v2": 60}), "2", 200)  # straddles a weight change: counts nowhere
    m.record(step, step, None, 503)
    assert m.straddled == 1 and m.errors["503"] == 1 and sum(m.counts[step].values()) == 400
    skewed = weights_key({"v1": 40, "v2": 60})
    for i in range(400):
        m.record(skewed, skewed, "2" if i % 2 else "1", 200)
    assert "v1 answered 50.0% of 400 (want 40" in m.check(skewed)
    few = weights_key({"v2": 100})
    m.record(few, few, "2", 200)
    assert "only 1 answers" in m.check(few)
    assert {r["requests"] for r in m.report()} == {400, 1}


def test_unchanged_crds_are_not_applied_again() -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "a.serving.kserve.io"}, "spec": {"group": "serving.kserve.io"}}
    a = kserve.with_hash(crd)
    assert kserve.with_hash(a) == a  # hashing is stable and ignores its own annotation
    h = a["metadata"]["annotations"][kserve.HASH_ANNOTATION]
    b = kserve.with_hash({**crd, "metadata": {"name": "b.serving.kserve.io"}})
    assert kserve.changed([a, b], {"a.serving.kserve.io": h}) == [b]
    edited = kserve.with_hash({**crd, "spec": {"group": "serving.kserve.io", "scope": "Namespaced"}})
    assert kserve.changed([edited], {"a.serving.kserve.io": h}) == [edited]
    assert kserve.changed([a], {}) == [a]
