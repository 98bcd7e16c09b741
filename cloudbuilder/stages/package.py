"""The `package.deb` / `package.rpm` stage: OS packages from dist/native (the work: ``cloudbuilder.packaging``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import StageBase, StageContext, StagePlan


class PackageStage(StageBase):
    """`package.deb` / `package.rpm`: OS packages made from dist/native."""

    def __init__(self, formats: Sequence[str]) -> None:
        self.formats = tuple(formats)
        self.name = "package." + "+".join(self.formats)

    def precheck(self, ctx: StageContext) -> None:
        from ..packaging.build import check_backends

        check_backends(ctx.settings, self.formats)  # type: ignore[arg-type]

    def plan(self, ctx: StageContext) -> StagePlan:
        from ..packaging.build import plan_packages

        todo = [p.fmt for p in plan_packages(ctx.settings, self.formats, ws=ctx.workspace) if not p.up_to_date]  # type: ignore[arg-type]
        return StagePlan(bool(todo), f"{', '.join(todo)}: inputs changed" if todo else "up to date")

    def run(self, ctx: StageContext) -> Any:
        from ..packaging.build import build_packages

        return build_packages(ctx.settings, self.formats, ws=ctx.workspace)  # type: ignore[arg-type]

    def up_to_date(self, ctx: StageContext) -> Any:
        from ..packaging.build import build_packages

        return build_packages(ctx.settings, self.formats, ws=ctx.workspace)  # type: ignore[arg-type]
