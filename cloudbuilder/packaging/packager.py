"""The packager contract: what a backend is given, what it returns, and the environment it runs in.

A backend (``fpm``, ``nfpm``) is pure: ``plan()`` returns an ``Invocation``
(the argv, the environment and the files it needs written: nfpm.yaml, a
changelog), computed from the ``PackageSpec`` and from where the build put
each source on disk (``Layout``).  ``build.py`` writes those files and runs
the program; tests compare plans with golden files.  The backends import this
module, the spec and the formats, and nothing that selects among them
(``backends.py`` does that), so no dependency points back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .formats import Format
from .spec import PackageSpec

# What a packager (nfpm; fpm and the rpmbuild, dpkg-deb, tar it runs) takes from the
# caller's environment: where programs are, a home, a temp dir, and Ruby's gem paths
# for fpm. Nothing else: no GITHUB_TOKEN or other secret can reach a package
# (nfpm expands $VAR in metadata from its environment), and no locale or time
# zone of this machine changes the output.
PACKAGER_PASSTHROUGH = ("PATH", "HOME", "TMPDIR", "GEM_HOME", "GEM_PATH", "RUBYLIB")


def packager_environment(environ: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a packager run: the passthrough above, a fixed locale and zone, ``extra``."""
    env = {k: environ[k] for k in PACKAGER_PASSTHROUGH if environ.get(k)}
    env.setdefault("PATH", os.defpath)
    env.update({"LC_ALL": "C.UTF-8", "TZ": "UTC"})
    env.update(extra)
    return env


@dataclass(frozen=True)
class Invocation:
    """One run of a packager: ``argv`` in ``cwd`` with ``env`` added to a minimal environment
    (``packager_environment``: never the caller's secrets), after writing ``files``
    (and making ``links``)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    files: Mapping[str, str] = field(default_factory=dict)  # work-relative path -> text
    cwd: Path | None = None
    links: Mapping[str, str] = field(default_factory=dict)  # work-relative path -> symlink target


@dataclass(frozen=True)
class Layout:
    """Where the build put things: every file's source, the scripts, the empty directories."""

    work: Path
    sources: Mapping[str, Path]  # package path -> file on disk
    scripts: Mapping[str, Path]  # pre/post/preun/postun -> file on disk
    dirs: Mapping[str, Path]  # package path -> an empty directory on disk (fpm)


class Backend(Protocol):
    name: str
    program: str
    # Files whose mode on disk must already be the package mode (fpm copies it).
    needs_exact_modes: bool

    def preflight(self) -> None:
        """Raise a PrerequisiteError when the installed packager cannot do the job."""

    def missing(self, fmt: Format) -> str | None:
        """Why the packager installed here cannot build ``fmt`` (None: it can): not on PATH,
        another program of the same name, a helper it needs (rpmbuild) absent."""

    def unsupported(self, fmt: Format, compression: str) -> str | None:
        """Why this backend cannot build a ``compression``-compressed ``fmt`` (None: it can)."""

    def plan(self, spec: PackageSpec, fmt: Format, layout: Layout, output: Path) -> Invocation:
        """The invocation that writes the package to ``output``."""
