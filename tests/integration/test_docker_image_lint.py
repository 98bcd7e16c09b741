"""The rendered dist/docker files pass the real tools: hadolint, shellcheck and
`docker compose config` (Compose v2; no engine needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudbuilder.assemble import plan_tree, write_tree
from cloudbuilder.config import AppFacts, Layer, resolve

pytestmark = pytest.mark.integration


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (pip install -e .[dev])")
    return path


def compose(tree: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    tool("docker")
    return subprocess.run(["docker", "compose", *args], cwd=tree, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module", params=[{}, {"docker.bind_address": "::1", "docker.uid": "2000", "docker.gid": "2000",
                                             "app_webroot": "public"}],
                ids=["defaults", "custom"])
def tree(request, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("docker-tree")
    binary = tmp / "frankenphp"
    binary.write_bytes(b"#!/bin/sh\necho fake\n")
    binary.chmod(0o755)
    cfg = resolve([Layer("flag", {"app": str(tmp), "dist_dir": str(tmp / "dist"), "version": "4.0.0",
                                  "source_date_epoch": "1700000000", **request.param})],
                  cwd=tmp, environ={}, probe=lambda _a: AppFacts(None, "default", None))
    out = tmp / "docker"
    write_tree(plan_tree(cfg, "docker", binary), out, cfg.source_date_epoch)
    shutil.copy(out / ".env.example", out / ".env")
    return out


def test_hadolint_passes_the_dockerfile(tree):
    done = subprocess.run([tool("hadolint"), "--failure-threshold", "info", str(tree / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_passes_the_scripts(tree):
    scripts = [tree / "entrypoint.sh", *sorted((tree / "helpers").glob("*.sh"))]
    done = subprocess.run([tool("shellcheck"), "-s", "sh", *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_compose_config_accepts_the_file(tree):
    done = compose(tree, "config", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""  # no warning (unset variables, obsolete keys)


def test_compose_config_with_the_override_example(tree):
    shutil.copy(tree / "docker-compose.override.example.yaml", tree / "docker-compose.override.yaml")
    try:
        done = compose(tree, "config", "--format", "json")
        assert done.returncode == 0, done.stderr
        ports = json.loads(done.stdout)["services"]["app"]["ports"]
        assert [(p["host_ip"], p["published"]) for p in ports] == [("127.0.0.1", "8081")]
    finally:
        (tree / "docker-compose.override.yaml").unlink()


def test_infra_is_a_profile_not_started_by_default(tree):
    assert compose(tree, "config", "--profiles").stdout.split() == ["infra"]
    assert sorted(compose(tree, "config", "--services").stdout.split()) == ["app", "migrate", "queue"]
    with_infra = compose(tree, "--profile", "infra", "config", "--services").stdout.split()
    assert sorted(with_infra) == ["app", "migrate", "minio", "postgres", "queue", "redis"]


def test_compose_model_as_docker_sees_it(tree):
    done = compose(tree, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)
    app, queue = model["services"]["app"], model["services"]["queue"]
    for s in (app, queue):
        assert s["read_only"] is True and s["cap_drop"] == ["ALL"]
        assert s["security_opt"] == ["no-new-privileges:true"]
        assert s["pull_policy"] == "never" and s["restart"] == "unless-stopped"
        assert s["logging"]["driver"] == "json-file"
        assert s["environment"]["PORT"] == "8080"  # pinned over the .env
        assert int(s["deploy"]["resources"]["limits"]["memory"]) > 0
    assert app["ports"][0]["target"] == 8080
    assert app["stop_grace_period"] == "30s"
    # env_file: the .env's keys reach the service (here: the placeholders)
    assert app["environment"]["DB_PASSWORD"] == "CHANGE_ME_db_password"


def test_env_file_can_be_pointed_elsewhere(tree, tmp_path):
    other = tmp_path / "elsewhere.env"
    other.write_text("DB_HOST=from-elsewhere\n")
    done = compose(tree, "config", "--format", "json", env={"ORANGESCRUM_ENV_FILE": str(other)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["services"]["queue"]["environment"]["DB_HOST"] == "from-elsewhere"
