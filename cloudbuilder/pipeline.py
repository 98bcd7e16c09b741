"""The whole pipeline, one stage after the other: app -> binary -> trees -> deploy.

Each stage is skipped when its inputs have not changed; the summary says which
ran, so a second `invoke build` can say that everything is up to date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .assemble import FLAVORS, AssembleResult, Flavor, assemble_tree
from .config import BuildConfig, require_app, require_binary
from .errors import ConfigError
from .log import logger, step


def built_binary_path(cfg: BuildConfig) -> Path:
    """Where the Docker build leaves the binary (the seed's osv4-prod)."""
    return cfg.dist_dir / "build" / "osv4-prod"


def current_binary(cfg: BuildConfig) -> Path:
    """The binary to package: --binary, else the last one `invoke build` made."""
    if cfg.binary is not None:
        return require_binary(cfg)
    built = built_binary_path(cfg)
    if built.is_file():
        return built
    raise ConfigError(
        f"binary is not set and {built} does not exist; run `invoke build` first, "
        "or pass --binary PATH to a prebuilt FrankenPHP binary"
    )


def assemble_flavor(cfg: BuildConfig, flavor: Flavor, binary: Path | None = None) -> AssembleResult:
    binary = binary or current_binary(cfg)
    where = cfg.dist_dir / flavor
    with step(f"Assembling {where}"):
        result = assemble_tree(cfg, flavor, binary)
    logger.info("    %s %s", where, "is up to date" if result.up_to_date else "written")
    return result


@dataclass
class BuildSummary:
    binary: Path | None = None
    binary_rebuilt: bool = False
    trees: list[AssembleResult] = field(default_factory=list)
    deployed: bool = False

    @property
    def up_to_date(self) -> bool:
        return not self.binary_rebuilt and all(t.up_to_date for t in self.trees) and not self.deployed


def build_binary_stage(cfg: BuildConfig) -> tuple[Path, bool]:
    """(binary, rebuilt?) from --binary or the Docker build."""
    if cfg.binary is not None:
        return require_binary(cfg), False
    from .binary import build_binary

    result = build_binary(cfg)
    return result.path, result.rebuilt


def run_build(cfg: BuildConfig, *, deploy: bool | None = None) -> BuildSummary:
    """Run every stage; ``deploy`` defaults to ``not cfg.run.skip_deploy``."""
    require_app(cfg)
    deploy = deploy if deploy is not None else not cfg.run.skip_deploy
    if deploy:  # before any work: a missing or invalid env would only fail at the very end
        from .deploy import deploy_env_file
        from .envcheck import require_valid_env

        require_valid_env(deploy_env_file(cfg))
    summary = BuildSummary()
    summary.binary, summary.binary_rebuilt = build_binary_stage(cfg)
    for flavor in FLAVORS:
        summary.trees.append(assemble_flavor(cfg, flavor, summary.binary))
    if deploy:
        from .deploy import deploy_compose

        deploy_compose(cfg)
        summary.deployed = True
    return summary
