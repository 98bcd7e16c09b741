"""Packaging organised by format: ``deb`` and ``rpm`` hold what differs between the two.

``format_of("deb")`` is the registry: the spec and the backends look a format
up here; the format modules import nothing but ``base``,
``cloudbuilder.reproducible`` and ``cloudbuilder.errors``, so every dependency points at them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from .base import FORMATS, Arch, Compression, Compressor, Format, FormatFile, PackageFormat
from .deb import DEB
from .rpm import RPM

REGISTRY: Mapping[Format, PackageFormat] = {"deb": DEB, "rpm": RPM}


def format_of(fmt: Format) -> PackageFormat:
    """The format named ``fmt`` (deb or rpm)."""
    return REGISTRY[fmt]


def compressions(fmt: Format, packager: Literal["fpm", "nfpm"]) -> dict[str, str]:
    """The compressions of ``fmt`` that ``packager`` can write, each with that packager's name for it."""
    spelled = {name: getattr(c, packager) for name, c in REGISTRY[fmt].compressors.items()}
    return {name: word for name, word in spelled.items() if word is not None}


__all__ = ["Arch", "Compression", "Compressor", "FORMATS", "Format", "FormatFile", "PackageFormat", "REGISTRY",
           "compressions", "format_of"]
