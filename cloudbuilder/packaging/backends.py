"""Packager backends: each turns a ``PackageSpec`` into one program invocation.

A backend is pure: ``plan()`` returns the argv, the environment and the files
it needs written (nfpm.yaml, a changelog), computed from the spec and from
where the build put each source on disk.  ``build.py`` writes those files and
runs the program; tests compare plans with golden files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..config import BuildConfig
from ..errors import ConfigError
from .spec import Format, PackageSpec


@dataclass(frozen=True)
class Invocation:
    """One run of a packager: ``argv`` in ``cwd`` with ``env`` added to a minimal environment
    (``build.packager_environment``: never the caller's secrets), after writing ``files``."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    files: Mapping[str, str] = field(default_factory=dict)  # work-relative path -> text
    cwd: Path | None = None


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


def select_backend(cfg: BuildConfig, fmt: Format, *, which: Callable[[str], bool] = available) -> Backend:
    """``package.backend``: fpm or nfpm as asked; auto takes fpm when it is on PATH and can
    write this format with the chosen compression, else nfpm.  Fails before any work
    when the chosen backend cannot write the chosen compression."""
    backends = all_backends()
    choice = cfg.package.backend
    compression = compression_of(cfg, fmt)
    if choice == "auto":
        fpm = backends["fpm"]
        if which(fpm.program) and fpm.unsupported(fmt, compression) is None:
            return fpm
        choice = "nfpm"
    backend = backends[choice]
    reason = backend.unsupported(fmt, compression)
    if reason:
        raise ConfigError(f"package.backend={cfg.package.backend} (from {cfg.source_of('package.backend')}) "
                          f"cannot build the .{fmt}: {reason}")
    return backend
