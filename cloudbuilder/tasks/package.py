"""`invoke package.deb`, `package.rpm`, `package.all`: OS packages made from dist/native."""

from __future__ import annotations

from invoke import task

from ..log import logger
from ._common import HELP, load_config, user_errors

PACKAGE_HELP = {
    **{k: HELP[k] for k in ("app", "binary", "version")},
    "backend": "packager: auto (per format: fpm for xz, else nfpm, when installed and able), fpm or nfpm "
               "(default: package.backend)",
}


def _package(c, formats, app=None, binary=None, version=None, backend=None) -> None:
    from ..pipeline import AssembleStage, BinaryStage, PackageStage, StageContext, record_given, run_stages

    with user_errors():
        cfg = load_config(c, replay=True, app=app, binary=binary, version=version, **{"package.backend": backend})
        ctx = StageContext.for_config(cfg)
        outcomes = run_stages([BinaryStage(build=False), AssembleStage("native"), PackageStage(formats)], ctx)
        record_given(ctx.workspace, cfg)
    for r in outcomes[-1].result:
        if r.up_to_date:
            logger.info("  %s is up to date", r.path)
        else:
            logger.info("  %s written by %s in %.1fs", r.path, r.backend, r.seconds)


@task(help=PACKAGE_HELP)
def deb(c, app=None, binary=None, version=None, backend=None):
    """Build dist/packages/NAME_VERSION-RELEASE_ARCH.deb from dist/native (re-assembled only when stale).

    Defaults to what the last build made (its version, binary and settings: dist/manifest.json).
    """
    _package(c, ("deb",), app, binary, version, backend)


@task(help=PACKAGE_HELP)
def rpm(c, app=None, binary=None, version=None, backend=None):
    """Build dist/packages/NAME-VERSION-RELEASE.ARCH.rpm from dist/native (re-assembled only when stale).

    Defaults to what the last build made (its version, binary and settings: dist/manifest.json).
    """
    _package(c, ("rpm",), app, binary, version, backend)


@task(name="all", default=True, help=PACKAGE_HELP)
def all_(c, app=None, binary=None, version=None, backend=None):
    """Build the .deb and the .rpm in parallel (what is up to date is not rebuilt)."""
    _package(c, ("deb", "rpm"), app, binary, version, backend)
