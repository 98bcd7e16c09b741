"""Local Debian root filesystems, for images nothing can pull here.

No image registry is reachable on the build machines, so every base image a
stand-in or a test needs is made locally: ``debootstrap`` a Debian rootfs from
the apt mirror the machine already uses, ``tar`` it, and ``docker import`` it.

Both steps are cached:

* the tarball lives in the cache directory (``$CLOUDBUILDER_CACHE_DIR`` or
  ``~/.cache/orangescrum-cloudbuilder``) under a name that carries a hash of
  everything that went into it (suite, variant, packages, mirror), and is only
  made when missing;
* the imported image carries a label naming that tarball, so it is only
  imported again when the tarball changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import runner
from .engine import DockerEngine, as_engine
from .errors import PrerequisiteError

logger = logging.getLogger("cloudbuilder")

DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "CLOUDBUILDER_DEBIAN_MIRROR"
CACHE_ENV = "CLOUDBUILDER_CACHE_DIR"
# Label put on imported images: the tarball file name (which carries its input hash).
ROOTFS_LABEL = "org.orangescrum.cloudbuilder.rootfs"

_APT_SOURCES = Path("/etc/apt/sources.list")
_APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")


# --------------------------------------------------------------------------
# Mirror and cache locations
# --------------------------------------------------------------------------


def _mirror_from_deb822(text: str) -> str | None:
    """The first ``URIs:`` of a deb822 stanza for the main archive (not security)."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.lstrip().startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        if any(s.endswith("-security") for s in suites) and not any(
            not s.endswith("-security") for s in suites
        ):
            continue
        for uri in fields.get("uris", "").split():
            if uri.startswith(("http://", "https://")) and "security" not in uri:
                return uri.rstrip("/")
    return None


def _mirror_from_one_line(text: str) -> str | None:
    """The URI of the first ``deb URI SUITE ...`` line for the main archive."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        rest = words[1:]
        if rest[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) < 2:
            continue
        uri, suite = rest[0], rest[1]
        if uri.startswith(("http://", "https://")) and "security" not in uri and not suite.endswith("-security"):
            return uri.rstrip("/")
    return None


def debian_mirror() -> str:
    """The Debian mirror to debootstrap from.

    ``$CLOUDBUILDER_DEBIAN_MIRROR`` wins; otherwise the main-archive URI that apt's
    sources on this machine name (deb822 ``*.sources`` or one-line ``*.list``);
    otherwise ``http://deb.debian.org/debian``.
    """
    override = os.environ.get(MIRROR_ENV, "").strip()
    if override:
        return override.rstrip("/")
    candidates: list[Path] = []
    if _APT_SOURCES_DIR.is_dir():
        candidates += sorted(_APT_SOURCES_DIR.glob("*.sources"))
        candidates += sorted(_APT_SOURCES_DIR.glob("*.list"))
    candidates.append(_APT_SOURCES)
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        found = _mirror_from_deb822(text) if path.suffix == ".sources" else _mirror_from_one_line(text)
        if found:
            logger.debug("Debian mirror %s (from %s)", found, path)
            return found
    return DEFAULT_MIRROR


def default_cache_dir() -> Path:
    """``$CLOUDBUILDER_CACHE_DIR``, else ``~/.cache/orangescrum-cloudbuilder``."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "orangescrum-cloudbuilder"


def rootfs_key(packages: Sequence[str], *, suite: str, variant: str, mirror: str) -> str:
    """Hash of everything a rootfs tarball is made from (16 hex digits)."""
    material = json.dumps(
        {"suite": suite, "variant": variant, "packages": sorted(set(packages)), "mirror": mirror},
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------
# The tarball
# --------------------------------------------------------------------------


def _run(argv: list[str], what: str, *, timeout: float) -> None:
    try:
        proc = runner.run(argv, what=what, timeout=timeout, prefix="$ ")
    except (runner.CommandTimeout, runner.NotStartable) as exc:
        raise PrerequisiteError(str(exc)) from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise PrerequisiteError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def ensure_rootfs_tarball(
    name: str,
    packages: Sequence[str],
    *,
    suite: str = "bookworm",
    variant: str = "minbase",
    cache_dir: Path | None = None,
) -> Path:
    """A tar of a Debian ``suite`` rootfs (``variant``) with ``packages`` installed.

    Made once with debootstrap, then reused: the file is
    ``<cache_dir>/<name>-<hash of suite, variant, packages, mirror>.tar``.  The
    rootfs is built in a temporary directory under ``cache_dir`` and the tarball
    renamed into place only when complete, so an interrupted run leaves nothing
    that looks finished.  Raises ``PrerequisiteError`` when debootstrap is
    missing, not run as root, or fails.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"rootfs name {name!r}: use letters, digits, '.', '_' and '-'")
    mirror = debian_mirror()
    cache = (cache_dir or default_cache_dir()).expanduser()
    key = rootfs_key(packages, suite=suite, variant=variant, mirror=mirror)
    tarball = cache / f"{name}-{key}.tar"
    if tarball.is_file():
        logger.debug("rootfs %s: reusing %s", name, tarball)
        return tarball

    if shutil.which("debootstrap") is None:
        raise PrerequisiteError(
            f"rootfs {name}: debootstrap is not installed (needed to make {tarball.name}); "
            "install it with `apt-get install debootstrap`"
        )
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise PrerequisiteError(
            f"rootfs {name}: debootstrap needs root to make {tarball.name}; run as root "
            f"or put a ready tarball at {tarball}"
        )
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PrerequisiteError(f"rootfs {name}: cannot create cache directory {cache}: {exc}") from None

    started = time.monotonic()
    logger.info(
        "==> Making Debian %s rootfs %r (%s%s) from %s; this takes a few minutes once",
        suite, name, variant, f" + {len(packages)} packages" if packages else "", mirror,
    )
    # A package cache shared by all rootfs builds: the second one downloads little.
    debs = cache / "debootstrap-debs"
    debs.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
    try:
        root = work / "rootfs"
        argv = ["debootstrap", f"--variant={variant}", f"--cache-dir={debs}"]
        if packages:
            argv.append("--include=" + ",".join(sorted(set(packages))))
        argv += [suite, str(root), mirror]
        _run(argv, f"rootfs {name}: debootstrap {suite}", timeout=3600)
        # Drop what only made the download work: apt lists and the package cache.
        for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for entry in (root / leftover).glob("*"):
                if entry.is_file() and entry.name != "lock":
                    entry.unlink()
        partial = work / "rootfs.tar"
        _run(
            ["tar", "--numeric-owner", "--sort=name", "-C", str(root), "-cf", str(partial), "."],
            f"rootfs {name}: tar",
            timeout=1800,
        )
        os.replace(partial, tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "    rootfs %s: %s (%.0f MiB) in %.0fs",
        name, tarball, tarball.stat().st_size / 2**20, time.monotonic() - started,
    )
    return tarball


# --------------------------------------------------------------------------
# The image
# --------------------------------------------------------------------------


def ensure_imported_image(client: DockerEngine | Any, tag: str, tarball: Path) -> str:
    """Import ``tarball`` as image ``tag`` once; return the image id.

    The image is labelled with the tarball's name (which carries the hash of its
    inputs).  When ``tag`` already names an image with that label, or an image
    whose tag contains that hash, nothing is imported.  ``client``: the engine
    (or an SDK client, wrapped).
    """
    engine = as_engine(client)
    tarball = Path(tarball)
    marker = tarball.name
    key = tarball.stem.rsplit("-", 1)[-1]
    existing = engine.find_image(tag, f"image {tag}")
    if existing is not None:
        labels = existing.labels
        if labels.get(ROOTFS_LABEL) == marker or key in tag:
            logger.debug("image %s: up to date with %s", tag, marker)
            return existing.id
    if not tarball.is_file():
        raise PrerequisiteError(f"image {tag}: rootfs tarball {tarball} does not exist")

    started = time.monotonic()
    logger.info("==> Importing %s as %s", tarball.name, tag)
    engine.import_image(tarball, tag, [f'LABEL {ROOTFS_LABEL}="{marker}"', 'CMD ["/bin/sh"]'])
    image = engine.find_image(tag, f"image {tag}")
    if image is None:
        raise PrerequisiteError(f"image {tag}: docker import of {tarball} did not produce the image")
    logger.info("    imported %s in %.0fs", tag, time.monotonic() - started)
    return image.id
