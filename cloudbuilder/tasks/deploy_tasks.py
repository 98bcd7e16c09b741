"""`invoke deploy`: start the Docker deployment (the seed's build.py did this last)."""

from __future__ import annotations

from invoke import task

from ._common import HELP, load_config, user_errors


@task(help={"env_file": HELP["env_file"] + " (default: dist/docker/.env)",
            "no_image": "do not rebuild the runtime image first"})
def deploy(c, env_file=None, no_image=False):
    """`docker compose up -d` in dist/docker; refuses to start with an invalid env file."""
    from ..deploy import deploy_compose

    with user_errors():
        cfg = load_config(c, env_file=env_file)
        deploy_compose(cfg, build_image=not no_image)
