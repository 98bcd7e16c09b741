"""docker/entrypoint.sh: secret settings given as files (KEY_FILE=/run/secrets/...).

The layout of the image's /opt/orangescrum is copied to a temporary directory,
with the real validate-env.sh and a fake binary that reports what it was
started with: its arguments, and whether each secret reached its environment.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from test_docker_entrypoint import VALID, base_env, opt  # noqa: F401 - the fixtures are used by name

# Writes its environment to $DUMP (a file, so no value passes through argv).
FAKE_BINARY = """#!/bin/sh
printf 'fake-binary pid=%s args=' "$$"
for a in "$@"; do printf '[%s]' "$a"; done
printf '\\n'
env > "$DUMP"
"""


@pytest.fixture
def tree(opt) -> Path:
    """The /opt/orangescrum layout of test_docker_entrypoint, with a binary that dumps its environment."""
    (opt / "bin" / "orangescrum").write_text(FAKE_BINARY)
    return opt


@pytest.fixture
def env0(base_env, tmp_path) -> dict[str, str]:
    return {**base_env, "DUMP": str(tmp_path / "dump")}


def run(tree: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(tree / "entrypoint.sh"), *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def binary_environment(env0) -> dict[str, str]:
    text = Path(env0["DUMP"]).read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def secret_file(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / "run" / "secrets" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def as_files(tmp_path: Path, values: dict[str, str], *keys: str, ending: str = "\n") -> dict[str, str]:
    env = dict(values)
    for key in keys:
        env[f"{key}_FILE"] = str(secret_file(tmp_path, key.lower(), env.pop(key) + ending))
    return env


@pytest.mark.parametrize("command", ["server", "queue-worker", "recurring", "cake"])
def test_secret_files_become_the_settings_of_the_binary(tree, env0, tmp_path, command):
    env = {**env0, **as_files(tmp_path, VALID, "DB_PASSWORD", "SECURITY_SALT")}
    done = run(tree, command, env=env)
    assert done.returncode == 0, done.stderr
    assert "fake-binary" in done.stdout and done.stderr == ""
    seen = binary_environment(env0)
    assert seen["DB_PASSWORD"] == VALID["DB_PASSWORD"]  # one trailing newline stripped
    assert seen["SECURITY_SALT"] == VALID["SECURITY_SALT"]
    assert "DB_PASSWORD_FILE" not in seen and "SECURITY_SALT_FILE" not in seen
    for key in ("secret_key", "secret_path", "secret_value"):
        assert key not in seen


def test_a_file_without_a_trailing_newline_and_one_with_inner_blanks_are_taken_as_they_are(tree, env0, tmp_path):
    password = "Zq9 two  words #1$"
    env = {**env0, **as_files(tmp_path, {**VALID, "DB_PASSWORD": password}, "DB_PASSWORD", ending="")}
    done = run(tree, "server", env=env)
    assert done.returncode == 0, done.stderr
    assert binary_environment(env0)["DB_PASSWORD"] == password


def test_the_secret_is_execed_not_forked_and_the_server_still_gets_its_pid(tree, env0, tmp_path):
    env = {**env0, **as_files(tmp_path, VALID, "DB_PASSWORD")}
    proc = subprocess.Popen([str(tree / "entrypoint.sh")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"fake-binary pid={proc.pid} " in out


def test_key_and_key_file_together_refuse_to_start(tree, env0, tmp_path):
    env = {**env0, **as_files(tmp_path, VALID, "DB_PASSWORD"), "DB_PASSWORD": VALID["DB_PASSWORD"]}
    done = run(tree, "server", env=env)
    assert done.returncode == 1 and "fake-binary" not in done.stdout
    assert "error: DB_PASSWORD: is set and DB_PASSWORD_FILE too" in done.stderr
    assert VALID["DB_PASSWORD"] not in done.stdout + done.stderr


@pytest.mark.parametrize("problem", ["missing", "weak", "two-lines"])
def test_a_bad_secret_file_refuses_to_start_naming_the_key(tree, env0, tmp_path, problem):
    env = {**env0, **as_files(tmp_path, VALID, "DB_PASSWORD")}
    path = Path(env["DB_PASSWORD_FILE"])
    if problem == "missing":
        path.unlink()
        expect = "error: DB_PASSWORD_FILE: cannot read the file it names"
    elif problem == "weak":
        path.write_text("short1\n")
        expect = "error: DB_PASSWORD: must be at least 12 characters long"
    else:
        path.write_text("Zq9-canary-\nSecret-value\n")
        expect = "error: DB_PASSWORD_FILE: the file has more than one line"
    done = run(tree, "server", env=env)
    assert done.returncode == 1 and "fake-binary" not in done.stdout
    assert expect in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("entrypoint: refusing to start")
    for part in ("short1", "Zq9-canary-", "Secret-value"):
        assert part not in done.stdout + done.stderr


def test_validate_command_reads_the_files_too(tree, env0, tmp_path):
    env = {**env0, **as_files(tmp_path, VALID, "DB_PASSWORD")}
    done = run(tree, "validate", env=env)
    assert done.returncode == 0 and "validate-env: environment: OK" in done.stdout
    Path(env["DB_PASSWORD_FILE"]).write_text("password\n")
    done = run(tree, "validate", env=env)
    assert done.returncode == 1 and "error: DB_PASSWORD: is a well-known default password" in done.stdout


def test_without_secret_files_nothing_changes(tree, env0):
    done = run(tree, "server", env={**env0, **VALID})
    assert done.returncode == 0, done.stderr
    assert binary_environment(env0)["DB_PASSWORD"] == VALID["DB_PASSWORD"]


@pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")
def test_no_secret_from_a_file_is_on_any_command_line(tree, env0, tmp_path):
    """Every execve of the start (validator, printenv, the binary): never the content of a secret file."""
    value = "Zq9!From-A-File-" + uuid.uuid4().hex[:8]
    env = {**env0, **as_files(tmp_path, {**VALID, "DB_PASSWORD": value, "SECURITY_SALT": value * 3},
                                  "DB_PASSWORD", "SECURITY_SALT")}
    trace = tmp_path / "trace"
    done = subprocess.run(["strace", "-f", "-s", "100000", "-e", "trace=execve", "-o", str(trace),
                           str(tree / "entrypoint.sh"), "server"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = [line for line in trace.read_text().splitlines() if "execve(" in line]
    assert any("bin/orangescrum" in line for line in calls)
    assert not [line for line in calls if "/cat" in line]  # the shell reads the file itself
    assert not [line for line in calls if value in line]
    assert binary_environment(env0)["DB_PASSWORD"] == value
