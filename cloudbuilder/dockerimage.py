"""`invoke docker.image`: build the runtime image from dist/docker with the SDK."""

from __future__ import annotations

import io
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from .assemble import BINARY_PATH
from .config import BuildConfig
from .engine import BuildLog, DockerEngine
from .errors import ConfigError
from .log import logger, step

LABEL_ROLE = "org.orangescrum.cloudbuilder.role"


@dataclass(frozen=True)
class RuntimeImage:
    id: str
    tags: tuple[str, ...]


def _context_from_tree(tree: Path) -> bytes:
    """The build context: only what .dockerignore lets through (never .env, docs, compose files)."""
    allowed = ["Dockerfile", BINARY_PATH["docker"], "entrypoint.sh", "helpers/validate-env.sh"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in allowed:
            p = tree / rel
            if not p.is_file():
                raise ConfigError(f"{p} is missing; run `invoke dist.docker` (or `invoke build`) first")
            info = tar.gettarinfo(str(p), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(p, "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def build_runtime_image(cfg: BuildConfig, engine: DockerEngine | None = None) -> RuntimeImage:
    tree = cfg.dist_dir / "docker"
    repo = cfg.docker.image_name
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cfg.source_date_epoch))
    owns = engine is None
    engine = engine or DockerEngine()
    try:
        if engine.image(cfg.docker.runtime_image) is None:
            engine.ensure_image(cfg.docker.runtime_image,
                                "set docker.runtime_image (OSCB_DOCKER_RUNTIME_IMAGE) to a local or mirrored "
                                "Debian/Ubuntu image")
        with step(f"Building the runtime image {repo}:{cfg.version}"):
            log = BuildLog(cfg.dist_dir / "logs" / f"runtime-image-{time.strftime('%Y%m%dT%H%M%S')}.log", "image")
            image_id = engine.build(
                context=_context_from_tree(tree), dockerfile="Dockerfile", tag=f"{repo}:{cfg.version}",
                buildargs={"VERSION": cfg.version, "CREATED": created, "REVISION": _revision(cfg),
                           "RUNTIME_IMAGE": cfg.docker.runtime_image,
                           "UID": str(cfg.docker.uid), "GID": str(cfg.docker.gid)},
                labels={LABEL_ROLE: "runtime"}, log=log,
            )
            engine.tag(image_id, repo, "latest")
        logger.info("    %s:%s and %s:latest (%s)", repo, cfg.version, repo, image_id[7:19])
        return RuntimeImage(image_id, (f"{repo}:{cfg.version}", f"{repo}:latest"))
    finally:
        if owns:
            engine.__exit__(None, None, None)


def _revision(cfg: BuildConfig) -> str:
    import subprocess

    done = subprocess.run(["git", "-C", str(cfg.app), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=False, timeout=30)
    return done.stdout.strip() if done.returncode == 0 else "unknown"
