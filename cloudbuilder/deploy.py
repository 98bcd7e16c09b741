"""`invoke deploy`: `docker compose up -d` in dist/docker with a validated env file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .config import BuildConfig
from .envcheck import require_valid_env
from .errors import BuildError, ConfigError, PrerequisiteError
from .log import logger, step


def deploy_env_file(cfg: BuildConfig) -> Path:
    """--env-file, else dist/docker/.env; a clear error when there is neither."""
    if cfg.env_file is not None:
        return cfg.env_file
    local = cfg.dist_dir / "docker" / ".env"
    if local.is_file():
        return local
    raise ConfigError(
        f"env_file is not set and {local} does not exist: nothing to deploy with; "
        f"cp {cfg.dist_dir / 'docker' / '.env.example'} {local}, edit it and run again, "
        "or pass --env-file PATH, or --skip-deploy to only build"
    )


def compose(cfg: BuildConfig, env_file: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `docker compose ARGS` in dist/docker with the container env file set to ``env_file``."""
    if shutil.which("docker") is None:
        raise PrerequisiteError("the docker CLI is not on PATH; install docker.io and the compose v2 plugin")
    tree = cfg.dist_dir / "docker"
    env = {**os.environ, "ORANGESCRUM_ENV_FILE": str(env_file.resolve())}
    cmd = ["docker", "compose", *args]
    logger.info("    + %s", " ".join(cmd))
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        output = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise BuildError(f"`docker compose {' '.join(args)}` failed in {tree}:\n" + "\n".join("    | " + l for l in output))
    return done


def deploy_compose(cfg: BuildConfig, *, build_image: bool = True) -> None:
    env_file = deploy_env_file(cfg)
    require_valid_env(env_file)
    if build_image:
        from .dockerimage import build_runtime_image

        build_runtime_image(cfg)
    with step(f"Starting the Docker deployment in {cfg.dist_dir / 'docker'}"):
        compose(cfg, env_file, "up", "-d", "--no-build", "--remove-orphans")
    logger.info("    app: http://%s:%d/ (docker compose ps / logs in %s)", cfg.docker.bind_address,
                cfg.docker.host_port, cfg.dist_dir / "docker")
