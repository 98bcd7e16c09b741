"""`invoke clean`: remove outputs."""

from __future__ import annotations

import shutil

from invoke import task

from ._common import load_config, user_errors
from ..log import logger


@task
def clean(c):
    """Remove dist/ (every output of this tool) and this dist dir's orangescrum-cloud-deps:<hash> image tag
    (the cached composer-install layer the binary builds pin; other checkouts' tags stay). Deployed
    containers, the runtime and builder images are not touched; without a Docker engine only dist/ goes."""
    from ..binary import remove_deps_tag
    from ..engine import DockerEngine
    from ..errors import PrerequisiteError

    with user_errors():
        cfg = load_config(c)
        if cfg.dist_dir.exists():
            shutil.rmtree(cfg.dist_dir)
            logger.info("removed %s", cfg.dist_dir)
        else:
            logger.info("nothing to clean: %s does not exist", cfg.dist_dir)
        try:
            engine = DockerEngine(timeout=60)
        except PrerequisiteError as exc:
            logger.info("no Docker engine, so no image tag was removed: %s", str(exc).split(";")[0])
            return
        with engine:
            tag = remove_deps_tag(cfg.dist_dir, engine)
        if tag:
            logger.info("removed the image tag %s", tag)
