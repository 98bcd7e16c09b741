"""Archive the app source into a deterministic tar (the embed stage's input).

A git checkout is archived with ``git archive`` (what is committed, nothing
the developer has lying around); any other directory is walked.  Both go
through the same filter: ``.git``, ``tests/``, ``node_modules``, ``tmp/``,
``logs/`` and every ``.env*`` are never shipped, whatever git says.  Entries
are sorted, owned by 0:0, with fixed mtimes and normalized modes, so the same
source gives the same bytes and the same content hash.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import BuildError
from .log import logger

# (pattern, anywhere?): anywhere=False matches only the first path component.
DEFAULT_EXCLUDES: tuple[tuple[str, bool], ...] = (
    (".git", True),
    ("node_modules", True),
    (".env*", True),
    ("tests", False),
    ("tmp", False),
    ("logs", False),
)


@dataclass(frozen=True)
class AppArchive:
    data: bytes  # an uncompressed tar with entries under ``prefix``
    sha256: str
    method: str  # "git archive" or "directory"
    files: int
    excluded: tuple[str, ...]


def is_excluded(rel: str, excludes: Sequence[tuple[str, bool]] = DEFAULT_EXCLUDES) -> bool:
    parts = PurePosixPath(rel).parts
    for pattern, anywhere in excludes:
        candidates = parts if anywhere else parts[:1]
        if any(fnmatch.fnmatchcase(p, pattern) for p in candidates):
            return True
    return False


def _git_toplevel(path: Path) -> Path | None:
    try:
        done = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def _committed_treeish(app: Path, top: Path) -> str | None:
    """``HEAD[:sub]`` when ``app`` is committed in its repository, else None."""
    sub = app.resolve().relative_to(top.resolve()).as_posix()
    treeish = "HEAD" if sub == "." else f"HEAD:{sub}"
    done = subprocess.run(["git", "-C", str(top), "rev-parse", "--verify", "--quiet", f"{treeish}^{{tree}}"],
                          capture_output=True, text=True, timeout=30, check=False)
    return treeish if done.returncode == 0 else None


def _git_members(app: Path, top: Path, treeish: str) -> Iterator[tuple[str, int, bytes | str]]:
    """(relpath, mode, content-or-link-target) of the committed tree of ``app``."""
    try:
        done = subprocess.run(["git", "-C", str(top), "archive", "--format=tar", treeish],
                              capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"git archive of {app} failed: {exc}") from None
    if done.returncode != 0:
        raise BuildError(
            f"git archive of {app} failed: {done.stderr.decode(errors='replace').strip()}; "
            "commit the app (git archive ships what is committed) or fix the repository"
        )
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                yield m.name, m.mode, f.read()
            elif m.issym():
                yield m.name, m.mode, m.linkname
    status = subprocess.run(["git", "-C", str(app), "status", "--porcelain", "--", "."],
                            capture_output=True, text=True, timeout=60, check=False)
    if status.stdout.strip():
        logger.warning("    note: %s has uncommitted changes; git archive ships the last commit only", app)


def _dir_members(app: Path) -> Iterator[tuple[str, int, bytes | str]]:
    for root, dirs, files in os.walk(app):
        dirs.sort()
        rel_root = Path(root).relative_to(app)
        # prune excluded directories early (node_modules can be huge)
        dirs[:] = [d for d in dirs if not is_excluded((rel_root / d).as_posix())]
        for name in sorted(files) + [d for d in dirs if Path(root, d).is_symlink()]:
            p = Path(root, name)
            rel = (rel_root / name).as_posix()
            st = p.lstat()
            if p.is_symlink():
                yield rel, st.st_mode, os.readlink(p)
            elif p.is_file():
                yield rel, st.st_mode, p.read_bytes()


def archive_app(app: Path, *, epoch: int, prefix: str = "app/",
                excludes: Sequence[tuple[str, bool]] = DEFAULT_EXCLUDES) -> AppArchive:
    """Archive ``app`` deterministically; ``prefix`` is put before every entry."""
    top = _git_toplevel(app)
    treeish = _committed_treeish(app, top) if top is not None else None
    if top is not None and treeish is not None:
        method, members = "git archive", _git_members(app, top, treeish)
    else:  # not a git checkout, or not committed in the one it sits in
        method, members = "directory", _dir_members(app)
    kept: dict[str, tuple[int, bytes | str]] = {}
    excluded: set[str] = set()
    for rel, mode, content in members:
        rel = rel.rstrip("/")
        if is_excluded(rel, excludes):
            excluded.add(PurePosixPath(rel).parts[0] if not rel.startswith(".env") else rel)
            continue
        kept[rel] = (mode, content)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs: set[str] = set()
        for rel in kept:
            parent = PurePosixPath(rel).parent
            while str(parent) != ".":
                dirs.add(str(parent))
                parent = parent.parent
        entries = sorted([(d, None) for d in dirs] + [(r, kept[r]) for r in kept], key=lambda e: e[0])
        for rel, item in entries:
            info = tarfile.TarInfo(prefix + rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            if item is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            mode, content = item
            if isinstance(content, str):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, content, 0o777
                tar.addfile(info)
            else:
                info.mode = 0o755 if mode & 0o111 else 0o644
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    data = buf.getvalue()
    return AppArchive(data=data, sha256=hashlib.sha256(data).hexdigest(), method=method,
                      files=len(kept), excluded=tuple(sorted(excluded)))
