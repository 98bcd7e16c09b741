"""`invoke docker.image`: the runtime image from dist/docker."""

from __future__ import annotations

from invoke import task

from ._common import HELP, load_config, user_errors


@task(help={"version": HELP["version"],
            "rebuild": "build even if an image from the same inputs already has the tag"})
def image(c, version=None, rebuild=False):
    """Build the runtime image from dist/docker; tag it VERSION and latest (no-op when up to date).

    Defaults to what the last build made (its version and settings: dist/manifest.json).
    """
    from ..pipeline import ImageStage, StageContext, record_given, run_stages

    with user_errors():
        cfg = load_config(c, replay=True, version=version)
        ctx = StageContext.for_config(cfg)
        run_stages([ImageStage(force=rebuild)], ctx)
        record_given(ctx.workspace, cfg)
