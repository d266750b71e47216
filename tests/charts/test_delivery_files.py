"""skaffold.yaml, the Dockerfiles and the Argo CD examples name things that exist and values the chart accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_dev import images
from tests.charts.chart import CHART, REPO, helm, render, template_args

pytestmark = pytest.mark.unit

SKAFFOLD = yaml.safe_load((REPO / "skaffold.yaml").read_text())
ARGOCD = REPO / "manifests" / "argocd"


def _values_has(path: str) -> bool:
    node: Any = yaml.safe_load((CHART / "values.yaml").read_text())
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _stages(text: str) -> dict[str, str]:
    """Dockerfile stages by name ("FROM x AS name"), each with its instructions."""
    stages: dict[str, str] = {}
    for chunk in re.split(r"^(?=FROM )", text, flags=re.M)[1:]:
        m = re.match(r"FROM (\S+)(?: AS (\S+))?", chunk)
        assert m and m[2], f"every stage is named: {chunk.splitlines()[0]}"
        stages[m[2]] = chunk
    return stages


DOCKERFILE = REPO / "images" / "Dockerfile"


def test_skaffold_builds_the_four_images_from_existing_dockerfiles() -> None:
    assert SKAFFOLD["apiVersion"].startswith("skaffold/v4"), "Skaffold v2 schemas are skaffold/v4beta*"
    arts = SKAFFOLD["build"]["artifacts"]
    # the four runtimes; the e2e-only roles (prometheus) are not part of the chart's deployment
    assert sorted(a["image"] for a in arts) == sorted(images.ROLES[r][0] for r in images.RUNTIME_ROLES)
    by_image = {image: role for role, (image, _extra) in images.ROLES.items()}
    for a in arts:
        context = REPO / a.get("context", ".")
        assert context.is_dir(), a
        dockerfile = context / a["docker"]["dockerfile"]
        assert dockerfile.is_file(), f"{a['image']}: {dockerfile} does not exist"
        # one Dockerfile: the extra installed and the target (its command) must be the image's role's
        role = by_image[a["image"]]
        assert a["docker"]["buildArgs"]["EXTRA"] == images.ROLES[role][1] and a["docker"]["target"] == role, a
        assert role in _stages(dockerfile.read_text()), f"{dockerfile} has no target {role}"


def test_skaffold_deploys_the_chart_with_every_built_image() -> None:
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"] / "Chart.yaml").is_file()
    for f in release.get("valuesFiles", []):
        assert (REPO / f).is_file(), f
    templates: dict[str, str] = release["setValueTemplates"]
    for key in templates:
        assert _values_has(key), f"setValueTemplates names {key}, which values.yaml does not have"
    for a in SKAFFOLD["build"]["artifacts"]:
        var = re.sub(r"[^A-Za-z0-9]", "_", a["image"])
        assert f"{{{{.IMAGE_REPO_{var}}}}}" in templates.values(), f"{a['image']} never reaches the chart"
        assert f"{{{{.IMAGE_TAG_{var}}}}}" in templates.values(), a["image"]
    # what skaffold would pass renders (the schema accepts the keys and a registry-qualified repository)
    sets = [f"{k}={'registry.local:5000/x' if k.endswith('repository') else 'abc123'}" for k in templates]
    objs = render(sets=sets)
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-operator"))
    assert cm["data"]["MODELOPS_TRAINER_IMAGE"] == "registry.local:5000/x:abc123"


def test_skaffold_local_profile_patches_exist() -> None:
    (profile,) = [p for p in SKAFFOLD["profiles"] if p["name"] == "local"]
    n = len(SKAFFOLD["build"]["artifacts"])
    for patch in profile["patches"]:
        m = re.match(r"/build/artifacts/(\d+)/docker/buildArgs/BASE_IMAGE$", patch["path"])
        if m:
            assert int(m[1]) < n
            assert patch["value"] == images.LOCAL_BASE
        else:
            assert patch["path"] == "/deploy/helm/releases/0/setValues", patch["path"]
            for key in patch["value"]:
                assert _values_has(key), key


def test_e2e_prometheus_dockerfile_runs_as_nobody_from_the_staged_binary() -> None:
    text = (REPO / images.GO_DOCKERFILE).read_text()
    assert images.ROLES["prometheus"][1] is None  # no Python packages
    args = images.dockerfile_args(REPO, "prometheus")
    assert {"BINARY=build/prometheus/prometheus", "DEST=/bin/prometheus", "RUN_AS=65534:65534"} <= set(args)
    assert "COPY ${BINARY} ${DEST}" in text and "USER ${RUN_AS}" in text
    assert 'ENTRYPOINT ["/bin/prometheus"]' in _stages(text)["prometheus"]
    assert "!build/prometheus/" in (REPO / ".dockerignore").read_text()


@pytest.mark.parametrize("role", images.PYTHON_ROLES)
def test_dockerfile_installs_only_its_extra_as_non_root(role: str) -> None:
    # instructions only: the comments may name files and roles freely
    text = "\n".join(ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#"))
    assert "ARG BASE_IMAGE=python:3.11-slim" in text
    # the builder selects the role by build arg (which extra's requirements) and target (which command)
    _image, extra = images.ROLES[role]
    args = images.dockerfile_args(REPO, role)
    assert args[:2] == ["-f", str(DOCKERFILE)] and f"EXTRA={extra}" in args
    assert args[args.index("--target") + 1] == role
    stages = _stages(text)
    build, runtime, target = stages["build"], stages["runtime"], stages[role]
    # only the selected extra's requirements (requirements-<extra>.txt = `uv export --extra <extra>`), from the
    # wheelhouse, hashed; never a fixed role's file, a wildcard, or an extra of the project wheel
    assert "requirements-${EXTRA}.txt" in build and "--no-index" in build and "--require-hashes" in build
    assert re.findall(r"requirements-[^\s/]+\.txt", text) and all(
        r == "requirements-${EXTRA}.txt" for r in re.findall(r"requirements-[^\s/]+\.txt", text))
    assert not re.search(r"modelops[-_]\S*\[", text), "the project wheel is installed without extras"
    assert "modelops_dev" not in build and "modelops-dev" not in build and "modelops-*.whl" in build
    # the final image: runtime stage + the role's metadata, non-root, no build tools
    assert target.startswith("FROM runtime AS"), target.splitlines()[0]
    final = runtime + target
    assert "USER 10001:10001" in final and "COPY --from=build /opt/modelops /opt/modelops" in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final), "build tools in the final stage"
    assert not re.search(r"^(RUN|COPY|ADD) ", target, flags=re.M), "a role target adds metadata only"
    for label in ("org.opencontainers.image.version=\"${VERSION}\"", "org.opencontainers.image.title",
                  "org.opencontainers.image.source", "org.opencontainers.image.licenses"):
        assert label in final, label
    assert 'ENTRYPOINT ["modelops"]' in final and re.search(r"^CMD \[", target, flags=re.M)


def test_the_python_runtimes_share_one_dockerfile_the_go_images_another() -> None:
    own = {p.parent.name for p in (REPO / "images").glob("*/Dockerfile")}
    assert not own & set(images.PYTHON_ROLES), f"a Python role with a Dockerfile of its own: {own}"
    assert not own & set(images.GO_ROLES), f"a Go-binary role with a Dockerfile of its own: {own}"
    go_stages = _stages((REPO / images.GO_DOCKERFILE).read_text())
    for role in set(images.ROLES) - set(images.PYTHON_ROLES):
        if role in images.GO_ROLES:
            assert role in go_stages, f"images/go-binary/Dockerfile has no target {role}"
            assert images.dockerfile_args(REPO, role)[:2] == ["-f", str(REPO / images.GO_DOCKERFILE)]
        else:
            assert role in own, f"images/{role}/Dockerfile missing"
            assert images.dockerfile_args(REPO, role) == ["-f", str(REPO / "images" / role / "Dockerfile")]


def test_dockerignore_sends_only_images_and_the_wheelhouse() -> None:
    lines = [ln for ln in (REPO / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*" and all(ln.startswith("!") for ln in lines[1:]), lines


def _substitute_go_templates(text: str) -> str:
    """Argo CD fills '{{ ... }}' per cluster; stand-in values let the chart's schema judge the rest."""
    return re.sub(r"\{\{[^}]*\}\}", "x", text)


@pytest.mark.parametrize("name", ["application.yaml", "application-kustomize.yaml", "applicationset.yaml"])
def test_argocd_examples_point_at_existing_sources_the_chart_accepts(name: str, tmp_path: Path) -> None:
    doc = yaml.safe_load((ARGOCD / name).read_text())
    spec = doc["spec"]["template"]["spec"] if doc["kind"] == "ApplicationSet" else doc["spec"]
    source = spec["source"]
    assert (REPO / source["path"]).is_dir(), source["path"]
    assert "ServerSideApply=true" in spec["syncPolicy"]["syncOptions"]
    if doc["kind"] == "ApplicationSet":
        assert any("clusters" in g for g in doc["spec"]["generators"]), "one release per cluster"
    if "helm" in source:
        values = tmp_path / "values.yaml"
        vo = yaml.safe_load(_substitute_go_templates(yaml.safe_dump(source["helm"]["valuesObject"])))
        if doc["kind"] == "ApplicationSet":
            vo["monitoring"]["prometheusRule"]["driftSeverity"] = "warning"
            vo["prometheus"]["url"] = "http://prometheus:9090"
        values.write_text(yaml.safe_dump(vo))
        helm(*template_args(values=[values]))
    else:
        assert (REPO / source["path"] / "kustomization.yaml").is_file()
