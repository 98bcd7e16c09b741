"""The `binary` stage: the FrankenPHP binary (--binary, or the Docker build in ``cloudbuilder.binary``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import BuildConfig, require_app
from ..workspace import Workspace
from .base import StageBase, StageContext, StagePlan, current_binary


def built_binary_path(cfg: BuildConfig) -> Path:
    """Where the Docker build leaves the binary (the seed's osv4-prod)."""
    return Workspace(cfg.dist_dir).built_binary


class BinaryStage(StageBase):
    """The FrankenPHP binary: --binary, or the Docker build (``build=False``: only the last build's)."""

    name = "binary"

    def __init__(self, *, build: bool = True) -> None:
        self.build = build

    def needs_engine(self, ctx: StageContext) -> bool:
        return self.build and ctx.settings.binary is None

    def precheck(self, ctx: StageContext) -> None:
        if self.build:
            require_app(ctx.settings)

    def plan(self, ctx: StageContext) -> StagePlan:
        cfg = ctx.settings
        if cfg.binary is not None:
            return StagePlan(False, f"using {cfg.binary} ({cfg.source_of('binary')})")
        if not self.build:
            binary = current_binary(cfg, ctx.workspace)
            return StagePlan(False, f"using {ctx.workspace.relative(binary)} from the last build (manifest)")
        return StagePlan(True, "the base image label and the embed key decide what is rebuilt")

    def run(self, ctx: StageContext) -> Any:
        from ..binary import build_binary

        return build_binary(ctx.settings, ctx.engine)
