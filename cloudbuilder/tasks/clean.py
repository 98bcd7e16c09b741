"""`invoke clean`: remove outputs."""

from __future__ import annotations

import shutil

from invoke import task

from ._common import load_config, user_errors
from ..log import logger


@task
def clean(c):
    """Remove dist/ (every output of this tool); deployed containers are not touched."""
    with user_errors():
        cfg = load_config(c)
        if cfg.dist_dir.exists():
            shutil.rmtree(cfg.dist_dir)
            logger.info("removed %s", cfg.dist_dir)
        else:
            logger.info("nothing to clean: %s does not exist", cfg.dist_dir)
