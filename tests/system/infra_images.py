"""PostgreSQL 15 and Redis 7 images for the `infra` profile of docker-compose.yaml, built here.

Nothing can pull ``postgres:15-alpine`` or ``redis:7-alpine`` on these machines, so
the tests build look-alikes from Debian bookworm's own packages: a debootstrapped
rootfs with ``postgresql-15`` (or ``redis-server``), cached as a tarball like the
other rootfs images (cloudbuilder/rootfs.py), plus a small Dockerfile and
entrypoint from ``tests/system/infra/<name>/``. They keep the official images'
contract that docker-compose.yaml relies on (written above its infra services):

* postgres: ``POSTGRES_USER``/``POSTGRES_PASSWORD``/``POSTGRES_DB`` create the
  superuser and the database on first start, data in /var/lib/postgresql/data,
  port 5432 with password (scram-sha-256) logins, ``pg_isready`` on PATH;
* redis: ``redis-server ARGS...`` (e.g. ``--requirepass PASSWORD``) on port 6379,
  every address, ``redis-cli`` on PATH.

API (kept small; the Swarm tests use it too):

* ``ensure_infra_images(client) -> InfraImages``: both tags, built when missing;
* ``InfraImages.settings``: the ``OSCB_DOCKER_*_IMAGE`` variables that make
  ``invoke build``/``dist.docker`` render docker-compose.yaml with them.

Tags are ``localhost/orangescrum-infra/<name>:<major>-<content hash>``: the hash
covers the rootfs (suite, packages, mirror) and the files of
``tests/system/infra/<name>/``, so a changed entrypoint gives a new tag and an
unchanged one is reused across runs and helpers. The images are cached fixtures
like the rootfs images: tests do not remove them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "infra"
REPOSITORY = "localhost/orangescrum-infra"
SOURCES_LABEL = "org.orangescrum.cloudbuilder.infra-sources"


@dataclass(frozen=True)
class InfraImage:
    name: str  # the compose service, and the directory under tests/system/infra
    major: str
    packages: tuple[str, ...]


POSTGRES = InfraImage("postgres", "15", ("postgresql-15",))
REDIS = InfraImage("redis", "7", ("redis-server",))


@dataclass(frozen=True)
class InfraImages:
    postgres: str
    redis: str

    @property
    def settings(self) -> dict[str, str]:
        """Build settings (environment variables) pointing docker-compose.yaml at these images."""
        return {"OSCB_DOCKER_POSTGRES_IMAGE": self.postgres, "OSCB_DOCKER_REDIS_IMAGE": self.redis}


def _sources_hash(image: InfraImage, rootfs_tag: str) -> str:
    digest = hashlib.sha256(rootfs_tag.encode())
    for path in sorted((SOURCES / image.name).iterdir()):
        digest.update(f"\0{path.name}\0{path.stat().st_mode & 0o111:o}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_image(client, image: InfraImage) -> str:
    """The tag of ``image``, built (rootfs first, once) when no image has it."""
    from cloudbuilder.engine import as_engine
    from cloudbuilder.standin import ensure_rootfs_image

    engine = as_engine(client)
    rootfs = ensure_rootfs_image(engine, f"infra-{image.name}", image.packages)
    sources = _sources_hash(image, rootfs)
    tag = f"{REPOSITORY}/{image.name}:{image.major}-{sources}"
    if engine.find_image(tag, f"infra image {tag}") is None:
        engine.build_directory(SOURCES / image.name, dockerfile="Dockerfile", tag=tag,
                               buildargs={"ROOTFS_IMAGE": rootfs}, labels={SOURCES_LABEL: sources},
                               what=f"infra image {image.name}")
    return tag


def ensure_infra_images(client) -> InfraImages:
    """PostgreSQL 15 and Redis 7 images for the compose file's infra profile (built once, then cached)."""
    return InfraImages(postgres=ensure_image(client, POSTGRES), redis=ensure_image(client, REDIS))
