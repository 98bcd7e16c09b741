"""`invoke docker.image`: the runtime image from dist/docker."""

from __future__ import annotations

from invoke import task

from ._common import HELP, load_config, user_errors


@task(help={"version": HELP["version"],
            "rebuild": "build even if an image from the same inputs already has the tag"})
def image(c, version=None, rebuild=False):
    """Build the runtime image from dist/docker; tag it VERSION and latest (no-op when up to date)."""
    from ..dockerimage import build_runtime_image

    with user_errors():
        cfg = load_config(c, version=version)
        build_runtime_image(cfg, force=rebuild)
