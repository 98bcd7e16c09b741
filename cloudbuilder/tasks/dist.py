"""`invoke dist.docker` / `invoke dist.native` / `invoke dist.kubernetes`: re-assemble one deployment tree."""

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


@task(help={"version": HELP["version"], "env_file": "deployment env file: its secret keys go to secret.yaml (mode 0600), "
            "the others to the ConfigMap; its OSCB_* keys configure the build"})
def kubernetes(c, version=None, env_file=None):
    """Re-assemble dist/kubernetes (manifests for `kubectl apply -k`) from kubernetes/ and the settings; no binary needed.

    The pods run the image `docker.image` tags (or kubernetes.image). Without --env-file the
    ConfigMap and secret.yaml carry the placeholders of .env.example (an existing secret.yaml is kept).
    """
    from ..pipeline import KubernetesStage, StageContext, record_given, run_stages

    with user_errors():
        cfg = load_config(c, replay=True, version=version, env_file=env_file)
        ctx = StageContext.for_config(cfg)
        run_stages([KubernetesStage()], ctx)
        record_given(ctx.workspace, cfg)
