"""setuptools hook: the builder's own sources travel inside the wheel.

Templates, Dockerfiles, helper scripts and the example app live at the top of
the repository (common/, docker/, native/, builder/, packaging/, examples/);
``cloudbuilder.resources.source_root()`` finds them there in a checkout and in
``cloudbuilder/_resources/`` in an installed wheel.  This hook copies them to
that place in the wheel at build time, so the repository layout stays as it is.
Metadata, dependencies and the entry point are in setup.cfg.
"""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# One list, in cloudbuilder/resources.py (run as a file: the package is not installed yet).
RESOURCE_DIRS = runpy.run_path(str(HERE / "cloudbuilder" / "resources.py"))["RESOURCE_DIRS"]
# Never shipped: caches, an operator's .env, what composer or a run left in the example app.
SKIP = {"__pycache__", ".env", "vendor", "tmp", "logs", ".pytest_cache"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in SKIP or n.endswith((".pyc", ".pyo"))}


class BuildPyWithResources(build_py):
    """build_py, plus the resource directories copied to cloudbuilder/_resources/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install uses the checkout itself
        dest = Path(self.build_lib) / "cloudbuilder" / "_resources"
        shutil.rmtree(dest, ignore_errors=True)
        for name in RESOURCE_DIRS:
            src = HERE / name
            if not src.is_dir():
                raise SystemExit(f"setup.py: {src} is missing; build from a checkout or an sdist of it")
            shutil.copytree(src, dest / name, ignore=_ignore, symlinks=False)


setup(cmdclass={"build_py": BuildPyWithResources})
