"""The pipeline: one ordered list of stages over a shared context.

    binary -> dist.docker -> dist.native -> dist.kubernetes -> docker.image -> deploy -> package -> release

Each stage is a small object with ``name``, ``needs_engine(ctx)``,
``precheck(ctx)`` (fail before any work), ``plan(ctx)`` (pure: would it run,
and why or why not) and ``run(ctx)``; the work itself lives in the stage's
module (binary, assemble, dockerimage, deploy, packaging.build, release).
A task picks a slice of the list (``invoke build`` the first five,
``invoke package.deb`` dist.native and the .deb). ``run_stages`` runs every
precheck, opens the Docker engine once when a stage needs it, and hands it
down in the context (cibuildwheel's ``with OCIContainer(...)``); no stage opens
or closes it. Stages hand off through the workspace's manifest, never by
guessing each other's paths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .assemble import FLAVORS, AssembleResult, Flavor, assemble_tree, intact_digest, tree_fingerprint
from .config import BY_KEY, BuildConfig, RunOptions, require_app, require_binary, value_of
from .errors import ConfigError
from .log import logger, step
from .workspace import Given, Workspace

# --------------------------------------------------------------------------
# The context and the stage protocol
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class StageContext:
    """What every stage gets: the settings, the run options beside them, the workspace, the engine."""

    settings: BuildConfig
    workspace: Workspace
    run: RunOptions = field(default_factory=RunOptions)
    engine: Any = None  # a DockerEngine while run_stages holds it open, else None
    runner: Any = None  # the subprocess runner, when one is handed down (else the stages' own calls)

    @classmethod
    def for_config(cls, cfg: BuildConfig, **kw: Any) -> StageContext:
        return cls(settings=cfg, workspace=Workspace(cfg.dist_dir), run=cfg.run, **kw)


@dataclass(frozen=True)
class StagePlan:
    run: bool
    reason: str


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    plan: StagePlan
    result: Any = None


class Stage(Protocol):
    name: str

    def needs_engine(self, ctx: StageContext) -> bool: ...

    def precheck(self, ctx: StageContext) -> None: ...

    def plan(self, ctx: StageContext) -> StagePlan: ...

    def run(self, ctx: StageContext) -> Any: ...


class _Base:
    name = ""

    def needs_engine(self, ctx: StageContext) -> bool:
        return False

    def precheck(self, ctx: StageContext) -> None:
        return None

    def __repr__(self) -> str:
        return f"<stage {self.name}>"


# --------------------------------------------------------------------------
# The binary
# --------------------------------------------------------------------------


def current_binary(cfg: BuildConfig, ws: Workspace | None = None) -> Path:
    """The binary to assemble: --binary (or the last build's), else the one the binary stage recorded."""
    if cfg.binary is not None:
        return require_binary(cfg)
    ws = ws or Workspace(cfg.dist_dir)
    recorded = ws.manifest.get("binary", ws.built_binary.name)
    if recorded is not None and ws.resolve(recorded.path).is_file():
        return ws.resolve(recorded.path)
    built = ws.built_binary
    if built.is_file():
        return built
    raise ConfigError(
        f"binary is not set and {built} does not exist; run `invoke build` first, "
        "or pass --binary PATH to a prebuilt FrankenPHP binary"
    )


def built_binary_path(cfg: BuildConfig) -> Path:
    """Where the Docker build leaves the binary (the seed's osv4-prod)."""
    return Workspace(cfg.dist_dir).built_binary


class BinaryStage(_Base):
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
        from .binary import build_binary

        return build_binary(ctx.settings, ctx.engine)


# --------------------------------------------------------------------------
# The trees
# --------------------------------------------------------------------------


def assemble_flavor(cfg: BuildConfig, flavor: Flavor, binary: Path | None = None,
                    ws: Workspace | None = None) -> AssembleResult:
    ws = ws or Workspace(cfg.dist_dir)
    binary = binary or current_binary(cfg, ws)
    where = ws.tree(flavor)
    with step(f"Assembling {where}"):
        result = assemble_tree(cfg, flavor, binary, ws=ws)
    logger.info("    %s %s", where, "is up to date" if result.up_to_date else "written")
    return result


class AssembleStage(_Base):
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


class KubernetesStage(_Base):
    """dist/kubernetes: manifests from the settings; no binary (the pods run the runtime image)."""

    name = "dist.kubernetes"

    def precheck(self, ctx: StageContext) -> None:
        from .kubernetes import plan_kubernetes

        plan_kubernetes(ctx.settings, ws=ctx.workspace)  # a setting no manifest can carry fails before any work

    def plan(self, ctx: StageContext) -> StagePlan:
        from .kubernetes import FLAVOR, OPERATOR_FILES, plan_kubernetes

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
        from .kubernetes import assemble_kubernetes

        where = ctx.workspace.tree("kubernetes")
        with step(f"Assembling {where}"):
            result = assemble_kubernetes(ctx.settings, ws=ctx.workspace)
        logger.info("    %s %s", where, "is up to date" if result.up_to_date else "written")
        return result

    def up_to_date(self, ctx: StageContext) -> AssembleResult:
        from .kubernetes import assemble_kubernetes

        result = assemble_kubernetes(ctx.settings, ws=ctx.workspace)  # a no-op; records the tree if the manifest lacks it
        logger.info("    %s is up to date", result.path)
        return result


# --------------------------------------------------------------------------
# The runtime image and the deployment
# --------------------------------------------------------------------------


class ImageStage(_Base):
    """`docker.image`: the runtime image from dist/docker (its inputs label makes a rerun a no-op)."""

    name = "docker.image"

    def __init__(self, *, force: bool = False) -> None:
        self.force = force

    def needs_engine(self, ctx: StageContext) -> bool:
        return True

    def plan(self, ctx: StageContext) -> StagePlan:
        return StagePlan(True, "forced (--rebuild)" if self.force else "the image's inputs label decides")

    def run(self, ctx: StageContext) -> Any:
        from .dockerimage import build_runtime_image

        return build_runtime_image(ctx.settings, ctx.engine, force=self.force)


class DeployStage(_Base):
    """`deploy`: `docker compose up -d` in dist/docker with a validated env file (after docker.image)."""

    name = "deploy"

    def __init__(self) -> None:
        self._checked_tree: str | None = None  # the dist/docker the precheck validated Compose's view of

    def needs_engine(self, ctx: StageContext) -> bool:
        return True

    def precheck(self, ctx: StageContext) -> None:
        from .deploy import check_deployable, check_env

        env_file = check_env(ctx.settings)  # before any work: a bad env would only fail at the very end
        tree = intact_digest(ctx.settings, "docker", ctx.workspace)
        if tree is not None:  # assembled already: check what Compose gives the services, before the image
            check_deployable(ctx.settings, env_file)
            self._checked_tree = tree

    def plan(self, ctx: StageContext) -> StagePlan:
        return StagePlan(True, "start or update the stack")

    def run(self, ctx: StageContext) -> Any:
        from .deploy import deploy_compose

        same_tree = self._checked_tree is not None and self._checked_tree == intact_digest(
            ctx.settings, "docker", ctx.workspace)
        deploy_compose(ctx.settings, checked=same_tree)
        return True


# --------------------------------------------------------------------------
# Packages and releases
# --------------------------------------------------------------------------


class PackageStage(_Base):
    """`package.deb` / `package.rpm`: OS packages made from dist/native."""

    def __init__(self, formats: Sequence[str]) -> None:
        self.formats = tuple(formats)
        self.name = "package." + "+".join(self.formats)

    def precheck(self, ctx: StageContext) -> None:
        from .packaging.build import check_backends

        check_backends(ctx.settings, self.formats)  # type: ignore[arg-type]

    def plan(self, ctx: StageContext) -> StagePlan:
        from .packaging.build import plan_packages

        todo = [p.fmt for p in plan_packages(ctx.settings, self.formats, ws=ctx.workspace) if not p.up_to_date]  # type: ignore[arg-type]
        return StagePlan(bool(todo), f"{', '.join(todo)}: inputs changed" if todo else "up to date")

    def run(self, ctx: StageContext) -> Any:
        from .packaging.build import build_packages

        return build_packages(ctx.settings, self.formats, ws=ctx.workspace)  # type: ignore[arg-type]

    def up_to_date(self, ctx: StageContext) -> Any:
        from .packaging.build import build_packages

        return build_packages(ctx.settings, self.formats, ws=ctx.workspace)  # type: ignore[arg-type]


class ReleaseStage(_Base):
    """`release`: tarballs, packages, SHA256SUMS(.asc), notes, repositories in dist/release."""

    name = "release"

    def __init__(self, opts: Any) -> None:
        self.opts = opts

    def plan(self, ctx: StageContext) -> StagePlan:
        return StagePlan(True, "written afresh from the recorded trees and packages")

    def run(self, ctx: StageContext) -> Any:
        from .release import make_release

        return make_release(ctx.settings, self.opts, ctx.workspace)


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

# Never replayed: per-run intent, and the deployment env file (a later task names its own).
NOT_REPLAYED = frozenset({"env_file", "dist_dir"})
REPLAY_SOURCE = "the last build (manifest)"


def given_settings(cfg: BuildConfig, base_source: str | None = None) -> dict[str, Given]:
    """The settings this run was told on its command line (flags, `invoke demo`, or replayed from the last build)."""
    given: dict[str, Given] = {}
    for key, source in cfg.sources.items():
        setting = BY_KEY.get(key)
        if setting is None or setting.scope != "setting" or key in NOT_REPLAYED:
            continue
        if source.startswith(("flag", REPLAY_SOURCE)) or source == base_source:
            value = value_of(cfg, key)
            value = list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value
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


