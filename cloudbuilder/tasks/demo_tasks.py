"""`invoke demo`: the full pipeline, offline, on examples/orangescrum-demo."""

from __future__ import annotations


from invoke import task

from ..log import configure_cli_logging, logger
from ._common import load_config, user_errors


@task(help={"skip_deploy": "only build; do not start the demo stack",
            "env_file": "deployment env file (default: dist/demo/demo.env, generated with random secrets)"})
def demo(c, skip_deploy=False, env_file=None):
    """Run the whole pipeline offline on the example app with the stand-in builder."""
    from .. import demo as d
    from ..engine import DockerEngine
    from ..pipeline import run_build
    from ..workspace import Workspace

    configure_cli_logging()
    with user_errors():
        with DockerEngine() as engine:  # opened once, for the demo's images and every stage
            base = d.demo_layer(engine.client)
            cfg = load_config(c, base_layer=base, env_file=env_file, skip_deploy=skip_deploy)
            if not skip_deploy and cfg.env_file is None:
                path = d.write_demo_env(Workspace(cfg.dist_dir).demo_env, cfg.docker.host_port)
                cfg = load_config(c, base_layer=base, env_file=str(path))
            summary = run_build(cfg, deploy=not skip_deploy, base_source=base.source, engine=engine)
        healthy = True
        if not skip_deploy:
            url = f"http://{cfg.docker.bind_address}:{cfg.docker.host_port}/healthz"
            healthy = d.wait_healthy(url)
            logger.info("==> %s %s", url, "answers ok" if healthy else "did not answer within 90 s")
    for line in d.report(cfg, summary, not skip_deploy, cfg.env_file):
        print(line)
    if not healthy:
        raise SystemExit("demo: the app did not become healthy; see `docker compose logs app` in dist/docker")
