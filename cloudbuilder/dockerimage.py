"""`invoke docker.image`: build the runtime image from dist/docker with the SDK.

Plan, then act: ``plan_runtime_image`` decides the tags, build args and labels
(pure); ``build_context`` makes the build context from the tree (the same
files ``.dockerignore`` admits, as a deterministic tar); ``build_runtime_image``
builds through ``DockerEngine``, or does nothing when an image built from the
same inputs (context, build args, base image id) already carries the tag.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import git
from .assemble import BINARY_PATH
from .config import BuildConfig
from .engine import BuildLog, DockerEngine, borrowed_engine
from .errors import ConfigError
from .escape import docker_tag
from .log import logger, step
from .reproducible import PAX_FORMAT, TarEntry, rfc3339, tar_bytes
from .workspace import Artifact, Workspace

LABEL_ROLE = "org.orangescrum.cloudbuilder.role"
LABEL_INPUTS = "org.orangescrum.cloudbuilder.runtime-inputs"

# The build context, in the order it is sent: the Dockerfile and exactly the
# files docker/.dockerignore admits (so `docker compose build` in the tree sees
# the same files). Never .env, docs, compose files or anything else in the tree.
CONTEXT_FILES: tuple[str, ...] = (
    "Dockerfile",
    BINARY_PATH["docker"],
    "entrypoint.sh",
    "helpers/validate-env.sh",
    "helpers/app-state.sh",
    "helpers/server-env.sh",
    "printenv.sh",  # /bin/printenv: busybox-static has no printenv applet
)
_EXECUTABLE = frozenset(CONTEXT_FILES[1:])


@dataclass(frozen=True)
class RuntimeImagePlan:
    """What `docker.image` builds: pure data, decided before any engine call."""

    tree: Path
    repository: str
    tags: tuple[str, ...]  # the first is the version tag
    base_image: str
    buildargs: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(f"{self.repository}:{t}" for t in self.tags)


@dataclass(frozen=True)
class RuntimeImage:
    id: str
    tags: tuple[str, ...]
    rebuilt: bool = True
    log: Path | None = None


def plan_runtime_image(cfg: BuildConfig, revision: str, binary_sha256: str = "") -> RuntimeImagePlan:
    """Tags ``<image_name>:<version as a Docker tag>`` and ``:latest``; OCI labels from the build args.

    ``binary_sha256`` lets the Dockerfile check that the image got this very
    binary (a build cache can serve a stale same-size copy; see the Dockerfile).
    """
    return RuntimeImagePlan(
        tree=Workspace(cfg.dist_dir).docker_tree,
        repository=cfg.docker.image_name,
        tags=(docker_tag(cfg.version), "latest"),
        base_image=cfg.docker.runtime_image,
        buildargs={
            "RUNTIME_IMAGE": cfg.docker.runtime_image,
            "APP_UID": str(cfg.docker.uid),
            "APP_GID": str(cfg.docker.gid),
            "VERSION": cfg.version,
            "REVISION": revision,
            "CREATED": rfc3339(cfg.source_date_epoch),
            "SOURCE_DATE_EPOCH": str(cfg.source_date_epoch),
            "BINARY_SHA256": binary_sha256,
        },
        labels={LABEL_ROLE: "runtime"},
    )


def check_tree(tree: Path, version: str) -> None:
    """The tree must exist and have been assembled for ``version`` (the compose
    file's image tag is that version: an image tagged otherwise would not run)."""
    missing = [rel for rel in CONTEXT_FILES if not (tree / rel).is_file()]
    if missing:
        raise ConfigError(f"{tree / missing[0]} is missing; run `invoke dist.docker` (or `invoke build`) first")
    m = re.search(r"^ARG VERSION=(\S+)$", (tree / "Dockerfile").read_text(encoding="utf-8"), re.MULTILINE)
    if m and m.group(1) != version:
        raise ConfigError(
            f"{tree} was assembled for version {m.group(1)}, but version is {version}; "
            f"run `invoke dist.docker --version {version}` first, or pass --version {m.group(1)}"
        )


def build_context(tree: Path) -> bytes:
    """A deterministic tar of ``CONTEXT_FILES``: owner 0:0, mtime 0, modes 0755/0644."""
    entries = []
    for rel in CONTEXT_FILES:
        path = tree / rel
        if not path.is_file():
            raise ConfigError(f"{path} is missing; run `invoke dist.docker` (or `invoke build`) first")
        entries.append(TarEntry.from_path(rel, path, 0o755 if rel in _EXECUTABLE else 0o644))
    return tar_bytes(entries, format=PAX_FORMAT, mtime=0)


def inputs_digest(plan: RuntimeImagePlan, context: bytes, base_image_id: str) -> str:
    """Everything the image is made from; its label makes a rebuild a no-op."""
    h = hashlib.sha256(context)
    h.update(json.dumps({"args": dict(plan.buildargs), "labels": dict(plan.labels), "base": base_image_id},
                        sort_keys=True).encode())
    return h.hexdigest()


def build_runtime_image(cfg: BuildConfig, engine: DockerEngine | None = None, *,
                        force: bool = False) -> RuntimeImage:
    """Build ``<image_name>:<version>`` and ``:latest`` from dist/docker (or reuse it); manifest: ``image/runtime``."""
    ws = Workspace(cfg.dist_dir)
    tree = ws.docker_tree
    check_tree(tree, cfg.version)
    plan = plan_runtime_image(cfg, _revision(cfg), ws.sha256(tree / BINARY_PATH["docker"]))
    ws.hashes.save()
    context = build_context(plan.tree)
    with borrowed_engine(engine) as engine:
        base = engine.ensure_image(
            plan.base_image,
            "set docker.runtime_image (OSCB_DOCKER_RUNTIME_IMAGE) to a local or mirrored Debian/Ubuntu image "
            "(the source of the image's busybox-static, CA bundle, tzdata and, for a glibc binary, C library)",
        )
        digest = inputs_digest(plan, context, base.id)
        current = engine.image(plan.refs[0])
        if not force and current is not None and current.labels.get(LABEL_INPUTS) == digest:
            for tag in plan.tags[1:]:
                engine.tag(current.id, plan.repository, tag)
            logger.info("==> Runtime image %s: up to date (%s)", plan.refs[0], current.id[7:19])
            _record_image(cfg, ws, plan, current.id, digest)
            return RuntimeImage(current.id, plan.refs, rebuilt=False)
        with step(f"Building the runtime image {plan.refs[0]} (base {plan.base_image})"):
            log = BuildLog(ws.log_path("runtime-image"), "image")
            image_id = engine.build(
                context=context, dockerfile="Dockerfile", tag=plan.refs[0], buildargs=plan.buildargs,
                labels={**plan.labels, LABEL_INPUTS: digest}, log=log,
            )
            for tag in plan.tags[1:]:
                engine.tag(image_id, plan.repository, tag)
        logger.info("    %s (%s); build log: %s", " and ".join(plan.refs), image_id[7:19], log.path)
        _record_image(cfg, ws, plan, image_id, digest)
        return RuntimeImage(image_id, plan.refs, rebuilt=True, log=log.path)


def _record_image(cfg: BuildConfig, ws: Workspace, plan: RuntimeImagePlan, image_id: str, digest: str) -> None:
    from .config import recorded_settings

    ws.record(Artifact(kind="image", name="runtime", version=cfg.version, path=plan.refs[0],
                       sha256=image_id.removeprefix("sha256:"), inputs=digest,
                       settings=recorded_settings(cfg, ("version", "source_date_epoch", "docker.")),
                       extra={"tags": list(plan.refs)}))


def _revision(cfg: BuildConfig) -> str:
    """The app's commit (org.opencontainers.image.revision), or "unknown"."""
    return git.head_revision(cfg.app) or "unknown"
