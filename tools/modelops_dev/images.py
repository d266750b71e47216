"""`modelops images build`: the four runtime images, buildable with no registry and no network in the build.

Steps (each skipped when already done):
1. wheelhouse  build/wheelhouse/: the modelops wheel (`uv build`, in project/: the runtime packages only, never
               modelops_dev), the locked requirements of each role's extra (requirements-<extra>.txt =
               `uv export --extra EXTRA`, hashes kept), and every wheel they pin (`pip wheel` on the host, where
               PyPI's TLS is trusted). Images install from it with `--no-index`.
2. daemon      a Docker daemon: the running one, else Debian's docker.io started here (`dockerd` in the
               background, installed with apt-get if missing), waiting for its socket.
3. base image  `--base-image` if given; else python:3.11-slim if it is present or can be pulled; else a
               local Debian bookworm image made with `debootstrap --variant=minbase` + python3 and
               `docker import` (the air-gapped path).
4. images      images/Dockerfile with `--build-arg EXTRA=<its extra> --target <role>` for operator, trainer,
               model-server and drift-exporter; images/go-binary/Dockerfile with the binary's build args and
               `--target <role>` for the Go-binary e2e images (GO_ROLES); context = the repository root (see
               .dockerignore: only images/, build/wheelhouse/ and the staged binaries are sent).

Only the standard library and typer are imported at module level (see modelops/cli.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import typer

from modelops_dev.cluster.process import free_port
from modelops_dev.host import ensure_daemon, repo_root, run

#: role -> (image name, pyproject extra); roles without an extra install no Python packages.
ROLES: dict[str, tuple[str, str | None]] = {
    "operator": ("modelops/operator", "operator"),
    "trainer": ("modelops/trainer", "trainer"),
    "model-server": ("modelops/model-server", "server"),
    "drift-exporter": ("modelops/drift-exporter", "exporter"),
    # The web console (`modelops console`, off by default in the chart): built on request.
    "console": ("modelops/console", "console"),
    # The in-cluster Prometheus of the e2e tier and the demo: built from its Go module with Kubernetes
    # discovery (static, CGO off) on the same bookworm base. The MLflow server needs no image of its own: the
    # trainer image has full mlflow (server, SQLAlchemy, alembic, gunicorn/uvicorn).
    "prometheus": ("modelops/prometheus", None),
    # The real KServe of the e2e tier and the demo: its controller manager and agent built from KServe's Go
    # module, its storage initializer from KServe's own `kserve-storage` package, and Traefik as the Gateway API
    # data plane (`modelops cluster build-serving` builds the Go binaries; see images/README.md).
    "kserve-controller": ("modelops/kserve-controller", None),
    "kserve-agent": ("modelops/kserve-agent", None),
    "kserve-storage-initializer": ("modelops/kserve-storage-initializer", "storage-initializer"),
    "traefik": ("modelops/traefik", None),
    # The Prometheus Operator of the e2e tier and the demo, and the config reloader it puts into every
    # Prometheus Pod: both built from the operator's Go module (`modelops cluster build-serving
    # prometheus-operator`; installed by modelops_dev/e2e/prometheus_operator.py).
    "prometheus-operator": ("modelops/prometheus-operator", None),
    "prometheus-config-reloader": ("modelops/prometheus-config-reloader", None),
}
#: Roles whose packages are a dependency group of pyproject.toml (e2e images that are not modelops runtimes).
GROUP_ROLES = frozenset({"kserve-storage-initializer"})
#: Go binaries staged into build/serving/ for the serving roles: role -> (build part, path in its cache dir).
SERVING_BINARIES = {"kserve-controller": ("kserve", "bin/manager"), "kserve-agent": ("kserve", "bin/agent"),
                    "traefik": ("traefik", "bin/traefik"),
                    "prometheus-operator": ("prometheus-operator", "bin/operator"),
                    "prometheus-config-reloader": ("prometheus-operator", "bin/prometheus-config-reloader")}
#: The e2e roles built from the one Go-binary Dockerfile (images/go-binary/Dockerfile): role -> (the staged
#: binary in the build context, its path in the image, uid:gid, title, licence). The role is also the target.
GO_ROLES: dict[str, tuple[str, str, str, str, str]] = {
    "kserve-controller": ("build/serving/manager", "/manager", "65532:65532", "KServe controller manager",
                          "Apache-2.0"),
    "kserve-agent": ("build/serving/agent", "/agent", "65532:65532", "KServe agent", "Apache-2.0"),
    "traefik": ("build/serving/traefik", "/traefik", "65532:65532", "Traefik", "MIT"),
    "prometheus-operator": ("build/serving/operator", "/operator", "65532:65532", "Prometheus Operator",
                            "Apache-2.0"),
    "prometheus-config-reloader": ("build/serving/prometheus-config-reloader", "/bin/prometheus-config-reloader",
                                   "65532:65532", "Prometheus config reloader", "Apache-2.0"),
    "prometheus": ("build/prometheus/prometheus", "/bin/prometheus", "65534:65534", "Prometheus", "Apache-2.0"),
}
GO_DOCKERFILE = Path("images") / "go-binary" / "Dockerfile"
#: The roles `make images` builds by default (the four runtimes); the e2e roles are built on demand.
RUNTIME_ROLES = ("operator", "trainer", "model-server", "drift-exporter")
#: The roles built from the one Python Dockerfile (images/Dockerfile): the runtimes and the console.
PYTHON_ROLES = (*RUNTIME_ROLES, "console")
#: Prometheus for the e2e image, built from its Go module (3.x is tagged v0.3XX.Y there). Debian's package
#: cannot be used: it is built without the Kubernetes service discovery the in-cluster scrape needs.
PROMETHEUS_MODULE = "github.com/prometheus/prometheus/cmd/prometheus"
PROMETHEUS_VERSION = "v0.316.0"
#: Only the Kubernetes discoverer (Prometheus' plugins/ build tags): far fewer modules to fetch and compile.
PROMETHEUS_TAGS = "remove_all_sd,enable_kubernetes_sd"
#: The public default base of every Dockerfile (ARG BASE_IMAGE).
PUBLIC_BASE = "python:3.11-slim"
#: The image debootstrap makes when no registry is reachable.
LOCAL_BASE = "modelops/base:bookworm-python3.11"
#: Requirements left out of the CPU images: xgboost's multi-GPU collective library (hundreds of MB,
#: loaded only for distributed GPU training, which these images do not do).
EXCLUDED = re.compile(r"^nvidia-")


def _requirement_blocks(text: str) -> dict[str, str]:
    """`uv export` output split into one block per pinned requirement (its line plus --hash lines)."""
    blocks: dict[str, str] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith(("#", "    #")) or not line.strip():
            continue
        if not line.startswith(" "):
            if current:
                blocks[current[0].split(" ;")[0].split(" \\")[0].strip() + _marker(current[0])] = "\n".join(current)
            current = [line]
        else:
            current.append(line)
    if current:
        blocks[current[0].split(" ;")[0].split(" \\")[0].strip() + _marker(current[0])] = "\n".join(current)
    return blocks


def _marker(line: str) -> str:
    return (";" + line.split(";", 1)[1].rstrip(" \\")) if ";" in line else ""


def _pip() -> list[str]:
    """pip on the host: this interpreter's, else pip run by uvx (uv environments have no pip)."""
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0:
        return [sys.executable, "-m", "pip"]
    return ["uvx", "--python", f"{sys.version_info.major}.{sys.version_info.minor}", "--from", "pip==24.3.1", "pip"]


def role_requirements(root: Path, role: str) -> dict[str, str]:
    """What the role's image installs besides the modelops wheel: its extra's locked requirements
    (`uv export --extra EXTRA`, hashes kept, the project itself and the dev group left out), by name."""
    extra = ROLES[role][1]
    if extra is None:
        raise ValueError(f"{role} installs no Python packages")
    # e2e images that are not modelops runtimes install a dependency group, never an extra of the runtime wheel
    select = ["--only-group", extra] if role in GROUP_ROLES else ["--no-dev", "--extra", extra]
    text = subprocess.run(["uv", "export", "--frozen", *select, "--no-emit-project", "--no-emit-workspace",
                           "--format", "requirements-txt"], cwd=root, check=True, capture_output=True,
                          text=True).stdout
    return {k: v for k, v in _requirement_blocks(text).items() if not EXCLUDED.match(k)}


def wheelhouse(root: Path, force: bool = False) -> Path:
    """build/wheelhouse/{wheels/, requirements-<extra>.txt, project/}; returns the directory."""
    out = root / "build" / "wheelhouse"
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    stamp = out / ".complete"
    union: dict[str, str] = {}
    for role, (_image, extra) in ROLES.items():
        if extra is None:
            continue
        blocks = role_requirements(root, role)
        (out / f"requirements-{extra}.txt").write_text("\n".join(blocks.values()) + "\n")
        union.update(blocks)
    union_text = "\n".join(union.values()) + "\n"
    (out / "requirements-all.txt").write_text(union_text)
    lock_digest = hashlib.sha256(union_text.encode()).hexdigest()  # the wheels depend on the pins only
    if not force and stamp.exists() and stamp.read_text() == lock_digest:
        typer.echo(f"wheelhouse {out} is current ({len(list(wheels.glob('*.whl')))} wheels)")
    else:
        t0 = time.monotonic()
        typer.echo(f"building the wheelhouse in {out} (PyPI on the host; images install with --no-index)")
        run([*_pip(), "wheel", "--quiet", "--no-deps", "--prefer-binary",
              "-r", str(out / "requirements-all.txt"), "-w", str(wheels)])
        # pip itself, run from its wheel inside the image's build stage (the base image needs no pip).
        run([*_pip(), "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "pip==24.3.1", "-d", str(wheels)])
        stamp.write_text(lock_digest)
        typer.echo(f"  wheelhouse ready in {time.monotonic() - t0:.0f}s")
    # The project's wheel apart from the third-party ones, so that the images install it in a layer of its own.
    project_wheel(root, out / "project")
    return out


def project_wheel(root: Path, out_dir: Path) -> Path:
    """Build the runtime wheel (modelops + modelops_pipelines; never modelops_dev) into an emptied `out_dir`.

    `uv build` at the workspace root builds the root project only, not the tools/ member.
    """
    if out_dir.exists():
        shutil.rmtree(out_dir)
    run(["uv", "build", "--wheel", "--out-dir", str(out_dir)], cwd=root, capture_output=True)
    (wheel,) = out_dir.glob("modelops-*.whl")
    return wheel


def _image_exists(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def base_image(root: Path, requested: str | None, pull_timeout: float = 30.0) -> str:
    if requested:
        return requested
    if _image_exists(PUBLIC_BASE):
        return PUBLIC_BASE
    try:
        if subprocess.run(["docker", "pull", PUBLIC_BASE], capture_output=True,
                          timeout=pull_timeout).returncode == 0:
            return PUBLIC_BASE
    except subprocess.TimeoutExpired:
        pass
    if _image_exists(LOCAL_BASE):
        return LOCAL_BASE
    typer.echo(f"no registry reachable: building {LOCAL_BASE} with debootstrap (Debian bookworm, minbase)")
    if shutil.which("debootstrap") is None:
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap"],
             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    rootfs = root / "build" / "rootfs"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    t0 = time.monotonic()
    run(["debootstrap", "--variant=minbase", "--include=python3,ca-certificates", "bookworm", str(rootfs),
          "http://deb.debian.org/debian"], capture_output=True)
    # What a container never needs: package caches, docs, man pages, locales other than C.
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                "usr/share/info", "usr/share/locale"):
        path = rootfs / sub
        if path.exists():
            shutil.rmtree(path)
            path.mkdir()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    run(["docker", "import", "--change", 'CMD ["python3"]', "--change", "ENV LANG=C.UTF-8", "-", LOCAL_BASE],
         stdin=tar.stdout, capture_output=True)
    tar.wait()
    shutil.rmtree(rootfs)
    typer.echo(f"  {LOCAL_BASE} built in {time.monotonic() - t0:.0f}s")
    return LOCAL_BASE


def prometheus_binary(progress: object = typer.echo) -> Path:
    """Prometheus built from its Go module with only Kubernetes discovery, cached by version (~/.cache/modelops)."""
    out = Path.home() / ".cache" / "modelops" / "prometheus" / PROMETHEUS_VERSION
    binary = out / "prometheus"
    if binary.exists():
        return binary
    if shutil.which("go") is None:
        raise typer.BadParameter("building the e2e Prometheus needs Go (scripts/bootstrap.sh installs it)")
    typer.echo(f"building Prometheus {PROMETHEUS_VERSION} from the Go module proxy (tags {PROMETHEUS_TAGS}; "
               "tens of minutes on 2 cores the first time, cached afterwards)")
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    # no web UI assets: the module ships none (they come from an npm build); the HTTP API is complete
    run(["go", "install", "-p", "2", "-trimpath", "-tags", PROMETHEUS_TAGS, f"{PROMETHEUS_MODULE}@{PROMETHEUS_VERSION}"],
         env={**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0", "GOBIN": str(out)}, cwd="/")
    typer.echo(f"  prometheus built in {time.monotonic() - t0:.0f}s")
    return binary


PROMTOOL_MODULE = "github.com/prometheus/prometheus/cmd/promtool"


def promtool_path() -> Path:
    """Where `promtool_binary` caches promtool (the e2e Prometheus' version)."""
    return Path.home() / ".cache" / "modelops" / "promtool" / PROMETHEUS_VERSION / "promtool"


def promtool_binary() -> Path:
    """promtool from the same Prometheus Go module and version as the e2e Prometheus, cached by version
    (~/.cache/modelops/promtool/<version>): `promtool test rules` runs the chart's alert tests (unit tier)."""
    binary = promtool_path()
    if binary.exists():
        return binary
    if shutil.which("go") is None:
        raise typer.BadParameter("building promtool needs Go (scripts/bootstrap.sh installs it)")
    typer.echo(f"building promtool {PROMETHEUS_VERSION} from the Go module proxy (tags {PROMETHEUS_TAGS}; "
               "minutes on 2 cores the first time, cached afterwards)")
    t0 = time.monotonic()
    binary.parent.mkdir(parents=True, exist_ok=True)
    run(["nice", "-n", "10", "go", "install", "-p", "2", "-trimpath", "-tags", PROMETHEUS_TAGS,
         f"{PROMTOOL_MODULE}@{PROMETHEUS_VERSION}"],
        env={**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0", "GOBIN": str(binary.parent)}, cwd="/")
    typer.echo(f"  promtool built in {time.monotonic() - t0:.0f}s")
    return binary


def promtool() -> None:
    """Build promtool (the e2e Prometheus' version, from its Go module) once and print its path."""
    typer.echo(str(promtool_binary()))


def _stage_prometheus(root: Path) -> None:
    """Copy the Prometheus binary into the build context (build/prometheus/, see .dockerignore)."""
    dest = root / "build" / "prometheus"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(prometheus_binary(), dest / "prometheus")


def _stage_serving(root: Path, role: str) -> None:
    """Copy a KServe or Traefik binary (built once per version, `modelops cluster build-serving`) into the build
    context (build/serving/, see .dockerignore)."""
    from modelops_dev.cluster.build import ensure_serving

    part, rel = SERVING_BINARIES[role]
    src = ensure_serving((part,), progress=typer.echo)[part] / rel
    dest = root / "build" / "serving"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest / src.name)


def image_exists(ref: str) -> bool:
    """Whether the local Docker daemon has `ref`."""
    return _image_exists(ref)


def dockerfile_args(root: Path, role: str) -> list[str]:
    """`docker build` arguments selecting a role: for the Python roles the one Python Dockerfile with the
    role's extra and its target; for the Go-binary e2e images the one Go Dockerfile with the binary, its
    path, user and labels and the role's target; for the storage initializer its own Dockerfile."""
    extra = ROLES[role][1]
    if role in GO_ROLES:
        binary, dest, run_as, title, licence = GO_ROLES[role]
        return ["-f", str(root / GO_DOCKERFILE), "--build-arg", f"BINARY={binary}", "--build-arg", f"DEST={dest}",
                "--build-arg", f"RUN_AS={run_as}", "--build-arg", f"TITLE={title}",
                "--build-arg", f"LICENSE={licence}", "--target", role]
    if role not in PYTHON_ROLES or extra is None:
        return ["-f", str(root / "images" / role / "Dockerfile")]
    return ["-f", str(root / "images" / "Dockerfile"), "--build-arg", f"EXTRA={extra}", "--target", role]


def build_images(root: Path, roles: Sequence[str], tag: str, base: str, version: str) -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = {}
    for role in roles:
        image, _extra = ROLES[role]
        ref = f"{image}:{tag}"
        t0 = time.monotonic()
        if role == "prometheus":
            _stage_prometheus(root)
        if role in SERVING_BINARIES:
            _stage_serving(root, role)
        typer.echo(f"building {ref} (base {base})")
        before = _image_id(ref)
        run(["docker", "build", *dockerfile_args(root, role), "--build-arg", f"BASE_IMAGE={base}",
             "--build-arg", f"VERSION={version}", "-t", ref, str(root)], env={**os.environ, "DOCKER_BUILDKIT": "0"})
        size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", ref], check=True,
                                  capture_output=True, text=True).stdout.strip())
        results[ref] = {"seconds": round(time.monotonic() - t0, 1), "size_mb": round(size / 1e6, 1)}
        typer.echo(f"  {ref}: {results[ref]['size_mb']} MB in {results[ref]['seconds']}s")
        _drop_replaced(ref, before)
    return results


def _image_id(ref: str) -> str | None:
    proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def _drop_replaced(ref: str, before: str | None) -> None:
    """Remove the image `ref` named before this build, now untagged (with its layers no other image uses):
    every rebuild after a code change left one behind (~1-2 GB each for the Python roles; 19 GB had piled up
    and a build failed for want of disk). Docker refuses while a container or another tag uses it: kept then."""
    after = _image_id(ref)
    if before is None or before == after:
        return
    proc = subprocess.run(["docker", "image", "rm", before], capture_output=True, text=True)
    if proc.returncode == 0:
        typer.echo(f"  removed the image {ref} replaced ({before[:19]})")


_ROLES_HELP = (f"Roles to build (default: {', '.join(RUNTIME_ROLES)}; also known: "
               f"{', '.join(r for r in ROLES if r not in RUNTIME_ROLES)}).")


def build(
    roles: list[str] = typer.Argument(None, help=_ROLES_HELP),  # noqa: B008
    tag: str = typer.Option("dev", help="Tag of the built images."),
    base: str = typer.Option("", "--base-image", help="Base image of every stage (default: python:3.11-slim "
                             "if present or pullable, else a local debootstrap bookworm image)."),
    rebuild_wheels: bool = typer.Option(False, help="Rebuild the wheelhouse even if the lock is unchanged."),
) -> None:
    """Build the operator, trainer, model-server and drift-exporter images (and on request prometheus) offline."""
    from importlib.metadata import version as dist_version

    roles = roles or list(RUNTIME_ROLES)
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise typer.BadParameter(f"unknown roles {sorted(unknown)}; known: {list(ROLES)}")
    root = repo_root()
    t0 = time.monotonic()
    if any(ROLES[r][1] for r in roles):
        wheelhouse(root, force=rebuild_wheels)
    ensure_daemon(root)
    chosen = base_image(root, base or None)
    results = build_images(root, roles, tag, chosen, dist_version("modelops"))
    typer.echo(json.dumps({"base": chosen, "images": results, "total_seconds": round(time.monotonic() - t0)},
                          indent=1))


#: `docker run` flags matching the chart's restricted Pod: non-root, read-only root, no capabilities.
RESTRICTED_RUN = ["--read-only", "--tmpfs", "/tmp:rw,exec,uid=10001,gid=10001", "--cap-drop=ALL",
                  "--security-opt=no-new-privileges", "--user=10001:10001", "--network=host"]


def _wait_http(url: str, timeout: float, container: str) -> str:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return str(r.read().decode(errors="replace"))
        except OSError as exc:
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", "--tail", "30", container], capture_output=True,
                                      text=True)
                raise RuntimeError(f"{url} did not answer in {timeout:.0f}s ({exc}):\n{logs.stdout}{logs.stderr}") from exc
            time.sleep(0.5)


def _commands(ref: str) -> set[str]:
    out = subprocess.run(["docker", "run", "--rm", *RESTRICTED_RUN, ref, "--help"], capture_output=True,
                         text=True, check=True).stdout
    return set(re.findall(r"^\W+([a-z][a-z-]+)\s{2,}", out, flags=re.M))


def verify(
    tag: str = typer.Option("dev", help="Tag of the images to check."),
    kubeconfig: Path = typer.Option(None, help="Kubeconfig of a running cluster for the operator check "  # noqa: B008
                                    "(default: a temporary `modelops cluster` control plane)."),
) -> None:
    """Start each image as the chart would (non-root, read-only root, no capabilities) and check it answers."""
    root = repo_root()
    report: dict[str, str] = {}
    # drift exporter: health, readiness and metrics
    # (it needs a reference to start: a reference profile of a small generated frame)
    import numpy as np
    import pandas as pd

    from modelops.formats.reference_profile import write_profile
    from modelops_pipelines.profile import build_reference_profile

    refdir = root / "build" / "verify-reference"
    refdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.normal(40, 10, 2000), "plan": rng.choice(["a", "b"], 2000)})
    write_profile(build_reference_profile(frame, task="classification", predictions=rng.integers(0, 2, 2000)),
                  refdir)
    for p in (refdir, *refdir.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)
    ref = f"modelops/drift-exporter:{tag}"
    port = free_port()
    name = f"verify-exporter-{port}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, *RESTRICTED_RUN, "-v", f"{refdir}:/ref:ro",
                    ref, "drift-exporter", "--host=127.0.0.1", f"--port={port}",
                    "--reference=churn=/ref/reference_profile.json"], check=True, capture_output=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", 60, name)
        ready = _wait_http(f"http://127.0.0.1:{port}/readyz", 10, name)
        metrics = _wait_http(f"http://127.0.0.1:{port}/metrics", 10, name)
        assert "modelops_drift" in metrics, metrics[:500]
        report[ref] = f"/healthz ok, /readyz {ready.strip()}, /metrics has modelops_drift_* series"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    # operator: against a real API server, liveness on /healthz
    ref = f"modelops/operator:{tag}"
    cluster = None
    if kubeconfig is None:
        from modelops_dev.cluster.local import LocalCluster

        cluster = LocalCluster(name="images-verify", root=root / "build" / "verify-cluster")
        cluster.up(progress=lambda _m: None)
        kubeconfig = cluster.kubeconfig
        from modelops_dev.cluster import versions

        subprocess.run([str(versions.bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig), "apply",
                        "--server-side", "-f", str(root / "manifests" / "crds")], check=True, capture_output=True)
    port = free_port()
    name = f"verify-operator-{port}"
    try:
        kc = Path(kubeconfig).resolve()
        kc.chmod(0o644)  # the container's user 10001 reads it through the bind mount
        subprocess.run(["docker", "run", "-d", "--rm", "--name", name, *RESTRICTED_RUN,
                        "-v", f"{kc}:/etc/modelops/kubeconfig:ro", "-e", "KUBECONFIG=/etc/modelops/kubeconfig",
                        "-e", f"MODELOPS_LIVENESS_PORT={port}", "-e", "MODELOPS_LIVENESS_HOST=127.0.0.1",
                        "-e", "MODELOPS_METRICS_PORT=0", ref],
                       check=True, capture_output=True)
        _wait_http(f"http://127.0.0.1:{port}/healthz", 90, name)
        report[ref] = "/healthz ok against the local API server"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        if cluster is not None:
            cluster.down(progress=lambda _m: None)
    # trainer: a tiny training run (generated data, 2 trials, MLflow on SQLite in a bind-mounted directory)
    work = root / "build" / "verify-train"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    work.chmod(0o777)  # written by the container's user 10001
    (work / "spec.yaml").write_text("modelName: churn\n"
                                    "dataset: {uri: /work/churn.csv, target: churn, task: classification}\n"
                                    "search: {trials: 2, families: [xgboost], timeoutSeconds: 120}\n")
    ref = f"modelops/trainer:{tag}"
    model_dir: Path | None = None
    if "train" not in _commands(ref):
        report[ref] = "`modelops --help` ok; `train` NOT in this build's modelops"
    else:
        script = ("set -e; cd /work; modelops generate-data --rows 600 --out /work/churn.csv >/dev/null; "
                  "modelops train --spec /work/spec.yaml --tracking-uri sqlite:////work/mlflow.db "
                  "--termination-log /work/result.json | tail -1")
        t0 = time.monotonic()
        proc = subprocess.run(["docker", "run", "--rm", *RESTRICTED_RUN, "-v", f"{work}:/work", "--entrypoint",
                               "sh", ref, "-c", script], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"tiny train failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        result = json.loads((work / "result.json").read_text())
        report[ref] = (f"tiny train in {time.monotonic() - t0:.0f}s: {result['status']}, "
                       f"{result['modelName']} v{result['version']}, {result['metric']}")
        model_dir = next((p.parent for p in work.rglob("MLmodel")), None)
    # model server: serve the model the trainer just registered, check readiness and a prediction
    ref = f"modelops/model-server:{tag}"
    if "serve" not in _commands(ref):
        report[ref] = "`modelops --help` ok; `serve` NOT in this build's modelops (its branch is not merged yet)"
    elif model_dir is None:
        report[ref] = "`serve` present; no trained model to serve (the trainer check did not run)"
    else:
        port, grpc = free_port(), free_port()
        name = f"verify-server-{port}"
        subprocess.run(["docker", "run", "-d", "--rm", "--name", name, *RESTRICTED_RUN,
                        "-v", f"{model_dir}:/mnt/models:ro", "-e", f"MODELOPS_HTTP_PORT={port}",
                        "-e", f"MODELOPS_GRPC_PORT={grpc}", ref, "serve", "--model-dir", "/mnt/models",
                        "--model-name", "churn"], check=True, capture_output=True)
        try:
            _wait_http(f"http://127.0.0.1:{port}/v2/health/ready", 120, name)
            metrics = _wait_http(f"http://127.0.0.1:{port}/metrics", 10, name)
            report[ref] = f"serves the trained model: /v2/health/ready ok, /metrics {len(metrics.splitlines())} lines"
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    typer.echo(json.dumps(report, indent=1))


#: `modelops images ...`
images_app = typer.Typer(help="Container images of the four runtimes (offline-capable build).",
                         no_args_is_help=True)
images_app.command("build")(build)
images_app.command("verify")(verify)
images_app.command("promtool")(promtool)


@images_app.callback()
def _images() -> None:
    """Container images of the four runtimes (offline-capable build)."""


def register(app: typer.Typer) -> None:
    app.add_typer(images_app, name="images")


if __name__ == "__main__":  # `python -m modelops_dev.images build` = `modelops images build`
    images_app()
