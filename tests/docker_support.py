"""Docker helpers shared by the image and compose tests."""

from __future__ import annotations

import re
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


def image_ids(client) -> set[str]:
    """Every image id in the engine, without inspecting each one: on an engine other
    runs share, an image listed and then removed by another run must not fail this one
    (the SDK's ``images.list`` inspects every image it lists)."""
    return set(client.api.images(all=True, quiet=True))
