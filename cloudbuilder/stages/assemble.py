"""The `dist.docker` and `dist.native` stages: a deployment tree (the work: ``cloudbuilder.assemble``)."""

from __future__ import annotations

from pathlib import Path

from ..assemble import AssembleResult, Flavor, assemble_tree, intact_digest, tree_fingerprint
from ..config import BuildConfig
from ..log import logger, step
from ..workspace import Workspace
from .base import StageBase, StageContext, StagePlan, current_binary


def assemble_flavor(cfg: BuildConfig, flavor: Flavor, binary: Path | None = None,
                    ws: Workspace | None = None) -> AssembleResult:
    ws = ws or Workspace(cfg.dist_dir)
    binary = binary or current_binary(cfg, ws)
    where = ws.tree(flavor)
    with step(f"Assembling {where}"):
        result = assemble_tree(cfg, flavor, binary, ws=ws)
    logger.info("    %s %s", where, "is up to date" if result.up_to_date else "written")
    return result


class AssembleStage(StageBase):
    """dist/docker or dist/native from common/ + the flavor's sources and the binary."""

    def __init__(self, flavor: Flavor) -> None:
        self.flavor = flavor
        self.name = f"dist.{flavor}"

    def plan(self, ctx: StageContext) -> StagePlan:
        cfg, ws = ctx.settings, ctx.workspace
        binary = current_binary(cfg, ws)
        _plan, digest = tree_fingerprint(cfg, self.flavor, binary, ws.hashes)
        ws.hashes.save()
        current = intact_digest(cfg, self.flavor, ws)
        if current == digest:
            return StagePlan(False, "up to date")
        if current is None:
            stamp = ws.stamp(self.flavor)
            return StagePlan(True, "not assembled yet" if stamp is None else "the tree was edited or removed")
        recorded = ws.manifest.get("tree", self.flavor)
        if recorded is not None and recorded.version != cfg.version:
            return StagePlan(True, f"the version changed ({recorded.version} -> {cfg.version})")
        return StagePlan(True, "its sources, settings or binary changed")

    def run(self, ctx: StageContext) -> AssembleResult:
        return assemble_flavor(ctx.settings, self.flavor, ws=ctx.workspace)

    def up_to_date(self, ctx: StageContext) -> AssembleResult:
        tree = ctx.workspace.tree(self.flavor)
        recorded = ctx.workspace.manifest.get("tree", self.flavor)
        version = recorded.version if recorded else ctx.settings.version
        logger.info("    %s is up to date: using dist/%s %s from the last build (manifest)", tree, self.flavor, version)
        return AssembleResult(self.flavor, tree, up_to_date=True)
