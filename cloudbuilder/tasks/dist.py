"""`invoke dist.docker` / `invoke dist.native`: re-assemble one deployment tree."""

from __future__ import annotations

from invoke import task

from ._common import HELP, load_config, user_errors


def _assemble(c, flavor, **flags) -> None:
    from ..pipeline import AssembleStage, BinaryStage, StageContext, record_given, run_stages

    with user_errors():
        cfg = load_config(c, replay=True, **flags)
        ctx = StageContext.for_config(cfg)
        run_stages([BinaryStage(build=False), AssembleStage(flavor)], ctx)
        record_given(ctx.workspace, cfg)


@task(help={k: HELP[k] for k in ("app", "binary", "version")})
def docker(c, app=None, binary=None, version=None):
    """Re-assemble dist/docker from common/ + docker/ and the binary (default: the last build's settings)."""
    _assemble(c, "docker", app=app, binary=binary, version=version)


@task(help={k: HELP[k] for k in ("app", "binary", "version")})
def native(c, app=None, binary=None, version=None):
    """Re-assemble dist/native from common/ + native/ and the binary (default: the last build's settings)."""
    _assemble(c, "native", app=app, binary=binary, version=version)
