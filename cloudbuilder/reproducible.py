"""Reproducible outputs: deterministic tar archives, gzip, timestamps and digests.

Every stage that writes an archive or a date into an output comes here, so that
the same inputs give the same bytes whoever builds them, wherever and whenever:

- tar: entries in the order given (callers sort), owner 0:0 with the names of
  ``owner`` (``""`` or ``"root"``), one mtime for all (unless an entry has its
  own), the caller's modes, no device numbers, no atime/ctime;
- gzip: no file name, mtime 0, a fixed OS byte;
- dates: UTC, formatted for the syntax that carries them (RFC 3339, RFC 2822);
- digests: sha256 hex of bytes or of a file (read in chunks).

The formats (GNU for the app archive, PAX elsewhere), owners and gzip header
bytes of each output are what they were before this module existed: release
and packaging tests compare them with golden values.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

_CHUNK = 1 << 20

# The OS byte of a gzip header: ``gzip -n`` and zlib write 3 (Unix); Python's
# GzipFile (and so ``gzip_stream``) writes 255 (unknown).
GZIP_OS_UNIX = 3
GZIP_OS_UNKNOWN = 255

GNU_FORMAT = tarfile.GNU_FORMAT
PAX_FORMAT = tarfile.PAX_FORMAT


# --------------------------------------------------------------------------
# digests
# --------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# timestamps (always UTC)
# --------------------------------------------------------------------------


def _utc(fmt: str, epoch: int) -> str:
    """``epoch`` in UTC, as ``fmt`` (C-locale names: the builds run with LC_ALL unset or C.UTF-8)."""
    return time.strftime(fmt, time.gmtime(epoch))


def rfc3339(epoch: int) -> str:
    """``2023-11-14T22:13:20Z`` (OCI ``created``, nfpm ``mtime`` and changelog dates)."""
    return _utc("%Y-%m-%dT%H:%M:%SZ", epoch)


def rfc2822(epoch: int) -> str:
    """``Tue, 14 Nov 2023 22:13:20 +0000`` (Debian changelog trailer lines)."""
    return _utc("%a, %d %b %Y %H:%M:%S +0000", epoch)


def rpm_changelog_date(epoch: int) -> str:
    """``Tue Nov 14 22:13:20 UTC 2023`` (an rpm %changelog entry's date, with the time of day)."""
    return _utc("%a %b %d %H:%M:%S UTC %Y", epoch)


def iso_date(epoch: int) -> str:
    """``2023-11-14`` (a man page's date)."""
    return _utc("%Y-%m-%d", epoch)


def utc_year(epoch: int) -> str:
    """``2023`` (a copyright line)."""
    return _utc("%Y", epoch)


# --------------------------------------------------------------------------
# gzip
# --------------------------------------------------------------------------


def gzip_bytes(data: bytes, *, level: int = 9, os_code: int = GZIP_OS_UNKNOWN) -> bytes:
    """gzip without a file name and with mtime 0: the same input gives the same bytes.

    The header is written here (not by the gzip module, whose OS byte changed
    between Python versions), so only ``os_code`` decides it.
    """
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    header = struct.pack("<BBBBIBB", 0x1F, 0x8B, 8, 0, 0, xfl, os_code)
    deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, 0)
    body = deflate.compress(data) + deflate.flush()
    return header + body + struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)


@contextmanager
def gzip_stream(raw: BinaryIO, *, level: int = 9) -> Iterator[gzip.GzipFile]:
    """A gzip writer over ``raw`` without file name or timestamp (OS byte 255), for big outputs."""
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=level) as gz:
        yield gz


# --------------------------------------------------------------------------
# tar
# --------------------------------------------------------------------------

Kind = Literal["file", "dir", "symlink"]


@dataclass(frozen=True)
class TarEntry:
    """One member: a file (bytes in memory, or a path streamed from disk), a directory or a symlink."""

    name: str
    kind: Kind
    mode: int
    data: bytes | None = None
    source: Path | None = None
    size: int | None = None  # of ``source``: default its size when written
    linkname: str = ""
    mtime: int | None = None  # default: the archive's

    @classmethod
    def file(cls, name: str, data: bytes, mode: int = 0o644, *, mtime: int | None = None) -> TarEntry:
        return cls(name, "file", mode, data=data, mtime=mtime)

    @classmethod
    def from_path(cls, name: str, source: Path, mode: int = 0o644, *, size: int | None = None) -> TarEntry:
        return cls(name, "file", mode, source=source, size=size)

    @classmethod
    def dir(cls, name: str, mode: int = 0o755, *, mtime: int | None = None) -> TarEntry:
        return cls(name, "dir", mode, mtime=mtime)

    @classmethod
    def symlink(cls, name: str, target: str, mode: int = 0o777, *, mtime: int | None = None) -> TarEntry:
        return cls(name, "symlink", mode, linkname=target, mtime=mtime)


_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}


def parent_dirs(paths: Iterable[str]) -> set[str]:
    """Every directory above the relative ``paths`` (``a/b/c`` gives ``a`` and ``a/b``)."""
    dirs: set[str] = set()
    for rel in paths:
        parent = PurePosixPath(rel).parent
        while str(parent) != ".":
            dirs.add(str(parent))
            parent = parent.parent
    return dirs


def write_tar(out: BinaryIO, entries: Iterable[TarEntry], *, format: int, mtime: int, owner: str = "") -> None:
    """Write ``entries`` (in this order) as a tar to the stream ``out``."""
    with tarfile.open(fileobj=out, mode="w", format=format) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TYPES[entry.kind]
            info.mode = entry.mode
            info.mtime = mtime if entry.mtime is None else entry.mtime
            info.uid = info.gid = 0
            info.uname = info.gname = owner
            if entry.kind == "symlink":
                info.linkname = entry.linkname
                tar.addfile(info)
            elif entry.kind == "dir":
                tar.addfile(info)
            elif entry.source is not None:
                info.size = entry.source.stat().st_size if entry.size is None else entry.size
                with open(entry.source, "rb") as f:
                    tar.addfile(info, f)
            else:
                data = entry.data or b""
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def tar_bytes(entries: Iterable[TarEntry], *, format: int, mtime: int, owner: str = "") -> bytes:
    """``entries`` as an in-memory tar (build contexts, the app archive)."""
    buf = io.BytesIO()
    write_tar(buf, entries, format=format, mtime=mtime, owner=owner)
    return buf.getvalue()


def write_tar_gz(dest: Path, entries: Iterable[TarEntry], *, format: int, mtime: int, owner: str = "",
                 level: int = 9) -> None:
    """``entries`` as a .tar.gz at ``dest``, streamed (files are read from disk as they are written)."""
    with open(dest, "wb") as raw, gzip_stream(raw, level=level) as gz:
        write_tar(gz, entries, format=format, mtime=mtime, owner=owner)


def tar_members(data: bytes) -> Iterator[TarEntry]:
    """The files, directories and symlinks of a tar, each with its own mode and mtime."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                yield TarEntry.file(m.name, f.read(), m.mode, mtime=m.mtime)
            elif m.isdir():
                yield TarEntry.dir(m.name, m.mode, mtime=m.mtime)
            elif m.issym():
                yield TarEntry.symlink(m.name, m.linkname, m.mode, mtime=m.mtime)
