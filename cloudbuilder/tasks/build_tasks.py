"""`invoke build`: the whole pipeline (the seed's build.py)."""

from __future__ import annotations

from invoke import task

from ..log import logger
from ._common import HELP, load_config, user_errors
from .check import run_check


@task(
    default=True,
    help={
        **HELP,
        "skip_deploy": "stop after the artifacts; do not start the Docker deployment",
        "skip_base": "reuse whatever base image exists, even if its inputs changed",
        "rebuild_base": "rebuild the base image (compiled PHP) even if it is up to date",
        "keep_package": "keep the intermediate Docker build context under dist/build/",
        "check": "only check prerequisites and config (same as `invoke check`)",
    },
)
def build(c, app=None, binary=None, version=None, env_file=None, skip_deploy=False,
          skip_base=False, rebuild_base=False, keep_package=False, check=False):
    """Build everything: binary, dist/docker, dist/native, dist/kubernetes; then the runtime image and the deployment unless --skip-deploy.

    Records what it built, and the settings it was given, in dist/manifest.json:
    the later tasks (package.*, docker.image, release) default to them.
    """
    flags = dict(app=app, binary=binary, version=version, env_file=env_file, skip_deploy=skip_deploy)
    if check:
        run_check(c, **flags)
        return
    from ..pipeline import run_build

    with user_errors():
        cfg = load_config(c, **flags, skip_base=skip_base, rebuild_base=rebuild_base,
                          keep_package=keep_package)
        summary = run_build(cfg)
    if summary.up_to_date:
        logger.info("Everything is up to date (version %s).", cfg.version)
    else:
        logger.info("Build complete (version %s):", cfg.version)
    for tree in summary.trees:
        logger.info("  %-8s %s", tree.flavor, tree.path)
