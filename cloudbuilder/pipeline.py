"""The pipeline: one ordered list of stages over a shared context, and the orchestrator.

    binary -> dist.docker -> dist.native -> dist.kubernetes -> docker.image -> deploy -> package -> release

Each stage is a small object in its own module under ``cloudbuilder/stages/``
(``binary``, ``assemble``, ``kubernetes``, ``image``, ``deploy``, ``package``, ``release``) with
``name``, ``needs_engine(ctx)``, ``precheck(ctx)`` (fail before any work),
``plan(ctx)`` (pure: would it run, and why or why not) and ``run(ctx)``; the
work itself lives in the module the stage names (binary, assemble, kubernetes,
dockerimage, deploy, packaging.build, release). A task picks a slice of the
list (``invoke build`` the first six, ``invoke package.deb`` dist.native and
the .deb). ``run_stages`` runs every precheck, opens the Docker engine once
when a stage needs it, and hands it down in the context (cibuildwheel's
``with OCIContainer(...)``); no stage opens or closes it. Stages hand off
through the workspace's manifest, never by guessing each other's paths.
This module also records what a build was told, for later tasks to replay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .assemble import FLAVORS, AssembleResult
from .config import BY_KEY, BuildConfig, json_value, value_of
from .log import logger
from .stages.assemble import AssembleStage, assemble_flavor
from .stages.base import Stage, StageBase, StageContext, StageOutcome, StagePlan, current_binary
from .stages.binary import BinaryStage, built_binary_path
from .stages.deploy import DeployStage
from .stages.image import ImageStage
from .stages.kubernetes import KubernetesStage
from .stages.package import PackageStage
from .stages.release import ReleaseStage
from .workspace import Given, Workspace

# The stages, in pipeline order (a task runs a slice of this list).
STAGE_TYPES = (BinaryStage, AssembleStage, KubernetesStage, ImageStage, DeployStage, PackageStage, ReleaseStage)

# --------------------------------------------------------------------------
# The orchestrator
# --------------------------------------------------------------------------


def build_stages(*, deploy: bool) -> list[Stage]:
    """`invoke build` / `invoke demo`: the binary, the trees and dist/kubernetes, then the image and the deployment."""
    stages: list[Stage] = [BinaryStage(), *(AssembleStage(f) for f in FLAVORS), KubernetesStage()]
    if deploy:
        stages += [ImageStage(), DeployStage()]
    return stages


def run_stages(stages: Sequence[Stage], ctx: StageContext, *,
               open_engine: Callable[[], Any] | None = None) -> list[StageOutcome]:
    """Run every precheck, then each stage in order (the ones whose plan says so).

    The engine is opened once, when a stage needs it, and handed to all of them.
    """
    for stage in stages:
        stage.precheck(ctx)
    if ctx.engine is None and any(s.needs_engine(ctx) for s in stages):
        if open_engine is None:
            from .engine import DockerEngine as open_engine  # noqa: N813 - a factory
        with open_engine() as engine:
            return _run(stages, dataclasses.replace(ctx, engine=engine))
    return _run(stages, ctx)


def _run(stages: Sequence[Stage], ctx: StageContext) -> list[StageOutcome]:
    outcomes = []
    for stage in stages:
        plan = stage.plan(ctx)
        if plan.run:
            result = stage.run(ctx)
        else:
            logger.info("==> %s: skipped (%s)", stage.name, plan.reason)
            finish = getattr(stage, "up_to_date", None)
            result = finish(ctx) if finish else None
        outcomes.append(StageOutcome(stage.name, plan, result))
    ctx.workspace.save()
    return outcomes


# --------------------------------------------------------------------------
# What the last build was told (replayed by later tasks)
# --------------------------------------------------------------------------

# Never replayed: per-run intent, the dist dir (the manifest is in it), and the env file's path.
# What the env file *configured* (its OSCB_* keys) is replayed like a flag: a later task does not
# read the file again (it holds the deployment's secrets and need not exist any more: CI writes it
# for one step), and `deploy` names its own env file (else dist/docker/.env).
NOT_REPLAYED = frozenset({"env_file", "dist_dir"})
REPLAY_SOURCE = "the last build (manifest)"
# The sources whose settings a later task would not see again: flags, and the env file's OSCB_* keys
# (config.layers_from labels them "env file PATH OSCB_KEY").  The environment and invoke.yaml are still
# there for the next task.
GIVEN_SOURCES = ("flag", "env file ", REPLAY_SOURCE)


def given_settings(cfg: BuildConfig, base_source: str | None = None) -> dict[str, Given]:
    """The settings this run was told on its command line or in its env file (`invoke demo`'s too, or
    replayed from the last build)."""
    given: dict[str, Given] = {}
    for key, source in cfg.sources.items():
        setting = BY_KEY.get(key)
        if setting is None or setting.scope != "setting" or key in NOT_REPLAYED:
            continue
        if source.startswith(GIVEN_SOURCES) or source == base_source:
            value = json_value(value_of(cfg, key))
            original = source.removeprefix(REPLAY_SOURCE + ": ")
            given[key] = Given(value, original)
    return given


def record_given(ws: Workspace, cfg: BuildConfig, base_source: str | None = None) -> None:
    ws.manifest.given = given_settings(cfg, base_source)
    ws.manifest.save()


def replay_values(ws: Workspace) -> tuple[dict[str, Any], dict[str, str]]:
    """(values, labels) of the last build's given settings, for a settings layer."""
    given = ws.manifest.given
    values = {k: g.value for k, g in given.items() if k in BY_KEY}
    labels = {k: f"{REPLAY_SOURCE}: {given[k].source}" for k in values}
    return values, labels


# --------------------------------------------------------------------------
# `invoke build`
# --------------------------------------------------------------------------


@dataclass
class BuildSummary:
    binary: Path | None = None
    binary_rebuilt: bool = False
    trees: list[AssembleResult] = field(default_factory=list)
    deployed: bool = False

    @property
    def up_to_date(self) -> bool:
        return not self.binary_rebuilt and all(t.up_to_date for t in self.trees) and not self.deployed


def summarize(outcomes: Sequence[StageOutcome], ctx: StageContext) -> BuildSummary:
    summary = BuildSummary()
    for o in outcomes:
        if o.stage == "binary":
            summary.binary = o.result.path if o.result is not None else current_binary(ctx.settings, ctx.workspace)
            summary.binary_rebuilt = bool(o.result is not None and o.result.rebuilt)
        elif o.stage.startswith("dist.") and o.result is not None:
            summary.trees.append(o.result)
        elif o.stage == "deploy":
            summary.deployed = bool(o.result)
    return summary


def run_build(cfg: BuildConfig, *, deploy: bool | None = None, base_source: str | None = None,
              engine: Any = None, open_engine: Callable[[], Any] | None = None) -> BuildSummary:
    """Run every stage of `invoke build`; ``deploy`` defaults to ``not cfg.run.skip_deploy``.

    ``engine``: one the caller holds open already (`invoke demo`); else opened here when needed.
    """
    deploy = deploy if deploy is not None else not cfg.run.skip_deploy
    ctx = StageContext.for_config(cfg, engine=engine)
    outcomes = run_stages(build_stages(deploy=deploy), ctx, open_engine=open_engine)
    record_given(ctx.workspace, cfg, base_source)
    return summarize(outcomes, ctx)


__all__ = [
    "AssembleStage", "BinaryStage", "BuildSummary", "DeployStage", "ImageStage", "KubernetesStage", "PackageStage",
    "ReleaseStage",
    "STAGE_TYPES", "Stage", "StageBase", "StageContext", "StageOutcome", "StagePlan", "assemble_flavor",
    "build_stages", "built_binary_path", "current_binary", "given_settings", "record_given", "replay_values",
    "run_build", "run_stages", "summarize",
]
