"""`invoke deploy`: start the Docker deployment (the seed's build.py did this last)."""

from __future__ import annotations

from invoke import task

from ._common import HELP, load_config, user_errors


@task(help={"env_file": HELP["env_file"] + " (default: dist/docker/.env)",
            "no_image": "do not build the runtime image first (it must exist)"})
def deploy(c, env_file=None, no_image=False):
    """Validate the env file, build the image (docker.image), `docker compose up -d` in dist/docker, wait until healthy.

    Defaults to what the last build made (its version and settings: dist/manifest.json).

    An invalid env file is refused with the validator's report (key names and
    rules, never values) before anything is built or started. Set
    COMPOSE_PROJECT_NAME to run a second stack next to the default `orangescrum`.
    """
    from ..pipeline import DeployStage, ImageStage, StageContext, record_given, run_stages

    with user_errors():
        cfg = load_config(c, replay=True, env_file=env_file)
        ctx = StageContext.for_config(cfg)
        run_stages([DeployStage()] if no_image else [ImageStage(), DeployStage()], ctx)
        record_given(ctx.workspace, cfg)
