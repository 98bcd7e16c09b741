"""The `dist.kubernetes` stage: manifests from the settings (the work: ``cloudbuilder.kubernetes``).

No binary: the pods run the runtime image the docker.image stage tags.
"""

from __future__ import annotations

from ..assemble import AssembleResult
from ..log import logger, step
from .base import StageBase, StageContext, StagePlan


class KubernetesStage(StageBase):
    """dist/kubernetes: Deployments, the migration Job, the CronJob, Service, ... from the settings."""

    name = "dist.kubernetes"

    def precheck(self, ctx: StageContext) -> None:
        from ..kubernetes import plan_kubernetes

        plan_kubernetes(ctx.settings, ws=ctx.workspace)  # a setting no manifest can carry fails before any work

    def plan(self, ctx: StageContext) -> StagePlan:
        from ..kubernetes import FLAVOR, OPERATOR_FILES, plan_kubernetes

        plan, ws = plan_kubernetes(ctx.settings, ws=ctx.workspace), ctx.workspace
        if plan.operator_settings:
            return StagePlan(True, f"secret.yaml is written from {plan.settings_file}")
        stamp = ws.stamp(FLAVOR)
        if stamp is None:
            return StagePlan(True, "not assembled yet")
        if stamp.inputs == plan.fingerprint() and stamp.intact(plan.dest, skip=OPERATOR_FILES):
            return StagePlan(False, "up to date")
        return StagePlan(True, "its sources or settings changed, or the tree was edited")

    def run(self, ctx: StageContext) -> AssembleResult:
        from ..kubernetes import assemble_kubernetes

        where = ctx.workspace.tree("kubernetes")
        with step(f"Assembling {where}"):
            result = assemble_kubernetes(ctx.settings, ws=ctx.workspace)
        logger.info("    %s %s", where, "is up to date" if result.up_to_date else "written")
        return result

    def up_to_date(self, ctx: StageContext) -> AssembleResult:
        from ..kubernetes import assemble_kubernetes

        result = assemble_kubernetes(ctx.settings, ws=ctx.workspace)  # a no-op; records the tree if the manifest lacks it
        logger.info("    %s is up to date", result.path)
        return result
