"""`orangescrum-build` / `python -m cloudbuilder`: the task namespace without a tasks.py."""

from __future__ import annotations

from invoke import Program

from . import __version__
from .tasks import ns

program = Program(namespace=ns, version=__version__, name="OrangeScrum Cloud Builder",
                  binary="orangescrum-build")


def main() -> None:
    program.run()


if __name__ == "__main__":
    main()
