"""Docs that must stay true to the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_config_reference_matches_the_registry():
    done = subprocess.run([sys.executable, str(ROOT / "scripts/update-readme.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    head = readme[:1500]
    assert "./scripts/setup.sh && .venv/bin/invoke demo" in head
    assert "./scripts/test.sh" in head
    assert "./scripts/test.sh" in (ROOT / ".ci/run").read_text()
