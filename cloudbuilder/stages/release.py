"""The `release` stage: tarballs, packages, checksums, repositories (the work: ``cloudbuilder.release``)."""

from __future__ import annotations

from typing import Any

from .base import StageBase, StageContext, StagePlan


class ReleaseStage(StageBase):
    """`release`: tarballs, packages, SHA256SUMS(.asc), notes, repositories in dist/release."""

    name = "release"

    def __init__(self, opts: Any) -> None:
        self.opts = opts

    def plan(self, ctx: StageContext) -> StagePlan:
        return StagePlan(True, "written afresh from the recorded trees and packages")

    def run(self, ctx: StageContext) -> Any:
        from ..release import make_release

        return make_release(ctx.settings, self.opts, ctx.workspace)
