"""The `deploy` stage: `docker compose up -d` in dist/docker (the work: ``cloudbuilder.deploy``)."""

from __future__ import annotations

from typing import Any

from ..assemble import intact_digest
from .base import StageBase, StageContext, StagePlan


class DeployStage(StageBase):
    """`deploy`: `docker compose up -d` in dist/docker with a validated env file (after docker.image)."""

    name = "deploy"

    def __init__(self) -> None:
        self._checked_tree: str | None = None  # the dist/docker the precheck validated Compose's view of

    def needs_engine(self, ctx: StageContext) -> bool:
        return True

    def precheck(self, ctx: StageContext) -> None:
        from ..deploy import check_deployable, check_env

        env_file = check_env(ctx.settings)  # before any work: a bad env would only fail at the very end
        tree = intact_digest(ctx.settings, "docker", ctx.workspace)
        if tree is not None:  # assembled already: check what Compose gives the services, before the image
            check_deployable(ctx.settings, env_file)
            self._checked_tree = tree

    def plan(self, ctx: StageContext) -> StagePlan:
        return StagePlan(True, "start or update the stack")

    def run(self, ctx: StageContext) -> Any:
        from ..deploy import deploy_compose

        same_tree = self._checked_tree is not None and self._checked_tree == intact_digest(
            ctx.settings, "docker", ctx.workspace)
        deploy_compose(ctx.settings, checked=same_tree)
        return True
