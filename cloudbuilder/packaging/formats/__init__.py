"""Packaging organised by format: ``deb`` and ``rpm`` hold what differs between the two.

``format_of("deb")`` is the registry: the spec and the backends look a format
up here; the format modules import nothing but ``base``,
``cloudbuilder.reproducible`` and ``cloudbuilder.errors``, so every dependency points at them.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import FORMATS, Arch, Compression, Compressor, Format, FormatFile, PackageFormat
from .deb import DEB
from .rpm import RPM

REGISTRY: Mapping[Format, PackageFormat] = {"deb": DEB, "rpm": RPM}


def format_of(fmt: Format) -> PackageFormat:
    """The format named ``fmt`` (deb or rpm)."""
    return REGISTRY[fmt]


__all__ = ["Arch", "Compression", "Compressor", "FORMATS", "Format", "FormatFile", "PackageFormat", "REGISTRY",
           "format_of"]
