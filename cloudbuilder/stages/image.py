"""The `docker.image` stage: the runtime image from dist/docker (the work: ``cloudbuilder.dockerimage``)."""

from __future__ import annotations

from typing import Any

from .base import StageBase, StageContext, StagePlan


class ImageStage(StageBase):
    """`docker.image`: the runtime image from dist/docker (its inputs label makes a rerun a no-op)."""

    name = "docker.image"

    def __init__(self, *, force: bool = False) -> None:
        self.force = force

    def needs_engine(self, ctx: StageContext) -> bool:
        return True

    def plan(self, ctx: StageContext) -> StagePlan:
        return StagePlan(True, "forced (--rebuild)" if self.force else "the image's inputs label decides")

    def run(self, ctx: StageContext) -> Any:
        from ..dockerimage import build_runtime_image

        return build_runtime_image(ctx.settings, ctx.engine, force=self.force)
