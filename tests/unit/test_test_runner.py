"""scripts/test.sh: the unit tier first and without apt, then the slow tiers; and the unit tier's guard."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_PYTHON = """#!/bin/sh
# records "pytest ARGS" and exits with the code listed for its call number
n=$(($(wc -l <"$LOG") + 1))
echo "pytest $*" | sed 's/^pytest -m pytest /pytest /' >>"$LOG"
code=$(echo "$CODES" | cut -d, -f"$n")
exit "${code:-0}"
"""


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of scripts/test.sh whose setup scripts and pytest only record what they were asked."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts/test.sh", tmp_path / "scripts/test.sh")
    for name in ("setup.sh", "setup-python.sh"):
        script = tmp_path / "scripts" / name
        script.write_text(f'#!/bin/sh\necho "{name}" >>"$LOG"\n')
        script.chmod(0o755)
    (tmp_path / ".venv/bin").mkdir(parents=True)
    (tmp_path / ".venv/bin/python").write_text(FAKE_PYTHON)
    (tmp_path / ".venv/bin/python").chmod(0o755)
    return tmp_path


def run(checkout: Path, *args: str, codes: str = "") -> tuple[int, list[str]]:
    log = checkout / "calls.log"
    log.write_text("")
    done = subprocess.run(["/bin/sh", str(checkout / "scripts/test.sh"), *args], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "LOG": str(log), "CODES": codes}, timeout=60)
    return done.returncode, log.read_text().splitlines()


def test_full_run_is_the_unit_tier_first_then_setup_then_the_slow_tiers(checkout):
    assert run(checkout) == (0, ["setup-python.sh", "pytest -m unit", "setup.sh",
                                 "pytest -m integration or system"])


def test_a_failing_unit_tier_stops_the_run_before_any_apt_setup(checkout):
    assert run(checkout, codes="1") == (1, ["setup-python.sh", "pytest -m unit"])


def test_a_tier_without_tests_is_no_failure_but_a_failing_slow_tier_is(checkout):
    assert run(checkout, codes="0,5")[0] == 0  # pytest exits 5 when it collected nothing
    assert run(checkout, codes="5,5")[0] == 0
    assert run(checkout, codes="0,1")[0] == 1
    assert run(checkout, codes="2")[0] != 0  # interrupted or a usage error is no empty tier


@pytest.mark.parametrize("args", [["-m", "unit"], ["-munit"], ["-q", "-m", "unit", "-k", "archive"],
                                  ["tests/unit/test_archive.py"]])
def test_a_unit_only_selection_needs_only_the_python_setup(checkout, args):
    assert run(checkout, *args) == (0, ["setup-python.sh", "pytest " + " ".join(args)])


@pytest.mark.parametrize("args", [["-m", "integration"], ["-x"], ["-m", "unit", "tests/integration"], ["-k", "unit"]])
def test_any_other_selection_gets_the_full_setup(checkout, args):
    assert run(checkout, *args) == (0, ["setup.sh", "pytest " + " ".join(args)])


def test_ci_runs_exactly_the_readme_test_command():
    assert "\n./scripts/test.sh\n" in (ROOT / ".ci/run").read_text()
    assert "```sh\n# set up, then run every test tier (unit, integration, system)\n./scripts/test.sh\n```" in (
        ROOT / "README.md").read_text()


def test_the_unit_tier_guard_refuses_apt_programs_and_the_docker_engine():
    from conftest import UnitTierViolation

    with pytest.raises(UnitTierViolation, match="'dpkg-deb', which comes from apt"):
        subprocess.run(["/usr/bin/dpkg-deb", "--version"], capture_output=True)
    with pytest.raises(UnitTierViolation, match="'rpm'"):
        subprocess.check_output("rpm --version", shell=True)
    import docker

    with pytest.raises(UnitTierViolation, match="Docker engine"):
        docker.from_env()
    assert subprocess.run(["sh", "-c", "exit 3"]).returncode == 3  # a POSIX shell is fine
