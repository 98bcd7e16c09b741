"""Docker helpers shared by the image and compose tests."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path


def scan_save(client, ref: str, needles: list[str]) -> set[str]:
    """The needles found anywhere in `docker save REF` (layers are plain tars there)."""
    wanted = [n.encode() for n in needles]
    keep = max(map(len, wanted)) - 1
    found: set[str] = set()
    tail = b""
    for chunk in client.images.get(ref).save(named=False):
        window = tail + chunk
        found.update(n.decode() for n in wanted if n in window)
        tail = window[-keep:]
    return found


def built_ids(logs: list[Path]) -> list[str]:
    """Image ids a classic build printed (` ---> <id>`), in order."""
    ids: list[str] = []
    for log in logs:
        ids += re.findall(r"^ ---> ([0-9a-f]{12})$", log.read_text(errors="replace"), re.MULTILINE)
    return ids


def remove_new_untagged(client, ids: list[str], before: set[str]) -> None:
    """Remove the untagged images among ``ids`` that did not exist before (stage images)."""
    import docker.errors

    for short in reversed(ids):
        try:
            image = client.images.get(short)
        except docker.errors.ImageNotFound:
            continue
        if image.id in before or image.tags:
            continue
        try:
            client.images.remove(image.id, noprune=False)
        except docker.errors.APIError:
            pass  # a parent of another image: removed with it


# --------------------------------------------------------------------------
# The deps tags (binary.deps_tag): one per dist dir a binary was built in
# --------------------------------------------------------------------------


def deps_tags(client) -> set[str]:
    """Every ``orangescrum-cloud-deps:<hash>`` tag on the engine (any checkout's, any session's)."""
    from cloudbuilder.binary import DEPS_REPOSITORY

    return {t for img in client.images.list(name=DEPS_REPOSITORY) for t in img.tags
            if t.startswith(DEPS_REPOSITORY + ":")}


def remove_deps_tags(client, dist_dirs, before: set[str]) -> list[str]:
    """Untag the deps tag of each of ``dist_dirs`` that is not in ``before`` (made since); returns them.

    The tags that existed before belong to someone else's build (other checkouts and
    test sessions share the engine) and stay.
    """
    from cloudbuilder.binary import deps_tag

    removed = []
    for tag in sorted({deps_tag(Path(d)) for d in dist_dirs} - before):
        try:
            client.images.remove(tag)
            removed.append(tag)
        except Exception:  # noqa: BLE001 - not built (the test failed before the embed step, or used --binary)
            pass
    return removed


@contextmanager
def removing_own_deps_tags(*dist_dirs):
    """removing_deps_tags with a client of its own (for helpers that get no docker_client fixture)."""
    import docker

    client = docker.from_env()
    try:
        with removing_deps_tags(client, *dist_dirs):
            yield
    finally:
        client.close()


@contextmanager
def removing_deps_tags(client, *dist_dirs):
    """Around a build in ``dist_dirs``: afterwards, remove the deps tags it created there."""
    before = deps_tags(client)
    try:
        yield
    finally:
        remove_deps_tags(client, dist_dirs, before)


def session_deps_tags(roots, tags: set[str]) -> set[str]:
    """The ``tags`` that belong to a dist dir below ``roots`` (found, or a removed ``dist`` of a found dir).

    A deps tag is a hash of its dist dir's path: it cannot be read back, so the
    directories below the session's temporary root are hashed and matched.
    """
    from cloudbuilder.binary import deps_tag

    found: set[str] = set()
    for root in roots:
        if not Path(root).exists():
            continue
        for parent, dirs, _files in os.walk(root):
            for candidate in (Path(parent), Path(parent) / "dist"):
                tag = deps_tag(candidate)
                if tag in tags:
                    found.add(tag)
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(parent, d))]
    return found


def image_files(client, ref: str) -> dict[str, "tarfile.TarInfo"]:
    """Every path of the image's file system (its layers applied in order, whiteouts honoured),
    from `docker save`: what the image itself holds, not what a container adds (/dev, /etc/hosts)."""
    import io
    import json
    import tarfile

    blobs: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(b"".join(client.images.get(ref).save(named=False)))) as saved:
        for member in saved.getmembers():
            if member.isfile():
                blobs[member.name] = saved.extractfile(member).read()
    files: dict[str, tarfile.TarInfo] = {}
    for layer in json.loads(blobs["manifest.json"])[0]["Layers"]:
        with tarfile.open(fileobj=io.BytesIO(blobs[layer])) as tar:
            for member in tar.getmembers():
                path = member.name.removeprefix("./").rstrip("/")
                head, _, name = path.rpartition("/")
                if name == ".wh..wh..opq":
                    files = {p: m for p, m in files.items() if not p.startswith(f"{head}/")}
                elif name.startswith(".wh."):
                    gone = f"{head}/{name[4:]}".lstrip("/")
                    files = {p: m for p, m in files.items() if p != gone and not p.startswith(f"{gone}/")}
                elif path:
                    files[path] = member
    return files


def image_ids(client) -> set[str]:
    """The ids of every local image, in one call. Not `images.list()`: that inspects each image
    after listing them, and fails when another user of the shared engine removes one meanwhile."""
    return set(client.api.images(all=True, quiet=True))
