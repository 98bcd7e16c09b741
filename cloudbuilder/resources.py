"""Where the builder's own sources live (templates, Dockerfiles, scripts).

In a checkout they sit at the repository root next to ``cloudbuilder/``; in an
installed wheel they travel inside the package as ``cloudbuilder/_resources``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

# What travels inside the wheel (setup.py copies these to cloudbuilder/_resources).
RESOURCE_DIRS = ("common", "docker", "native", "kubernetes", "builder", "packaging", "examples")


@cache
def source_root() -> Path:
    """The directory holding ``common/``, ``docker/``, ``native/``, ``builder/``, ``packaging/``."""
    package_dir = Path(__file__).resolve().parent
    bundled = package_dir / "_resources"
    if (bundled / "common").is_dir():
        return bundled
    return package_dir.parent
