"""Migrations before a version serves, and the `infra` profile's images: the rendered
compose file, entrypoint, units and maintainer scripts (pure: no engine, no systemd)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cloudbuilder.assemble import plan_tree, render_template
from cloudbuilder.config import AppFacts, Layer, resolve

ROOT = Path(__file__).resolve().parents[2]


def make_cfg(tmp_path: Path, **values):
    layer = Layer("flag", {"app": str(tmp_path), "dist_dir": str(tmp_path / "dist"), "version": "4.1.0",
                           "source_date_epoch": "1700000000", **values})
    return resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))


def render(tmp_path: Path, flavor: str, name: str, **values) -> str:
    cfg = make_cfg(tmp_path, **values)
    plan = plan_tree(cfg, flavor, tmp_path)
    source = next(f.source for f in plan.files if f.dest == name)
    return render_template(source.read_text(), plan.context, name=name, search_path=plan.search_path)


def compose(tmp_path: Path, **values) -> dict:
    return yaml.safe_load(render(tmp_path, "docker", "docker-compose.yaml", **values))


# --------------------------------------------------------------------------
# The infra profile's images
# --------------------------------------------------------------------------


def test_infra_images_come_from_the_settings(tmp_path):
    doc = compose(tmp_path, **{"docker.postgres_image": "mirror.example.org:5000/pg:15",
                               "docker.redis_image": "localhost/orangescrum-infra/redis:7-abc",
                               "docker.minio_image": "mirror.example.org/minio/minio:RELEASE.2025-01-01"})
    services = doc["services"]
    assert services["postgres"]["image"] == "mirror.example.org:5000/pg:15"
    assert services["redis"]["image"] == "localhost/orangescrum-infra/redis:7-abc"
    assert services["minio"]["image"] == "mirror.example.org/minio/minio:RELEASE.2025-01-01"


def test_infra_defaults_are_the_official_images_with_health_checks(tmp_path):
    services = compose(tmp_path)["services"]
    assert (services["postgres"]["image"], services["redis"]["image"]) == ("postgres:15-alpine", "redis:7-alpine")
    for name in ("postgres", "redis"):
        assert services[name]["profiles"] == ["infra"]
        assert services[name]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]


# --------------------------------------------------------------------------
# app.migrate_command
# --------------------------------------------------------------------------


@pytest.mark.parametrize("value,problem", [
    ("/usr/bin/php x.php", "does not start with a script path inside the app"),
    ("../bin/cake.php migrations migrate", "does not start with a script path inside the app"),
    ("-r phpinfo();", "does not start with a script path inside the app"),
    ("bin/cake.php migrations migrate; id", "has a word with a character"),
    ("bin/cake.php migrations $(id)", "has a word with a character"),
    ("bin/cake.php 'migrations migrate'", "has a word with a character"),
    ("bin/cake.php migrations %n", "has a word with a character"),
])
def test_migrate_command_refuses_what_no_generated_file_carries(tmp_path, value, problem):
    from cloudbuilder.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        make_cfg(tmp_path, **{"app.migrate_command": value})
    assert str(err.value).startswith("app.migrate_command=") and problem in str(err.value)
    assert "OSCB_APP_MIGRATE_COMMAND" in str(err.value)


def test_migrate_command_in_invoke_yaml_nested_or_dotted():
    from cloudbuilder.config import flatten

    assert flatten({"app": {"migrate_command": ""}}) == {"app.migrate_command": ""}
    assert flatten({"app.migrate_command": "bin/x.php up", "app": "../src"}) == {
        "app.migrate_command": "bin/x.php up", "app": "../src"}


def test_migrate_command_default_words_and_empty(tmp_path):
    assert make_cfg(tmp_path).app_migrate_command == ("bin/cake.php", "migrations", "migrate")
    assert make_cfg(tmp_path, **{"app.migrate_command": "  "}).app_migrate_command == ()
    cfg = make_cfg(tmp_path, **{"app.migrate_command": "bin/cake.php migrations migrate --connection=default"})
    assert cfg.app_migrate_command[-1] == "--connection=default"


# --------------------------------------------------------------------------
# Compose: the one-shot service
# --------------------------------------------------------------------------


def test_migrate_is_a_one_shot_the_app_and_queue_wait_for(tmp_path):
    services = compose(tmp_path, **{"app.migrate_command": "bin/cake.php migrations migrate --x=1"})["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate", "bin/cake.php", "migrations", "migrate", "--x=1"]
    assert migrate["restart"] == "no"
    assert migrate["healthcheck"] == {"disable": True}
    assert "ports" not in migrate and "profiles" not in migrate
    # The same image, env and sandbox as the services (the anchor).
    for key in ("image", "env_file", "environment", "read_only", "tmpfs", "cap_drop", "security_opt", "pull_policy"):
        assert migrate[key] == services["app"][key], key
    for name in ("app", "queue"):
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    # The development database, when it is part of the project, is waited for; never required.
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy", "required": False}}


def test_empty_migrate_command_has_no_migrate_service(tmp_path):
    services = compose(tmp_path, **{"app.migrate_command": ""})["services"]
    assert "migrate" not in services
    assert "depends_on" not in services["app"] and "depends_on" not in services["queue"]


def test_image_exports_the_migrate_command(tmp_path):
    text = render(tmp_path, "docker", "Dockerfile", **{"app.migrate_command": "bin/cake.php migrations migrate"})
    assert 'ORANGESCRUM_MIGRATE_COMMAND="bin/cake.php migrations migrate"' in text


# --------------------------------------------------------------------------
# The entrypoint's `migrate`
# --------------------------------------------------------------------------

from test_docker_entrypoint import VALID, app_state, base_env, opt, run, started  # noqa: E402,F401 - fixtures


def test_entrypoint_migrate_runs_the_image_command_after_validation(opt, base_env):
    env = {**base_env, **VALID, "ORANGESCRUM_MIGRATE_COMMAND": "bin/cake.php migrations migrate"}
    done = run(opt, "migrate", env=env)
    assert done.returncode == 0, done.stderr
    assert started(done) == "[php-cli][bin/cake.php][migrations][migrate]"
    assert "entrypoint: migrate: php-cli bin/cake.php migrations migrate" in done.stderr
    assert VALID["DB_PASSWORD"] not in done.stdout + done.stderr


def test_entrypoint_migrate_arguments_replace_the_command_and_words_are_not_globbed(opt, base_env, tmp_path):
    (opt / "x.php").write_text("")
    env = {**base_env, **VALID, "ORANGESCRUM_MIGRATE_COMMAND": "bin/cake.php *"}
    assert started(run(opt, "migrate", env=env)) == "[php-cli][bin/cake.php][*]"
    assert started(run(opt, "migrate", "bin/other.php", "up", env=env)) == "[php-cli][bin/other.php][up]"


def test_entrypoint_migrate_without_a_command_does_nothing(opt, base_env):
    done = run(opt, "migrate", env={**base_env, **VALID, "ORANGESCRUM_MIGRATE_COMMAND": ""})
    assert done.returncode == 0 and "fake-binary" not in done.stdout
    assert "app.migrate_command is empty" in done.stderr


def test_entrypoint_migrate_refuses_invalid_settings(opt, base_env):
    env = {**base_env, **VALID, "DB_PORT": "not-a-port", "ORANGESCRUM_MIGRATE_COMMAND": "bin/cake.php migrations migrate"}
    done = run(opt, "migrate", env=env)
    assert done.returncode == 1 and "fake-binary" not in done.stdout
    assert "DB_PORT" in done.stderr


# --------------------------------------------------------------------------
# Native: orangescrum-migrate.service
# --------------------------------------------------------------------------

from test_packaging_units import SERVICES, directives  # noqa: E402
from test_packaging_units import render as render_native  # noqa: E402


@pytest.fixture(scope="module")
def native_tree(tmp_path_factory) -> Path:
    return render_native(tmp_path_factory.mktemp("migrate-units"), **{"service.queue_memory_max": "700M"})


def test_migrate_unit_is_a_hardened_oneshot_without_install(native_tree):
    text = (native_tree / "systemd" / "orangescrum-migrate.service").read_text()
    d = directives(text)
    assert d["Type"] == ["oneshot"] and d["RemainAfterExit"] == ["yes"]
    # through app-state, like every command (the state paths linked into the extracted app)
    assert d["ExecStart"] == ["/usr/libexec/orangescrum/app-state migrate /usr/bin/orangescrum php-cli bin/cake.php "
                              "migrations migrate"]
    assert d["ExecStartPre"] == ["/usr/libexec/orangescrum/validate-env --quiet /etc/orangescrum/orangescrum.env"]
    assert d["EnvironmentFile"] == ["/etc/orangescrum/orangescrum.env"]
    assert d["User"] == d["Group"] == ["orangescrum"]
    assert d["MemoryMax"] == ["700M"] and d["SocketBindDeny"] == ["any"]
    assert "[Install]" not in text  # pulled in by the services, never enabled on its own
    hardening = directives((ROOT / "native" / "systemd" / "_hardening.j2").read_text())
    for key, values in hardening.items():
        assert d[key] == values, key
    web = directives((native_tree / "systemd" / "orangescrum.service").read_text())
    for key in ("WorkingDirectory", "StateDirectory", "CacheDirectory", "Environment", "TasksMax", "LimitNOFILE"):
        assert d[key] == web[key], key


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_requires_and_follows_the_migration(native_tree, name):
    d = directives((native_tree / "systemd" / name).read_text())
    assert d["Requires"] == ["orangescrum-migrate.service"]
    assert "orangescrum-migrate.service" in d["After"][0].split()


def test_empty_migrate_command_makes_the_unit_a_no_op(tmp_path):
    tree = render_native(tmp_path, **{"app.migrate_command": ""})
    assert directives((tree / "systemd" / "orangescrum-migrate.service").read_text())["ExecStart"] == ["/bin/true"]
    assert "migrate)      echo" in (tree / "run-native.sh").read_text()


def test_run_native_has_a_migrate_command(native_tree):
    assert "migrate)      role=migrate; set -- php-cli 'bin/cake.php' 'migrations' 'migrate' ;;" in \
        (native_tree / "run-native.sh").read_text()


# --------------------------------------------------------------------------
# Maintainer scripts: the migration runs before the services (re)start
# --------------------------------------------------------------------------

from test_packaging_spec import FORMATS, cfg, log_of, native, run_lib, sandbox, spec, workdir  # noqa: E402,F401

STOP_LOGGING_SYSTEMCTL = """#!/bin/sh
case $1 in --quiet) shift ;; esac
case $1 in
is-enabled) case " $ENABLED " in *" $2 "*) exit 0 ;; esac; exit 1 ;;
is-active) case " $ACTIVE " in *" $2 "*) exit 0 ;; esac; exit 3 ;;
show) [ -z "${MIGRATE_STATE:-}" ] || echo "$MIGRATE_STATE"; exit 0 ;;
stop|restart) echo "$1 $2" >>"$LOG"; case " $FAILING " in *" $2 "*) exit 1 ;; esac; exit 0 ;;
esac
exit 0
"""
STOP_LOGGING_INVOKE = """#!/bin/sh
echo "$1 $2" >>"$LOG"
case " $FAILING " in *" $2 "*) exit 1 ;; esac
exit 0
"""


@pytest.fixture
def stops_logged(sandbox):
    (sandbox / "bin" / "systemctl").write_text(STOP_LOGGING_SYSTEMCTL)
    (sandbox / "bin" / "deb-systemd-invoke").write_text(STOP_LOGGING_INVOKE)
    return sandbox


@pytest.mark.parametrize("fmt", FORMATS)
def test_upgrade_stops_the_migration_before_restarting_the_services(spec, fmt, stops_logged):
    everything = "orangescrum.service orangescrum-queue.service orangescrum-recurring.timer"
    done = run_lib(spec, fmt, stops_logged, "units_restart restarted", ENABLED=everything,
                   ACTIVE="orangescrum.service orangescrum-migrate.service")
    assert done.returncode == 0, done.stderr
    assert log_of(stops_logged) == ["stop orangescrum-migrate.service", "restart orangescrum.service",
                                    "restart orangescrum-queue.service", "restart orangescrum-recurring.timer"]
    assert done.stdout.splitlines() == [f"orangescrum: restarted: {everything}"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_running_but_disabled_service_is_still_restarted_after_the_migration_stop(spec, fmt, stops_logged):
    done = run_lib(spec, fmt, stops_logged, "units_restart restarted", ENABLED="",
                   ACTIVE="orangescrum-queue.service orangescrum-migrate.service")
    assert log_of(stops_logged) == ["stop orangescrum-migrate.service", "restart orangescrum-queue.service"]
    assert "orangescrum: restarted: orangescrum-queue.service" in done.stdout.splitlines()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_migration_is_reported_with_where_to_look(spec, fmt, stops_logged):
    done = run_lib(spec, fmt, stops_logged, "units_restart restarted; echo rc=$?", ENABLED="orangescrum.service",
                   FAILING="orangescrum.service", MIGRATE_STATE="failed")
    out = done.stdout.splitlines()
    assert "rc=0" in out  # an unattended upgrade is not failed by it
    assert "orangescrum: warning: orangescrum.service did not start; see: journalctl -u orangescrum.service" in out
    assert ("orangescrum: warning: the database migration failed (orangescrum-migrate.service): the services stay "
            "stopped and the schema") in out
    assert "orangescrum: stays as it was; the reason: journalctl -u orangescrum-migrate.service" in out
    done = run_lib(spec, fmt, stops_logged, "units_restart restarted", ENABLED="orangescrum.service",
                   FAILING="orangescrum.service", MIGRATE_STATE="active")
    assert "migration failed" not in done.stdout
