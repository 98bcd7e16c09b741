"""cloudbuilder/runner.py: the one subprocess adapter (resolution, echo, secrets, errors)."""

from __future__ import annotations

import logging

import pytest

from cloudbuilder import runner
from cloudbuilder.errors import BuildError, PrerequisiteError


def test_a_missing_program_names_itself_and_the_fix():
    with pytest.raises(PrerequisiteError, match=r"^reading x: `oscb-no-such-tool` is not installed .*"
                                                r"install it: \./scripts/setup\.sh") as info:
        runner.run(["oscb-no-such-tool", "--version"], what="reading x")
    assert isinstance(info.value, runner.ProgramNotFound) and info.value.program == "oscb-no-such-tool"
    with pytest.raises(PrerequisiteError, match=r"install it: apt-get install debootstrap"):
        runner.require("debootstrap", what="rootfs", path="/nonexistent")
    with pytest.raises(PrerequisiteError, match=r"^p: `oscb-none` .*install it: pip install it$"):
        runner.run(["oscb-none"], what="p", hint="pip install it")


def test_output_exit_code_and_check():
    done = runner.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    with pytest.raises(BuildError, match=r"^step: sh failed \(exit 3\):\nline2\nline3$") as info:
        runner.run(["sh", "-c", "echo line1; echo line2; echo line3; exit 3"], what="step", check=True,
                   tail_lines=2)
    assert isinstance(info.value, runner.CommandFailed) and info.value.returncode == 3
    assert runner.run(["sh", "-c", "cat"], input="fed").stdout == "fed"
    assert runner.run(["sh", "-c", "cat"]).stdout == ""  # stdin is /dev/null
    assert runner.run(["sh", "-c", "printf '\\377'"], text=False).stdout == b"\xff"


def test_env_replaces_the_environment_and_cwd(tmp_path):
    done = runner.run(["sh", "-c", 'echo "$ONLY:${HOME:-unset}"; pwd'], env={"ONLY": "1", "PATH": "/usr/bin:/bin"},
                      cwd=tmp_path)
    assert done.stdout.splitlines() == ["1:unset", str(tmp_path)]


def test_timeout():
    with pytest.raises(BuildError, match=r"^slow: `sleep` did not finish within 1s$") as info:
        runner.run(["sleep", "5"], what="slow", timeout=1)
    assert isinstance(info.value, runner.CommandTimeout)


def test_echo_hides_secrets_and_never_the_environment(caplog):
    caplog.set_level(logging.DEBUG, logger="cloudbuilder")
    runner.run(["sh", "-c", 'test "$1" = "$DB_PASSWORD"', "sh", runner.Secret("s3cret-value")],
               env={"PATH": "/usr/bin:/bin", "DB_PASSWORD": "s3cret-value"}, check=True)
    assert "+ sh -c" in caplog.text and "***" in caplog.text
    assert "s3cret-value" not in caplog.text
    assert "hunter2" not in repr(runner.Secret("hunter2"))
    caplog.clear()
    runner.run(["true"], level=logging.INFO, prefix="    + ")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.INFO, "    + true")]


def test_not_startable(tmp_path):
    script = tmp_path / "tool"
    script.write_bytes(b"\x7fELF-not-really")
    script.chmod(0o755)
    with pytest.raises(BuildError, match="could not be started") as info:
        runner.run([str(script)])
    assert isinstance(info.value, runner.NotStartable) and isinstance(info.value, runner.NOT_RUN)
