"""The unit tier runs no outside build tool: an autouse guard on the runner's one spawn point.

Unit tests may run the POSIX shell and git (the env validator and the app
archive are shell and git by design, and run in milliseconds); any other
program started through ``cloudbuilder.runner`` (docker, a packager, gpg, rpm,
debootstrap...) fails the test: such tests belong in tests/integration.
"""

from __future__ import annotations

import os

import pytest

from cloudbuilder import runner

UNIT_PROGRAMS = frozenset({"sh", "dash", "bash", "git", "true", "false", "sleep", "cat"})


@pytest.fixture(autouse=True)
def _only_light_programs(monkeypatch):
    real = runner._spawn

    def guarded(argv, **kwargs):
        name = os.path.basename(argv[0])
        if name not in UNIT_PROGRAMS:
            raise AssertionError(f"a unit test started `{name}` through cloudbuilder.runner; "
                                 "fake runner.run, or move the test to tests/integration")
        return real(argv, **kwargs)

    monkeypatch.setattr(runner, "_spawn", guarded)
