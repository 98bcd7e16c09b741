"""The stand-in FrankenPHP static-builder image.

``dunglas/frankenphp:static-builder-gnu-*`` cannot be pulled on the build
machines and takes 20-60 minutes to build, so tests and demos select a local
stand-in instead (``builder.image`` set to a tag of ``STANDIN_REPOSITORY``).  It
honours the same contract (``/go/src/app``, ``EMBED=dist/app/ ./build-static.sh``,
``dist/frankenphp-linux-<arch>``) but bundles Debian's PHP CLI; see
``builder/standin/README.md``.  It also has composer, so it doubles as the image
of the ``composer install --no-dev -a`` stage.

The image is built from a locally debootstrapped Debian rootfs (see
``cloudbuilder.rootfs``) and labelled with a hash of its sources, so it is only
built when missing or when ``build-static.sh``, the stub or the Dockerfile changed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from .engine import DockerEngine, as_engine
from .errors import ConfigError, PrerequisiteError
from .resources import source_root
from .rootfs import debian_mirror, ensure_imported_image, ensure_rootfs_tarball, rootfs_key

logger = logging.getLogger("cloudbuilder")

STANDIN_REPOSITORY = "localhost/orangescrum-standin/static-builder"
# What a demo or test sets builder.image to (any tag of STANDIN_REPOSITORY works).
DEFAULT_STANDIN_IMAGE = f"{STANDIN_REPOSITORY}:gnu-1.12.7"
# Imported Debian root filesystems (tagged <name>-<hash of their inputs>).
ROOTFS_REPOSITORY = "localhost/orangescrum-standin/rootfs"

SUITE = "bookworm"
VARIANT = "minbase"
# php8.2-cli plus the packages of the extensions OrangeScrum checks for
# (pdo, pdo_pgsql, openssl, mbstring, tokenizer, intl, json, xml, ctype, curl,
# gd, zip, redis), and composer for the composer stage.
STANDIN_PACKAGES = (
    "php8.2-cli",
    # php-server: Debian's Caddy in front of PHP-FPM (the embedded Caddyfile, mapped)
    "php8.2-fpm",
    "caddy",
    "php8.2-pgsql",
    "php8.2-mbstring",
    "php8.2-intl",
    "php8.2-xml",
    "php8.2-curl",
    "php8.2-gd",
    "php8.2-zip",
    "php-redis",
    "composer",
    "ca-certificates",
    "tar",
    # the token step of base-build.Dockerfile fetches GITHUB_TOKEN with curl
    "curl",
)
STANDIN_ROOTFS_NAME = "standin-php"
MINBASE_ROOTFS_NAME = "minbase"

SOURCES_LABEL = "org.orangescrum.cloudbuilder.standin.sources"
DOCKERFILE = "standin.Dockerfile"
_SOURCE_FILES = ("build-static.sh", "frankenphp-stub.sh", DOCKERFILE)


def is_standin_image(ref: str) -> bool:
    """Whether an image reference names the stand-in builder (any tag or digest)."""
    name = ref.strip().split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: name.rfind(":")]
    return name == STANDIN_REPOSITORY


def standin_source_dir() -> Path:
    """``builder/standin/``: the stand-in's Dockerfile, build-static.sh and stub."""
    return source_root() / "builder" / "standin"


def standin_sources_hash(source_dir: Path | None = None) -> str:
    """Hash of everything the stand-in image is made from (sources and rootfs inputs)."""
    source_dir = source_dir or standin_source_dir()
    digest = hashlib.sha256()
    for name in _SOURCE_FILES:
        path = source_dir / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PrerequisiteError(f"stand-in builder: cannot read {path}: {exc.strerror}") from None
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    digest.update(_rootfs_tag(STANDIN_ROOTFS_NAME, STANDIN_PACKAGES).encode())
    return digest.hexdigest()[:24]


def _rootfs_tag(name: str, packages: tuple[str, ...]) -> str:
    key = rootfs_key(packages, suite=SUITE, variant=VARIANT, mirror=debian_mirror())
    return f"{ROOTFS_REPOSITORY}:{name}-{key}"


def ensure_rootfs_image(
    client: DockerEngine | Any, name: str, packages: tuple[str, ...] = (), *, cache_dir: Path | None = None
) -> str:
    """A Debian bookworm minbase rootfs with ``packages``, imported; returns its tag.

    The tag is ``ROOTFS_REPOSITORY:<name>-<hash>``; tarball and image are cached.
    ``client``: the engine (or an SDK client, wrapped).
    """
    engine = as_engine(client)
    tag = _rootfs_tag(name, packages)
    if engine.find_image(tag, f"rootfs image {tag}") is not None:
        return tag
    tarball = ensure_rootfs_tarball(name, packages, suite=SUITE, variant=VARIANT, cache_dir=cache_dir)
    ensure_imported_image(engine, tag, tarball)
    return tag


def ensure_minbase_image(client: DockerEngine | Any, *, cache_dir: Path | None = None) -> str:
    """A plain Debian bookworm minbase image (no php), e.g. to prove a binary is self-contained."""
    return ensure_rootfs_image(client, MINBASE_ROOTFS_NAME, (), cache_dir=cache_dir)


def ensure_standin_image(
    client: DockerEngine | Any, ref: str, *, cache_dir: Path | None = None, rebuild: bool = False
) -> str:
    """Build the stand-in builder image as ``ref`` if missing or out of date; return its id.

    ``ref`` must be a tag of ``STANDIN_REPOSITORY``.  The first run debootstraps
    the rootfs (a few minutes); later runs reuse the cached tarball and image.
    ``client``: the engine (or an SDK client, wrapped).
    """
    engine = as_engine(client)
    if not is_standin_image(ref):
        raise ConfigError(
            f"builder.image={ref!r} is not the stand-in builder; use a tag of {STANDIN_REPOSITORY} "
            f"(e.g. {DEFAULT_STANDIN_IMAGE}) or pull the real image yourself"
        )
    source_dir = standin_source_dir()
    if not (source_dir / DOCKERFILE).is_file():
        raise PrerequisiteError(f"stand-in builder: {source_dir / DOCKERFILE} is missing")
    sources = standin_sources_hash(source_dir)

    old_id = None
    existing = engine.find_image(ref, "stand-in builder")
    if existing is not None:
        labels = existing.labels
        if labels.get(SOURCES_LABEL) == sources and not rebuild:
            logger.debug("stand-in builder %s is up to date (%s)", ref, sources)
            return existing.id
        old_id = existing.id
        reason = "rebuild requested" if labels.get(SOURCES_LABEL) == sources else "out of date"
        logger.info("==> Stand-in builder %s: %s, rebuilding", ref, reason)

    rootfs = ensure_rootfs_image(engine, STANDIN_ROOTFS_NAME, STANDIN_PACKAGES, cache_dir=cache_dir)
    started = time.monotonic()
    logger.info("==> Building stand-in builder image %s (from %s)", ref, rootfs)
    image_id = engine.build_directory(source_dir, dockerfile=DOCKERFILE, tag=ref,
                                      buildargs={"ROOTFS_IMAGE": rootfs}, labels={SOURCES_LABEL: sources},
                                      what="stand-in builder")
    logger.info("    built %s in %.0fs", ref, time.monotonic() - started)

    if old_id and old_id != image_id:  # the previous build, now untagged
        engine.discard_image(old_id)
    return image_id
