"""The builder as a distribution: `python -m build` makes an sdist and a wheel; the wheel,
installed into a fresh venv, runs the task namespace from any directory with the
templates, Dockerfiles and scripts it carries in cloudbuilder/_resources/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from release_support import EPOCH, fake_binary

from cloudbuilder import __version__
from cloudbuilder.resources import RESOURCE_DIRS

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = RESOURCE_DIRS


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, **kw)
    assert done.returncode == 0, f"{' '.join(map(str, argv))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """sdist and wheel of a copy of the checkout (what git would commit, never dist/ or .venv/)."""
    src = tmp_path_factory.mktemp("checkout")
    listed = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT).stdout.split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file() and not rel.startswith(("dist/", ".venv/")):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    out = tmp_path_factory.mktemp("out")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(src)])
    sdists, wheels = list(out.glob("*.tar.gz")), list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return sdists[0], wheels[0]


def test_sdist_and_wheel_carry_version_entry_point_and_resources(built):
    sdist, wheel = built
    assert wheel.name == f"orangescrum_cloudbuilder-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(f"orangescrum_cloudbuilder-{__version__}.dist-info/entry_points.txt").decode()
        validate = zf.getinfo("cloudbuilder/_resources/common/helpers/validate-env.sh")
    assert "orangescrum-build = cloudbuilder.__main__:main" in entry_points
    for rel in ("common/.env.example", "common/helpers/validate-env.sh", "docker/Dockerfile.j2",
                "docker/entrypoint.sh", "native/run-native.sh.j2", "builder/base-build.Dockerfile",
                "builder/standin/standin.Dockerfile", "examples/orangescrum-demo/composer.json"):
        assert f"cloudbuilder/_resources/{rel}" in names, rel
    for name in RESOURCES:
        assert any(n.startswith(f"cloudbuilder/_resources/{name}/") for n in names), name
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", "/.env"))]
    assert (validate.external_attr >> 16) & 0o111, "executable bits must survive into the wheel"
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert {"setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "cloudbuilder/__init__.py",
            "common/helpers/validate-env.sh", "docker/Dockerfile.j2", "examples/orangescrum-demo/composer.json"} <= members


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory) -> Path:
    """A fresh venv with only the wheel (and its dependencies) installed."""
    env_dir = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(env_dir)])
    _run([str(env_dir / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(built[1])])
    return env_dir


def test_installed_command_runs_the_tasks_from_any_directory(venv, tmp_path, example_app):
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copytree(example_app, work / "app")
    fake_binary(work / "frankenphp")
    # The console command reads ./invoke.yaml, as invoke does next to a tasks.py.
    (work / "invoke.yaml").write_text(f"cloudbuilder:\n  app: app\n  binary: frankenphp\n  version: 4.1.0\n"
                                      f"  source_date_epoch: {EPOCH}\n  package:\n    backend: nfpm\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    command = str(venv / "bin" / "orangescrum-build")

    def build(*args: str) -> subprocess.CompletedProcess:
        return _run([command, *args], cwd=work, env=env)

    listing = build("--list").stdout
    for name in ("build", "check", "dist.docker", "dist.native", "docker.image", "package.deb", "release"):
        assert f"  {name} " in listing or f"  {name}\n" in listing, name
    assert __version__ in build("--version").stdout

    where = _run([str(venv / "bin/python"), "-c", "from cloudbuilder.resources import source_root; "
                  "print(source_root())"], cwd=work, env=env).stdout.strip()
    assert where.endswith("site-packages/cloudbuilder/_resources"), where

    build("dist.docker")
    assert (work / "dist/docker/docker-compose.yaml").is_file()
    build("package.deb")
    debs = list((work / "dist/packages").glob("*.deb"))
    assert [d.name for d in debs] == ["orangescrum_4.1.0-1_amd64.deb"]
    native = work / "dist/native"
    assert (native / "run-native.sh").stat().st_mode & 0o777 == 0o755
    assert (native / "bin/orangescrum").read_bytes() == (work / "frankenphp").read_bytes()
