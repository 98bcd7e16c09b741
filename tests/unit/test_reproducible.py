"""cloudbuilder/reproducible.py and the writers that use it: same inputs, same bytes.

The digests below were taken from the four tar writers as they were before
reproducible.py replaced them (archive, binary build context, runtime image
context, release tarball): the refactor kept every byte.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

from cloudbuilder import archive, binary, dockerimage, release, reproducible
from cloudbuilder.reproducible import GZIP_OS_UNIX, GZIP_OS_UNKNOWN, TarEntry


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _app(root: Path) -> Path:
    app = root / "app"
    (app / "src/a/b").mkdir(parents=True)
    (app / "composer.json").write_text("{}\n")
    (app / "bin").mkdir()
    (app / "bin/cake").write_text("#!/bin/sh\n")
    os.chmod(app / "bin/cake", 0o755)
    (app / "src/a/b/x.php").write_text("<?php\n" * 100)
    os.symlink("a/b/x.php", app / "src/link.php")
    return app


def test_the_tar_writers_keep_their_bytes(tmp_path):
    arc = archive.archive_app(_app(tmp_path), epoch=1700000000).data
    assert _sha(arc) == "8d5cd9e20c55d4d34bb66bafeeb811cc8356fc0f65d1212a7b3456b60d8a1208"
    context = binary._tar({"Dockerfile": b"FROM x\n", "b/c": b"zz"}, arc)
    assert _sha(context) == "a5f9d40d0fd6f376ada9bc89411a62a6d378dec5d6c91a5042bd993de7b7d488"
    tree = tmp_path / "tree"
    for rel in dockerimage.CONTEXT_FILES:
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode() * 50)
    assert _sha(dockerimage.build_context(tree)) == "512346e52ccd8366d98d518bac4ce8e458b1252d474366322efca9f58698f169"
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    os.chmod(tree / files[0], 0o755)
    dest = tmp_path / "t.tar.gz"
    release.write_tarball(tree, files, dest, prefix="orangescrum-docker-4.0.0", epoch=1700000000)
    raw = dest.read_bytes()
    assert raw[:10] == bytes.fromhex("1f8b08000000000000ff")  # no name, mtime 0, OS 255 (deflate bytes: zlib's)
    assert _sha(gzip.decompress(raw)) == "3075ca60921bb4e543b63f8c9f996ec036f2dfb489ed223dcbf98c07a6c43ede"


def test_tar_entries_owner_mtime_and_order():
    data = reproducible.tar_bytes(
        [TarEntry.dir("d"), TarEntry.file("d/f", b"x", 0o755), TarEntry.symlink("d/l", "f"),
         TarEntry.file("d/old", b"y", mtime=5)],
        format=reproducible.PAX_FORMAT, mtime=1700000000, owner="root")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert [(m.name, m.mode, m.mtime, m.uid, m.gid, m.uname) for m in members] == [
        ("d", 0o755, 1700000000, 0, 0, "root"), ("d/f", 0o755, 1700000000, 0, 0, "root"),
        ("d/l", 0o777, 1700000000, 0, 0, "root"), ("d/old", 0o644, 5, 0, 0, "root")]
    assert members[2].linkname == "f"
    again = reproducible.tar_bytes(reproducible.tar_members(data), format=reproducible.PAX_FORMAT, mtime=0,
                                   owner="root")
    assert again == data  # members keep their own mode and mtime


def test_parent_dirs():
    assert reproducible.parent_dirs(["a/b/c", "a/d", "e"]) == {"a", "a/b"}


def test_gzip_without_name_or_time():
    data = b"Package: x\n" * 1000
    unix, unknown = (reproducible.gzip_bytes(data, os_code=c) for c in (GZIP_OS_UNIX, GZIP_OS_UNKNOWN))
    assert unix[:10] == bytes.fromhex("1f8b0800000000000203") and unknown[:10] == bytes.fromhex("1f8b08000000000002ff")
    assert unix[10:] == unknown[10:]
    assert gzip.decompress(unix) == data and gzip.decompress(reproducible.gzip_bytes(b"")) == b""
    assert reproducible.gzip_bytes(data, level=1)[8] == 4


def test_dates_and_digests(tmp_path):
    assert reproducible.rfc3339(1700000000) == "2023-11-14T22:13:20Z"
    assert reproducible.rfc2822(1700000000) == "Tue, 14 Nov 2023 22:13:20 +0000"
    (tmp_path / "f").write_bytes(b"abc")
    want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert reproducible.sha256_file(tmp_path / "f") == reproducible.sha256_bytes(b"abc") == want
