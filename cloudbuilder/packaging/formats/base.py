"""What every package format has, as types: the names the formats share and the contract each one keeps.

A format module (``deb``, ``rpm``) imports only this module,
``cloudbuilder.reproducible`` and ``cloudbuilder.errors``; it knows nothing of the settings, the spec or
the backends.  ``PackageSpec`` (spec.py) asks its format for file names,
architecture names, owners, scripts and the format's own files; the backends
(fpm.py, nfpm.py) ask it for the description, compressions, relations and the
format's syntax (control file, %changelog, %attr/%ghost lines).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

Format = Literal["deb", "rpm"]
FORMATS: tuple[Format, ...] = ("deb", "rpm")
Compression = Literal["zstd", "xz", "gzip", "none"]
Arch = Literal["amd64", "arm64"]


@dataclass(frozen=True)
class Compressor:
    """How each packager spells one payload compression of a format (None: that packager cannot write it)."""

    fpm: str | None  # --deb-compression / --rpm-compression
    fpm_level: str | None  # --deb-compression-level / --rpm-compression-level (None: fpm's default)
    nfpm: str | None  # deb.compression / rpm.compression in nfpm.yaml


@dataclass(frozen=True)
class FormatFile:
    """A file only this format ships, rendered from a packaging template (changelog, lint overrides)."""

    dst: str  # the installed path
    template: str  # below packaging/
    name: str  # the Generated source's name (unique within a spec)
    gzip: bool = False  # gzip -9n the rendered text
    doc: bool = False  # rpm %doc


class PackageFormat(Protocol):
    """One package format: everything about it that is not the same in the other one."""

    name: Format
    # The maintainer scripts, in the order pre, post, preun, postun (the package's file names for them).
    script_names: tuple[str, str, str, str]
    compressors: Mapping[str, Compressor]

    def arch(self, arch: Arch) -> str:
        """The format's name of ``arch`` (amd64: amd64 / x86_64)."""

    def filename(self, name: str, full_version: str, arch: Arch) -> str:
        """The conventional file name of the package."""

    def owner(self, owner: str, group: str) -> tuple[str, str]:
        """The owner a path gets in this format (a .deb carries every path as root:root)."""

    def description(self, summary: str, description: str) -> str:
        """The packager's description text: the synopsis line, then ``description`` (plain lines, "." for
        an empty one) in this format's paragraph syntax."""

    def files(self, name: str, doc_dir: str) -> tuple[FormatFile, ...]:
        """The files only this format ships."""
