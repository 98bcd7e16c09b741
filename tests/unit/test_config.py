"""Config resolution: precedence, provenance, and every bad-value path."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from cloudbuilder import config as cfgmod
from cloudbuilder.config import AppFacts, Layer, layers_from, require_app, require_binary, resolve
from cloudbuilder.errors import ConfigError

NO_FACTS = AppFacts(version=None, version_source="default", last_commit_epoch=None)


def _resolve(*layers: Layer, environ=None, facts=NO_FACTS, cwd=Path("/work")):
    return resolve(list(layers), cwd=cwd, environ=environ or {}, probe=lambda _app: facts)


def test_defaults_resolve_to_a_frozen_typed_object():
    cfg = _resolve()
    assert cfg.app == Path("/apps/orangescrum-v4")  # ../apps/orangescrum-v4 from /work
    assert cfg.version == "0.0.0"
    assert cfg.builder.image == "dunglas/frankenphp:static-builder-gnu-1.12.7"
    assert cfg.builder.composer_image == "composer:2"
    assert "pdo_pgsql" in cfg.builder.php_extensions
    assert cfg.service.limit_nofile == 65536
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.version = "1"  # type: ignore[misc]


def test_precedence_default_invoke_envfile_env_flag(tmp_path):
    env_file = tmp_path / "build.env"
    env_file.write_text("OSCB_BUILDER_PHP_VERSION=8.2\nOSCB_SERVICE_TASKS_MAX=300\nDB_PASSWORD=not-config\n")
    invoke_values = {"builder": {"php_version": "8.1", "libc": "musl"}, "service": {"tasks_max": 100, "limit_nofile": 1024}}
    environ = {"OSCB_SERVICE_TASKS_MAX": "400", "OSCB_VERSION": "4.2.0"}
    flags = {"version": "4.3.0", "env_file": str(env_file)}
    cfg = resolve(layers_from(invoke_values, None, environ, flags), cwd=tmp_path, environ=environ,
                  probe=lambda _a: NO_FACTS)
    assert cfg.builder.libc == "musl"  # invoke config only
    assert cfg.service.limit_nofile == 1024  # invoke config only
    assert cfg.builder.php_version == "8.2"  # env file beats invoke config
    assert cfg.service.tasks_max == 400  # environment beats env file
    assert cfg.version == "4.3.0"  # flag beats environment
    assert cfg.builder.image == "dunglas/frankenphp:static-builder-musl-1.12.7"
    assert cfg.source_of("builder.libc") == "invoke config (invoke.yaml)"
    assert cfg.source_of("builder.php_version") == f"env file {env_file} OSCB_BUILDER_PHP_VERSION"
    assert cfg.source_of("service.tasks_max") == "environment variable OSCB_SERVICE_TASKS_MAX"
    assert cfg.source_of("version") == "flag --version"
    assert cfg.source_of("dist_dir") == "default"


def test_relative_paths_resolve_against_cwd(tmp_path):
    cfg = _resolve(Layer("flag", {"app": "examples/app", "binary": "bin/x"}), cwd=tmp_path)
    assert cfg.app == tmp_path / "examples/app"
    assert cfg.binary == tmp_path / "bin/x"


BAD_VALUES = [
    ("skip_deploy", "maybe", "is not a boolean"),
    ("service.tasks_max", "-1", "is not a non-negative integer"),
    ("service.tasks_max", True, "is not an integer"),
    ("docker.host_port", "70000", "is not a TCP port"),
    ("docker.host_port", "0", "is not a TCP port"),
    ("builder.libc", "uclibc", "is not a known choice"),
    ("builder.platform", "linux/386", "is not a known choice"),
    ("builder.php_extensions", "pdo,pdo_pgsqll", "unknown PHP extension(s) pdo_pgsqll"),
    ("builder.php_extensions", "", "is empty"),
    ("builder.php_version", "7.4", "is not a supported PHP version"),
    ("builder.frankenphp_version", "latest", "is not a valid deb/rpm version"),
    ("version", "4.1-1", "is not a valid deb/rpm version"),
    ("version", "release", "is not a valid deb/rpm version"),
    ("version", "4.1 beta", "is not a valid deb/rpm version"),
    ("paths.binary", "usr/bin/orangescrum", "is not an absolute path"),
    ("paths.config_dir", "/etc/../tmp", "is not an absolute path"),
    ("docker.memory_limit", "lots", "is not a size"),
    ("service.user", "Orange Scrum", "is not a valid user name"),
    ("service.listen", "localhost", "is not HOST:PORT"),
    ("service.listen", "127.0.0.1:99999", "is not HOST:PORT"),
    ("app_webroot", "/srv/www", "is not a relative path inside the app"),
    ("app_webroot", "../outside", "is not a relative path inside the app"),
    ("builder.base_repository", "", "is empty"),
    ("docker.postgres_image", "Postgres:15", "is not an image reference"),
    ("docker.postgres_image", "", "is empty"),
    ("docker.redis_image", "redis:7 alpine", "is not an image reference"),
    ("docker.minio_image", "minio/minio:latest\nExecStart=x", "contains a control character"),
]


@pytest.mark.parametrize("key,value,problem", BAD_VALUES)
def test_bad_values_fail_with_key_source_and_fix(key, value, problem):
    with pytest.raises(ConfigError) as err:
        _resolve(Layer("flag", {key: value}, {key: f"flag --{key}"}))
    message = str(err.value)
    assert "\n" not in message, "one line"
    assert message.startswith(f"{key}=")
    assert f"(from flag --{key})" in message
    assert problem in message
    assert cfgmod.BY_KEY[key].env_var in message  # says how to set it


def test_bad_value_from_environment_names_the_variable():
    layers = layers_from(None, None, {"OSCB_DOCKER_HOST_PORT": "http"}, {})
    with pytest.raises(ConfigError, match=r"docker.host_port='http' \(from environment variable OSCB_DOCKER_HOST_PORT\)"):
        _resolve(*layers)


def test_bad_value_from_env_file_names_the_file(tmp_path):
    env_file = tmp_path / "b.env"
    env_file.write_text("OSCB_BUILDER_LIBC=glibc\n")
    layers = layers_from(None, env_file, {}, {})
    with pytest.raises(ConfigError, match=rf"\(from env file {env_file} OSCB_BUILDER_LIBC\)"):
        _resolve(*layers)


def test_env_file_is_parsed_never_executed(tmp_path):
    canary = tmp_path / "pwned"
    env_file = tmp_path / "b.env"
    # A free-text setting (builder.base_repository, used before, is now an image name and refuses this).
    env_file.write_text(f"OSCB_PACKAGE_VENDOR=$(touch {canary})\nX=`touch {canary}`\n")
    cfg = _resolve(*layers_from(None, env_file, {}, {}))
    assert cfg.package.vendor == f"$(touch {canary})"
    assert not canary.exists()


def test_unknown_settings_are_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"OSCB_BUILDER_IMAG \(from environment variable\) is not a known setting"):
        layers_from(None, None, {"OSCB_BUILDER_IMAG": "x"}, {})
    # the test suite's switches live outside the OSCB_ prefix
    assert layers_from(None, None, {"CLOUDBUILDER_REQUIRE_FPM": "1", "CLOUDBUILDER_FUZZ_EXAMPLES": "5"}, {})
    with pytest.raises(ConfigError, match=r"builder.imagee \(from invoke config \(invoke.yaml\)\) is not a known setting"):
        _resolve(*layers_from({"builder": {"imagee": "x"}}, None, {}, {}))


def test_missing_env_file_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match=r"no such file; copy .env.example to .env"):
        layers_from(None, None, {}, {"env_file": str(tmp_path / "nope.env")})


def test_skip_base_and_rebuild_base_conflict():
    with pytest.raises(ConfigError, match="choose one"):
        _resolve(Layer("flag", {"skip_base": True, "rebuild_base": True}))


def test_version_from_app_facts_and_its_errors():
    cfg = _resolve(facts=AppFacts("v4.5.0", "composer.json \"version\"", 1700000000))
    assert cfg.version == "4.5.0"
    assert cfg.source_of("version") == "composer.json \"version\""
    assert cfg.source_date_epoch == 1700000000
    with pytest.raises(ConfigError, match=r"version='4.1-beta' \(from composer.json \"version\"\).*pass --version"):
        _resolve(facts=AppFacts("4.1-beta", "composer.json \"version\"", None))


def test_source_date_epoch_precedence():
    facts = AppFacts(None, "default", 1700000000)
    assert _resolve(facts=facts).source_date_epoch == 1700000000
    assert _resolve(facts=facts, environ={"SOURCE_DATE_EPOCH": "1600000000"}).source_date_epoch == 1600000000
    assert _resolve(Layer("flag", {"source_date_epoch": "5"}), facts=facts,
                    environ={"SOURCE_DATE_EPOCH": "1600000000"}).source_date_epoch == 5
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH='yesterday'"):
        _resolve(environ={"SOURCE_DATE_EPOCH": "yesterday"})


def test_github_token_is_kept_out_of_repr_and_templates():
    cfg = _resolve(environ={"GITHUB_TOKEN": "ghp_canary_token_123"})
    assert cfg.github_token == "ghp_canary_token_123"
    assert "ghp_canary" not in repr(cfg)
    assert "ghp_canary" not in str(cfg.template_context())
    assert all("ghp_canary" not in v for _, v, _ in cfgmod.describe(cfg))


def test_standin_image_brings_its_own_composer():
    cfg = _resolve(Layer("flag", {"builder.image": cfgmod.STANDIN_PREFIX + "static-builder:1"}))
    assert cfg.builder.composer_image == cfg.builder.image


def test_require_app_and_binary(tmp_path):
    cfg = _resolve(Layer("flag", {"app": str(tmp_path / "missing")}, {"app": "flag --app"}))
    with pytest.raises(ConfigError, match=r"app=.*missing \(from flag --app\): no such directory; pass --app"):
        require_app(cfg)
    (tmp_path / "app").mkdir()
    cfg = _resolve(Layer("flag", {"app": str(tmp_path / "app")}))
    with pytest.raises(ConfigError, match="no composer.json there"):
        require_app(cfg)
    (tmp_path / "app" / "composer.json").write_text("{}")
    require_app(cfg)

    cfg = _resolve(Layer("flag", {"binary": str(tmp_path / "nobin")}))
    with pytest.raises(ConfigError, match="no such file"):
        require_binary(cfg)
    (tmp_path / "bin").write_text("x")
    cfg = _resolve(Layer("flag", {"binary": str(tmp_path / "bin")}))
    with pytest.raises(ConfigError, match="not executable; run chmod"):
        require_binary(cfg)
    os.chmod(tmp_path / "bin", 0o755)
    assert require_binary(cfg) == tmp_path / "bin"


def test_probe_app_reads_composer_version(tmp_path):
    (tmp_path / "composer.json").write_text('{"name": "x/y", "version": "4.0.3"}')
    facts = cfgmod.probe_app(tmp_path)
    assert facts.version == "4.0.3"
    assert "composer.json" in facts.version_source


def test_registry_and_dataclasses_agree():
    """Every setting lands in the typed object, and every field has a setting."""
    cfg = _resolve()
    for s in cfgmod.SETTINGS:
        section, _, leaf = s.key.rpartition(".")
        if section in cfgmod.BY_KEY:  # app.migrate_command: a flat field beside the value `app`
            assert hasattr(cfg, s.key.replace(".", "_")), s.key
            continue
        assert hasattr(getattr(cfg, section) if section else cfg, leaf), s.key
    for section in ("builder", "docker", "service", "paths", "package", "release"):
        for name in getattr(cfg, section).__dataclass_fields__:
            assert f"{section}.{name}" in cfgmod.BY_KEY
    tree = cfgmod.defaults_tree()
    assert cfgmod.flatten(tree).keys() == cfgmod.BY_KEY.keys()


def test_infra_images_are_settings_with_the_official_defaults():
    cfg = _resolve(Layer("flag", {"docker.postgres_image": "mirror.example.org:5000/library/postgres:15.8"}))
    assert cfg.docker.postgres_image == "mirror.example.org:5000/library/postgres:15.8"
    assert (cfg.docker.redis_image, cfg.docker.minio_image) == ("redis:7-alpine", "minio/minio:latest")
    env = cfgmod.env_layer({"OSCB_DOCKER_REDIS_IMAGE": "localhost/infra/redis:7-abc"}, "environment variable")
    assert _resolve(env).docker.redis_image == "localhost/infra/redis:7-abc"
