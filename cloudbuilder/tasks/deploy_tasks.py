"""`invoke deploy`: start the Docker deployment (the seed's build.py did this last)."""

from __future__ import annotations

from invoke import task

from ._common import HELP, load_config, user_errors


@task(help={"env_file": HELP["env_file"] + " (default: dist/docker/.env)",
            "no_image": "do not build the runtime image first (it must exist)",
            "swarm": "deploy dist/docker as a Docker Swarm stack (stack.migrate.yaml, then stack.yaml) instead",
            "rollback": "with --swarm: return app, queue and recurring to their previous version"})
def deploy(c, env_file=None, no_image=False, swarm=False, rollback=False):
    """Validate the env file, build the image (docker.image), `docker compose up -d` in dist/docker, wait until healthy.

    Defaults to what the last build made (its version and settings: dist/manifest.json).

    An invalid env file is refused with the validator's report (key names and
    rules, never values) before anything is built or started. Set
    COMPOSE_PROJECT_NAME to run a second stack next to the default `orangescrum`.

    --swarm: on a swarm manager, re-assemble dist/docker if its settings changed
    (swarm.*, scale.replicas), run the migration job and wait until it
    completed, then `docker stack deploy` stack.yaml (swarm.stack_name) and wait
    until every service converged (the web replicas roll over one at a time,
    health-gated); the keys of swarm.secrets travel as Docker secrets.
    --swarm --rollback: `docker service rollback` app, queue and recurring.
    """
    from ..pipeline import DeployStage, ImageStage, StageContext, record_given, run_stages

    with user_errors():
        if rollback and not swarm:
            from ..errors import ConfigError

            raise ConfigError("--rollback needs --swarm (a Compose deployment rolls back by "
                              "building and deploying the previous version)")
        cfg = load_config(c, replay=True, env_file=env_file)
        if swarm:
            from ..swarm import deploy_swarm, rollback_swarm

            if rollback:
                rollback_swarm(cfg)
                return
            from ..pipeline import AssembleStage

            # The stack files carry settings (swarm.*, scale.replicas): dist/docker is
            # re-assembled when they changed since the build (a no-op otherwise).
            run_stages([AssembleStage("docker")] + ([] if no_image else [ImageStage()]), StageContext.for_config(cfg))
            deploy_swarm(cfg)
            return
        ctx = StageContext.for_config(cfg)
        run_stages([DeployStage()] if no_image else [ImageStage(), DeployStage()], ctx)
        record_given(ctx.workspace, cfg)
