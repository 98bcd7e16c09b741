"""What every stage shares: the context it is handed, its plan, the protocol, the recorded binary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..config import BuildConfig, RunOptions, require_binary
from ..errors import ConfigError
from ..workspace import Workspace


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


class StageBase:
    """Defaults: no engine, nothing to check before the work."""

    name = ""

    def needs_engine(self, ctx: StageContext) -> bool:
        return False

    def precheck(self, ctx: StageContext) -> None:
        return None

    def __repr__(self) -> str:
        return f"<stage {self.name}>"


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
