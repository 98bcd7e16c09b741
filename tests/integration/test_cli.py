"""The task CLI as a user runs it: invoke --list, build --binary, check, bad values."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

TASKS = ["build", "check", "clean", "demo", "deploy", "dist.docker", "dist.native", "dist.kubernetes", "docker.image",
         "package.all", "package.deb", "package.rpm", "release"]


@pytest.fixture
def fake_binary(tmp_path) -> Path:
    b = tmp_path / "frankenphp"
    b.write_text("#!/bin/sh\necho 'FrankenPHP v0 (test double)'\n")
    b.chmod(0o755)
    return b


@pytest.fixture
def app(tmp_path, example_app) -> Path:
    dest = tmp_path / "app"
    shutil.copytree(example_app, dest)
    return dest


def test_list_shows_every_task(run_invoke):
    done = run_invoke("--list", check=True)
    for name in TASKS:
        assert f"  {name} " in done.stdout
    assert "Default task: build" in done.stdout


def test_build_with_binary_produces_both_trees_then_is_a_no_op(run_invoke, tmp_path, fake_binary, app):
    env = {"OSCB_DIST_DIR": str(tmp_path / "dist")}
    first = run_invoke("build", "--binary", str(fake_binary), "--app", str(app), "--skip-deploy", env=env, check=True)
    assert "Build complete (version 4.0.0)" in first.stderr
    docker, native = tmp_path / "dist/docker", tmp_path / "dist/native"
    for rel in ("Dockerfile", "docker-compose.yaml", "entrypoint.sh", "orangescrum-app/osv4-prod", "README.md",
                ".env.example", "helpers/validate-env.sh", "helpers/cake.sh", "helpers/queue-worker.sh",
                "docs/DOCKER_DEPLOYMENT.md", "docs/CONFIGURATION.md", "docs/SECURITY.md",
                "docs/TROUBLESHOOTING.md", "docs/NATIVE_DEPLOYMENT.md", "config/app_local.example.php"):
        assert (docker / rel).is_file(), rel
    for rel in ("bin/orangescrum", "run-native.sh", "systemd/orangescrum.service",
                "systemd/orangescrum-queue.service", "README.md", ".env.example", "helpers/validate-env.sh"):
        assert (native / rel).is_file(), rel
    assert (native / "bin/orangescrum").read_bytes() == fake_binary.read_bytes()
    assert stat.S_IMODE((native / "run-native.sh").stat().st_mode) == 0o755

    second = run_invoke("build", "--binary", str(fake_binary), "--app", str(app), "--skip-deploy", env=env, check=True)
    assert "Everything is up to date" in second.stderr
    assert "is up to date" in second.stderr


def test_dist_tasks_need_a_binary(run_invoke, tmp_path, app):
    done = run_invoke("dist.docker", "--app", str(app), env={"OSCB_DIST_DIR": str(tmp_path / "dist")})
    assert done.returncode == 2
    assert "run `invoke build` first, or pass --binary PATH" in done.stderr


def test_bad_value_fails_before_any_work(run_invoke, tmp_path, fake_binary, app):
    dist = tmp_path / "dist"
    done = run_invoke("build", "--binary", str(fake_binary), "--app", str(app), "--skip-deploy",
                      env={"OSCB_DIST_DIR": str(dist), "OSCB_DOCKER_HOST_PORT": "http"})
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["error: docker.host_port='http' (from environment variable OSCB_DOCKER_HOST_PORT) is not a TCP "
                     "port; use a number from 1 to 65535 (set it with OSCB_DOCKER_HOST_PORT or invoke.yaml)"]
    assert not dist.exists()


def test_missing_app_fails_with_the_fix(run_invoke, tmp_path, fake_binary):
    done = run_invoke("build", "--binary", str(fake_binary), "--app", str(tmp_path / "nope"), "--skip-deploy",
                      env={"OSCB_DIST_DIR": str(tmp_path / "dist")})
    assert done.returncode == 2
    assert "(from flag --app): no such directory; pass --app PATH" in done.stderr


def test_check_explains_each_missing_prerequisite(run_invoke, tmp_path):
    done = run_invoke("check", "--app", str(tmp_path / "nope"),
                      env={"DOCKER_HOST": "unix:///nonexistent/docker.sock", "OSCB_DIST_DIR": str(tmp_path / "d")})
    assert done.returncode == 3
    out = done.stdout
    assert "CHECK" in out and "STATUS" in out
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines() if "  " in line}
    assert "OK" in rows["python >= 3.10"]
    assert "MISSING" in rows["docker engine"] and "start the engine" in rows["docker engine"]
    assert "MISSING" in rows["app source"] and "pass --app PATH" in rows["app source"]
    assert "required check(s) failed" in out


def test_check_passes_on_a_ready_machine(run_invoke, tmp_path, app, fake_binary, docker_client):
    done = run_invoke("check", "--app", str(app), "--binary", str(fake_binary), "--skip-deploy",
                      env={"OSCB_DIST_DIR": str(tmp_path / "d")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All required checks passed." in done.stdout


def test_check_reports_a_bad_config_as_a_row(run_invoke, tmp_path, app):
    done = run_invoke("check", "--app", str(app), env={"OSCB_BUILDER_LIBC": "glibc"})
    assert done.returncode == 3
    assert "config" in done.stdout and "builder.libc='glibc'" in done.stdout


def test_check_env_file_lists_every_placeholder(run_invoke, root, tmp_path, app):
    done = run_invoke("check", "--app", str(app), "--skip-deploy", "--env-file", str(root / "common/.env.example"))
    assert done.returncode == 3
    placeholders = [line.split("=", 1)[0] for line in (root / "common/.env.example").read_text().splitlines()
                    if "CHANGE_ME" in line and not line.startswith("#")]
    assert len(placeholders) >= 5
    for key in placeholders:
        assert f"{key}:" in done.stdout, key
    assert "CHANGE_ME" not in done.stdout  # names keys, never values


def test_check_env_file_passes_a_good_file(run_invoke, tmp_path, app):
    good = tmp_path / "good.env"
    good.write_text("DB_HOST=db.internal\nDB_PORT=5432\nDB_USERNAME=orangescrum\nDB_PASSWORD=Kx7#mQ2!vR9pLw4z\n"
                    "DB_NAME=orangescrum\nSECURITY_SALT=3f1c9a0b7e2d4c6f8a1b3d5e7f9a0c2e4b6d8f1a3c5e7b9d\n"
                    "FULL_BASE_URL=https://tasks.acme.test\n")
    done = run_invoke("check", "--app", str(app), "--skip-deploy", "--env-file", str(good))
    row = next(line for line in done.stdout.splitlines() if line.startswith("env file"))
    assert " OK " in row


def test_every_task_and_flag_has_help(run_invoke):
    for name in TASKS:
        done = run_invoke("--help", name, check=True)
        assert "Docstring:" in done.stdout and "none" not in done.stdout.split("Docstring:")[1].split("\n")[1]
        options = done.stdout.split("Options:")[1] if "Options:" in done.stdout else ""
        for line in options.splitlines():
            if line.strip().startswith("-"):
                assert len(line.split("  ")) > 1 and line.split("  ")[-1].strip(), f"{name}: {line!r} has no help"


def test_check_show_config_names_each_source(run_invoke, app):
    done = run_invoke("check", "--app", str(app), "--show-config", "--version", "4.2.0",
                      env={"OSCB_SERVICE_TASKS_MAX": "300"})
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert lines["service.tasks_max"].endswith("300  (environment variable OSCB_SERVICE_TASKS_MAX)")
    assert lines["version"].endswith("4.2.0  (flag --version)")
    assert lines["service.limit_nofile"].endswith("65536  (default)")
    assert "pdo_pgsql" in lines["builder.php_extensions"] and "(" in lines["builder.php_extensions"]
