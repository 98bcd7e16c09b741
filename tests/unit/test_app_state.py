"""app.state_paths: its validation, its layout, and the pieces it is rendered into
(helpers/app-state.sh, the Compose volume, the image, the units, the package)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cloudbuilder import config as cfgmod
from cloudbuilder.assemble import assemble_tree
from cloudbuilder.config import AppFacts, Layer, layers_from, resolve
from cloudbuilder.errors import ConfigError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NO_FACTS = AppFacts(version=None, version_source="default", last_commit_epoch=None)
KEY = "app.state_paths"


def _resolve(*layers: Layer, environ=None):
    return resolve(list(layers), cwd=Path("/work"), environ=environ or {}, probe=lambda _app: NO_FACTS)


def test_default_is_the_orangescrum_list():
    cfg = _resolve()
    assert cfg.app_state_paths == (
        "webroot/files/", "webroot/temp/", "webroot/timesheetpdf/", "webroot/csv/", "webroot/invoice-logo/",
        "webroot/pdfreports/", "tmp/", "logs/", "config/app_local.php", "config/install.ini", "config/smtp.php",
        "config/oauth-keys/")
    layout = cfgmod.state_layout(cfg.app_state_paths)
    assert layout.merged == ("config",)
    assert layout.inner == ("config/oauth-keys",)
    assert layout.files == ("config/app_local.php", "config/install.ini", "config/smtp.php")
    assert "tmp" in layout.dirs and "logs" in layout.dirs and "config/oauth-keys" not in layout.dirs


def test_environment_variable_and_invoke_yaml_set_it():
    layers = layers_from(None, None, {"OSCB_APP_STATE_PATHS": "webroot/files/, logs/ ,data/db.sqlite"}, {})
    cfg = _resolve(*layers)
    assert cfg.app_state_paths == ("webroot/files/", "logs/", "data/db.sqlite")
    assert cfg.source_of(KEY) == "environment variable OSCB_APP_STATE_PATHS"
    cfg = _resolve(*layers_from({"app.state_paths": ["uploads/", "config/local.php"]}, None, {}, {}))
    assert cfg.app_state_paths == ("uploads/", "config/local.php")
    assert _resolve(Layer("flag", {KEY: ""})).app_state_paths == ()  # no state at all
    assert cfgmod.recorded_settings(cfg, ("app.state_paths",)) == {KEY: ["uploads/", "config/local.php"]}


@pytest.mark.parametrize("value,problem,fix", [
    ("/var/lib/x/", "has an absolute path ('/var/lib/x/')", "relative to the app"),
    ("webroot/../../etc/", "has a path with '.' or '..'", "no '..'"),
    ("./logs/", "has a path with '.' or '..'", "no '..'"),
    ("web%root/", "has a path with a character", "letters"),
    ("logs//x/", "empty component", "separated by '/'"),
    ("webroot/$(id)/", "has a path with a character", "letters"),
    ("logs/,logs", "lists 'logs' twice", "list each path once"),
    ("webroot/,webroot/files/", "has overlapping paths ('webroot' holds 'webroot/files')", "keep only 'webroot'"),
    ("tmp/,tmp/cache/x.php", "has overlapping paths", "keep only 'tmp'"),
    ("install.lock", "has a file at the top of the app", "subdirectory"),
    ("config/a.php,config/sub/b.php", "has state files in 'config' and in 'config/sub'", "declare 'config/sub/'"),
    ("config/a.php,config/keys/rsa/", "deeper inside 'config'", "declare 'config/keys/'"),
])
def test_bad_state_paths_are_refused_naming_the_key(value, problem, fix):
    with pytest.raises(ConfigError) as err:
        _resolve(Layer("flag", {KEY: value}, {KEY: "flag --app.state_paths"}))
    message = str(err.value)
    assert message.startswith(f"{KEY}=") and "\n" not in message
    assert problem in message and fix in message
    assert "OSCB_APP_STATE_PATHS" in message


def test_control_characters_are_refused():
    with pytest.raises(ConfigError, match="control character"):
        _resolve(Layer("flag", {KEY: "logs/\nExecStart=/bin/sh"}))


# -- the rendered pieces ---------------------------------------------------------------


def _trees(tmp_path: Path, **values) -> tuple[Path, Path]:
    layer = Layer("flag", {"app": str(ROOT / "examples" / "orangescrum-demo"), "dist_dir": str(tmp_path / "dist"),
                           "version": "4.1.0", "source_date_epoch": "1700000000", **values})
    cfg = resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))
    binary = tmp_path / "bin"
    binary.write_text("#!/bin/sh\n")
    return assemble_tree(cfg, "docker", binary).path, assemble_tree(cfg, "native", binary).path


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    return _trees(tmp_path_factory.mktemp("state-trees"), **{"app.state_paths": "uploads/,config/local.php"})


def test_the_helper_carries_the_declared_paths_and_the_defaults(trees):
    docker, native = trees
    for tree in trees:
        text = (tree / "helpers" / "app-state.sh").read_text()
        assert text.startswith("#!/bin/sh\n")
        assert "STATE_PATHS='uploads/ config/local.php'\n" in text
        assert "STATE_DIR=${STATE_DIR:-'/var/lib/orangescrum'}\n" in text
        assert (tree / "helpers" / "app-state.sh").stat().st_mode & 0o111
    assert (docker / "helpers" / "app-state.sh").read_bytes() == (native / "helpers" / "app-state.sh").read_bytes()


def test_compose_shares_one_state_volume_mounted_at_the_state_dir(tmp_path):
    docker, _ = _trees(tmp_path, **{"paths.state_dir": "/var/lib/os-data"})
    compose = yaml.safe_load((docker / "docker-compose.yaml").read_text())
    for service in ("app", "queue"):
        assert "state:/var/lib/os-data" in compose["services"][service]["volumes"], service
    assert "state" in compose["volumes"]
    dockerfile = (docker / "Dockerfile").read_text()
    assert re.search(r"^\s+STATE_DIR=/var/lib/os-data \\$", dockerfile, re.M)
    assert "COPY helpers/app-state.sh /rootfs/opt/orangescrum/helpers/app-state.sh\n" in dockerfile
    assert "!helpers/app-state.sh\n" in (docker / ".dockerignore").read_text()


def test_every_native_command_goes_through_the_helper(trees):
    _, native = trees
    for unit, role in (("orangescrum.service", "server"), ("orangescrum-queue.service", "queue-worker"),
                       ("orangescrum-recurring.service", "recurring")):
        lines = [line for line in (native / "systemd" / unit).read_text().splitlines() if line.startswith("ExecStart=")]
        first = "/usr/libexec/orangescrum/server-env " if role == "server" else ""  # the web server's listen address
        assert lines == [f"ExecStart={first}/usr/libexec/orangescrum/app-state {role} /usr/bin/orangescrum "
                         + lines[0].split(" /usr/bin/orangescrum ", 1)[1]], unit
    assert '"$here/helpers/app-state.sh" "$role" "$bin" "$@"' in (native / "run-native.sh").read_text()
    assert '"$here/helpers/app-state.sh" cake "$here/bin/orangescrum" php-cli bin/cake.php' in \
        (native / "helpers" / "cake.sh").read_text()


def test_the_package_installs_the_helper_next_to_the_validator(trees, tmp_path):
    from cloudbuilder.packaging.spec import build_spec, read_app_license

    _, native = trees
    layer = Layer("flag", {"app": str(ROOT / "examples" / "orangescrum-demo"), "dist_dir": str(native.parent),
                           "version": "4.1.0", "source_date_epoch": "1700000000"})
    cfg = resolve([layer], cwd=tmp_path, environ={}, probe=lambda _a: AppFacts(None, "default", None))
    spec = build_spec(cfg, native, read_app_license(cfg))
    entry = next(f for f in spec.files if f.dst == "/usr/libexec/orangescrum/app-state")
    assert entry.mode == 0o755 and Path(entry.src) == native / "helpers" / "app-state.sh"
