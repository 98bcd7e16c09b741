"""docker/entrypoint.sh, run with sh against a fake binary (no engine).

The script finds the binary and the validator next to itself, so a temporary
copy of the image's /opt/orangescrum layout runs it exactly as the container
does, with the real validate-env.sh and the real (rendered) app-state.sh; the
fake binary "extracts" an app with a webroot when asked for its version, as the
real one extracts in its start-up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
VALIDATOR = ROOT / "common" / "helpers" / "validate-env.sh"
SECRET = "Zq9-canary-Secret-value"

VALID = {
    "FULL_BASE_URL": "https://os.example.org",
    "SECURITY_SALT": "0123456789abcdef0123456789abcdef0123",
    "DB_HOST": "db.internal",
    "DB_PORT": "5432",
    "DB_USERNAME": "orangescrum",
    "DB_PASSWORD": SECRET,
    "DB_NAME": "orangescrum",
}

FAKE_BINARY = """#!/bin/sh
# stands in for FrankenPHP: prints how it was started
if [ "$1" = version ]; then
  mkdir -p "$TMPDIR/frankenphp_fake/webroot" "$TMPDIR/frankenphp_fake/public"
  exit 0
fi
printf 'fake-binary pid=%s args=' "$$"
for a in "$@"; do printf '[%s]' "$a"; done
printf '\\n'
"""


@pytest.fixture(scope="module")
def app_state(tmp_path_factory) -> Path:
    """helpers/app-state.sh as dist/docker has it (rendered with the defaults)."""
    from cloudbuilder.assemble import assemble_tree
    from cloudbuilder.config import AppFacts, Layer, resolve

    tmp = tmp_path_factory.mktemp("entrypoint-tree")
    layer = Layer("flag", {"app": str(ROOT / "examples" / "orangescrum-demo"), "dist_dir": str(tmp / "dist"),
                           "version": "4.1.0", "source_date_epoch": "1700000000"})
    cfg = resolve([layer], cwd=tmp, environ={}, probe=lambda _a: AppFacts(None, "default", None))
    (tmp / "bin").write_text("#!/bin/sh\n")
    return assemble_tree(cfg, "docker", tmp / "bin").path / "helpers" / "app-state.sh"


@pytest.fixture
def opt(tmp_path, app_state) -> Path:
    """/opt/orangescrum: entrypoint.sh, helpers/validate-env.sh, helpers/app-state.sh and helpers/server-env.sh
    (rendered for the docker tree with the default settings), bin/orangescrum (fake)."""
    home = tmp_path / "opt" / "orangescrum"
    (home / "helpers").mkdir(parents=True)
    (home / "bin").mkdir()
    shutil.copy2(ENTRYPOINT, home / "entrypoint.sh")
    shutil.copy2(VALIDATOR, home / "helpers" / "validate-env.sh")
    shutil.copy2(app_state, home / "helpers" / "app-state.sh")
    shutil.copy2(app_state.parent / "server-env.sh", home / "helpers" / "server-env.sh")
    (home / "bin" / "orangescrum").write_text(FAKE_BINARY)
    for p in (home / "entrypoint.sh", home / "helpers" / "validate-env.sh", home / "helpers" / "app-state.sh",
              home / "helpers" / "server-env.sh",
              home / "bin" / "orangescrum"):
        p.chmod(0o755)
    return home


@pytest.fixture
def base_env(tmp_path) -> dict[str, str]:
    tmpdir = tmp_path / "cache"
    tmpdir.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(tmpdir), "PORT": "8080",
            "WEBROOT": "webroot", "STATE_DIR": str(state)}


def run(opt: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(opt / "entrypoint.sh"), *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def started(done: subprocess.CompletedProcess) -> str:
    line = next(line for line in done.stdout.splitlines() if line.startswith("fake-binary"))
    return line.split(" args=", 1)[1]


def test_default_is_the_server_and_the_binary_is_execed(opt, base_env):
    assert "app-state: seeded webroot/files" in run(opt, env={**base_env, **VALID}).stderr  # the first start
    proc = subprocess.Popen([str(opt / "entrypoint.sh")], env={**base_env, **VALID}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # exec: the binary has the entrypoint's PID (in a container: PID 1, so SIGTERM reaches it)
    assert f"fake-binary pid={proc.pid} " in out
    assert out.rstrip().endswith("args=[php-server][--listen][:8080][--root][webroot]")
    assert err == ""  # --quiet: nothing printed when valid (and the state is there already)


@pytest.mark.parametrize("command", ["server", "queue-worker", "recurring", "cake"])
def test_every_app_command_puts_the_state_in_place_first(opt, base_env, command):
    done = run(opt, command, env={**base_env, **VALID})
    assert done.returncode == 0, done.stderr
    role = command if command != "server" else "server"
    app = Path(base_env["TMPDIR"]) / role / "frankenphp_fake"
    state = Path(base_env["STATE_DIR"])
    assert os.readlink(app / "webroot" / "files") == str(state / "webroot" / "files")
    assert os.readlink(app / "logs") == str(state / "logs")
    assert os.readlink(app / "config") == str(state / "config")
    assert (state / "webroot" / "files").is_dir() and (state / "config" / "oauth-keys").is_dir()


def test_a_state_dir_without_the_volume_is_explained(opt, base_env, tmp_path):
    done = run(opt, "server", env={**base_env, **VALID, "STATE_DIR": str(tmp_path / "no-volume")})
    assert done.returncode == 1 and "fake-binary" not in done.stdout
    assert "STATE_DIR" in done.stderr and "mount the state volume there" in done.stderr


@pytest.mark.parametrize(("args", "expect"), [
    (("server",), "[php-server][--listen][:8080][--root][webroot]"),
    (("queue-worker",), "[php-cli][bin/cake.php][queue][worker][--max-runtime][3600]"),
    (("recurring",), "[php-cli][bin/cake.php][recurring_task]"),
    (("cake", "migrations", "migrate", "--source", "a b"), "[php-cli][bin/cake.php][migrations][migrate][--source][a b]"),
])
def test_commands(opt, base_env, args, expect):
    done = run(opt, *args, env={**base_env, **VALID})
    assert done.returncode == 0, done.stderr
    assert started(done) == expect


def test_port_webroot_and_max_runtime_come_from_the_environment(opt, base_env):
    env = {**base_env, **VALID, "PORT": "9090", "WEBROOT": "public", "QUEUE_WORKER_MAX_RUNTIME": "60"}
    assert started(run(opt, "server", env=env)) == "[php-server][--listen][:9090][--root][public]"
    assert started(run(opt, "queue-worker", env=env)).endswith("[--max-runtime][60]")


@pytest.mark.parametrize("command", ["server", "queue-worker", "recurring", "cake"])
def test_invalid_environment_is_refused_with_the_report(opt, base_env, command):
    env = {**base_env, **VALID, "DB_PASSWORD": "short", "FULL_BASE_URL": "CHANGE_ME"}
    del env["DB_HOST"]
    done = run(opt, command, env=env)
    assert done.returncode == 1
    assert "fake-binary" not in done.stdout
    report = done.stderr
    assert "error: DB_HOST: is required but not set" in report
    assert "error: DB_PASSWORD: must be at least 12 characters long" in report
    assert "error: FULL_BASE_URL:" in report
    assert "validate-env: environment: 3 errors" in report
    # the refusal comes after the report, in the same stream (docker logs keeps the order)
    assert report.rstrip().splitlines()[-1].startswith("entrypoint: refusing to start")
    assert "short" not in report and "CHANGE_ME" not in report


def test_values_never_appear_in_the_output(opt, base_env):
    env = {**base_env, **VALID, "SECURITY_SALT": SECRET[:10]}
    done = run(opt, "server", env=env)
    assert done.returncode == 1
    assert SECRET not in done.stdout + done.stderr and SECRET[:10] not in done.stdout + done.stderr


def test_validate_prints_the_report_and_its_status(opt, base_env):
    done = run(opt, "validate", env={**base_env, **VALID})
    assert done.returncode == 0 and "validate-env: environment: OK" in done.stdout
    done = run(opt, "validate", env=base_env)
    assert done.returncode == 1
    assert "error: DB_PASSWORD: is required but not set" in done.stdout


def test_unwritable_tmpdir_is_explained(opt, base_env, tmp_path):
    env = {**base_env, **VALID, "TMPDIR": str(tmp_path / "missing")}
    done = run(opt, "server", env=env)
    assert done.returncode == 1 and "fake-binary" not in done.stdout
    assert "TMPDIR" in done.stderr and "tmpfs" in done.stderr


def test_unreadable_ssl_cert_file_warns_but_starts(opt, base_env, tmp_path):
    env = {**base_env, **VALID, "SSL_CERT_FILE": str(tmp_path / "no-bundle.crt")}
    done = run(opt, "server", env=env)
    assert done.returncode == 0
    assert "warning: SSL_CERT_FILE" in done.stderr
    assert str(tmp_path) not in done.stderr  # names the key, not its value


def test_healthcheck_needs_no_valid_environment(opt, base_env):
    done = run(opt, "healthcheck", env=base_env)
    assert done.returncode == 0
    args = done.stdout.split(" args=", 1)[1]  # the PHP code spans lines
    assert args.startswith("[php-cli][-r][") and "/healthz" in args and 'getenv("PORT")' in args


def test_unknown_command_and_help(opt, base_env):
    done = run(opt, "bash", env={**base_env, **VALID})
    assert done.returncode == 2 and "unknown command 'bash'" in done.stderr and "usage:" in done.stderr
    done = run(opt, "--help", env=base_env)
    assert done.returncode == 0 and "usage:" in done.stdout


def test_entrypoint_is_executable_posix_sh():
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    assert os.access(ENTRYPOINT, os.X_OK)
