"""`orangescrum-build` / `python -m cloudbuilder`: the task namespace without a tasks.py."""

from __future__ import annotations

import os

from invoke import Program

from . import __version__
from .tasks import ns


class BuilderProgram(Program):
    """invoke's Program with the bundled namespace, reading ``./invoke.yaml`` as `invoke` would.

    With a bundled namespace invoke never looks for a tasks.py, so it never
    learns a project directory and skips the project config file.  Here the
    current directory is the project: an ``invoke.yaml`` (or ``.yml``/``.json``/
    ``.py``) there configures `orangescrum-build` exactly as it configures
    `invoke` next to tasks.py.
    """

    def parse_collection(self) -> None:
        super().parse_collection()
        self.config.set_project_location(os.getcwd())
        self.config.load_project()


program = BuilderProgram(namespace=ns, version=__version__, name="OrangeScrum Cloud Builder",
                         binary="orangescrum-build")


def main() -> None:
    program.run()


if __name__ == "__main__":
    main()
