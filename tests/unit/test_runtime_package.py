"""The runtime wheel and the `modelops` command carry no dev tooling (tools/modelops_dev stays out of images)."""

from __future__ import annotations

import importlib
import importlib.abc
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import typer

from modelops_dev import images
from modelops_dev.host import repo_root
from modelops_dev.images import project_wheel

pytestmark = pytest.mark.unit

DEV_COMMANDS = {"cluster", "images", "demo"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the wheel the images install: built the way `modelops images build` builds it (uv build, root project)
    return project_wheel(repo_root(), tmp_path_factory.mktemp("wheel"))


def test_the_runtime_wheel_holds_the_runtimes_and_no_dev_tooling(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names if not n.startswith("modelops-")}
    assert packages == {"modelops", "modelops_pipelines"}, packages
    for runtime in ("modelops/handlers/", "modelops/serving/", "modelops/drift/", "modelops/formats/",
                    "modelops_pipelines/train.py", "modelops/cli.py"):
        assert any(n.startswith(runtime) for n in names), f"{runtime} missing from {wheel.name}"
    dev = [n for n in names if n.startswith(("modelops_dev/", "modelops/cluster/", "modelops/e2e/"))
           or n in ("modelops/images.py", "modelops/demo.py") or n.endswith((".sh", "build_k8s.sh"))]
    assert dev == [], f"dev tooling in the runtime wheel: {dev}"


def test_the_runtime_wheel_metadata_names_no_dev_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        meta = Parser().parsestr(zf.read("modelops-0.1.0.dist-info/METADATA").decode())
        entry_points = zf.read("modelops-0.1.0.dist-info/entry_points.txt").decode()
    requires = meta.get_all("Requires-Dist") or []
    assert not [r for r in requires if "modelops-dev" in r or "modelops_dev" in r], requires
    assert set(meta.get_all("Provides-Extra") or []) == {"operator", "trainer", "server", "exporter", "console"}
    assert "modelops = modelops.cli:app" in entry_points and "modelops_dev" not in entry_points


def _commands(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    monkeypatch.delitem(sys.modules, "modelops.cli", raising=False)
    cli = importlib.import_module("modelops.cli")
    return set(typer.main.get_command(cli.app).commands)  # type: ignore[attr-defined]


class _NotInstalled(importlib.abc.MetaPathFinder):
    """Makes `import modelops_dev...` fail as it does in an image, where the package is not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] == "modelops_dev":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def test_without_the_dev_package_modelops_has_only_the_runtime_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.partition(".")[0] == "modelops_dev"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NotInstalled(), *sys.meta_path])
    with pytest.raises(ModuleNotFoundError):
        import modelops_dev  # noqa: F401  (the premise: not importable here)
    commands = _commands(monkeypatch)
    assert {"operator", "train", "serve", "drift-exporter", "version"} <= commands
    assert not commands & DEV_COMMANDS, commands


def test_with_the_dev_package_modelops_adds_cluster_images_and_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _commands(monkeypatch) >= DEV_COMMANDS


def test_a_broken_dev_package_is_an_error_not_silently_missing_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "modelops_dev.cli", None)  # installed, but its module cannot be imported
    with pytest.raises(ModuleNotFoundError):
        _commands(monkeypatch)


#: role -> (packages its extra must bring, packages of other roles it must not install)
ROLE_PACKAGES = {
    "operator": ({"kopf", "httpx", "croniter"},
                 {"kubernetes", "mlflow", "mlflow-skinny", "numpy", "pandas", "kserve", "evidently", "optuna", "xgboost",
                  "scikit-learn", "fastapi", "onnxruntime"}),
    "trainer": ({"mlflow", "optuna", "xgboost", "scikit-learn", "pandas"},
                {"kopf", "kserve", "evidently", "onnxruntime", "croniter"}),
    "model-server": ({"kserve", "onnxruntime", "xgboost", "scikit-learn", "mlflow-skinny"},
                     {"kopf", "evidently", "optuna", "croniter"}),
    "drift-exporter": ({"evidently", "fastapi", "numpy", "prometheus-client", "mlflow-skinny"},
                       {"kopf", "kserve", "optuna", "xgboost", "onnxruntime", "croniter"}),
    "console": ({"fastapi", "uvicorn", "jinja2", "httpx"},
                {"kopf", "kubernetes", "mlflow", "mlflow-skinny", "kserve", "evidently", "optuna", "xgboost",
                 "onnxruntime", "numpy", "pandas"}),
}


@pytest.mark.parametrize("role", sorted(ROLE_PACKAGES))
def test_each_image_installs_its_extra_only_and_no_dev_package(role: str) -> None:
    # requirements-<role>.txt of the wheelhouse, which the role's image installs with --no-deps
    names = {key.split("==")[0].split(";")[0] for key in images.role_requirements(repo_root(), role)}
    wanted, foreign = ROLE_PACKAGES[role]
    assert wanted <= names, f"{role} lacks {sorted(wanted - names)}"
    assert not names & foreign, f"{role} would install {sorted(names & foreign)}"
    assert not names & {"modelops", "modelops-dev"}, "the project wheel is installed on its own, without extras"


def test_the_operator_process_never_loads_the_kubernetes_package() -> None:
    # kopf imports kubernetes.client (~28 MB of RSS) whenever it can; `modelops operator` keeps it out, so a
    # development environment (where the tests install the package) runs the operator as its image does
    code = ("import sys\n"
            "from modelops.handlers.cli import keep_unused_libraries_out\n"
            "assert keep_unused_libraries_out()\n"
            "import kopf\n"
            "from modelops.handlers import common, modeldeployment, retrainschedule, run\n"
            "from modelops.controller.runtime import Runtime\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'rich', 'trio')\n"
            "                and sys.modules[m])\n"
            "assert not loaded, loaded\n"
            "from kopf._core.intents import piggybacking\n"
            "assert not piggybacking.has_client(), 'kopf would log in through the kubernetes package'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
