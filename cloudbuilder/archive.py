"""Archive the app source into a deterministic tar (the embed stage's input).

What is archived, by where the app sits:

- committed in a git repository: ``git archive`` of the last commit (what is
  committed, nothing the developer has lying around);
- inside a git work tree but not (or not yet) committed: the files git would
  offer to commit, ``git ls-files --cached --others --exclude-standard``, so the
  repository's ignore rules (``.gitignore``, ``.git/info/exclude``) are honoured;
- anywhere else (no repository, or a directory the enclosing repository
  ignores): a walk of the directory.

All three go through the same two filters.  ``DEFAULT_EXCLUDES`` drops what a
production app never needs (``.git``, ``tests/``, ``node_modules``, ``tmp/``,
``logs/``).  ``CREDENTIAL_FILES`` (and any file holding a PEM private key)
drops credentials and per-installation state whatever git says, and each file
it drops is named in the log.  Entries are sorted, owned by 0:0, with fixed
mtimes and normalized modes, so the same source gives the same bytes and the
same content hash.
"""

from __future__ import annotations

import fnmatch
import io
import os
import re
import stat
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import git
from .errors import BuildError
from .log import logger
from .reproducible import GNU_FORMAT, TarEntry, parent_dirs, sha256_bytes, tar_bytes

# (pattern, anywhere?): anywhere=False matches only the first path component.
DEFAULT_EXCLUDES: tuple[tuple[str, bool], ...] = (
    (".git", True),
    ("node_modules", True),
    ("tests", False),
    ("tmp", False),
    ("logs", False),
)

# Credentials and per-installation state: never embedded in the binary, even
# when committed (the binary is copied to every server and its app is
# extracted readable to the service user).  Matched case-insensitively, like
# .gitignore: a pattern with a '/' is a path from the app root (a directory
# there takes everything below it), one without matches a name at any depth.
# The OrangeScrum rows are what its installer and settings pages write
# (Community Edition's .gitignore lists them as installation config files);
# settings reach the embedded app through the environment instead.
CREDENTIAL_FILES: tuple[str, ...] = (
    ".env*",                  # dotenv files (.env, .ENV, .env.local, config/.env)
    "auth.json",              # composer's credentials for private repositories
    ".npmrc",                 # npm registry tokens
    ".yarnrc.yml",            # yarn registry tokens
    ".git-credentials",       # git's credential store
    ".netrc",                 # ftp/curl/git passwords
    ".pgpass",                # PostgreSQL passwords
    ".htpasswd",              # HTTP basic-auth passwords
    "id_rsa*",                # ssh keys (and their .pub)
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.p12",                  # PKCS#12 key stores
    "*.pfx",
    "config/app_local.php",   # OrangeScrum installer: database password, security salt
    "config/install.ini",     # OrangeScrum installer state
    "config/install_info.json",
    "config/smtp.php",        # OrangeScrum installer: SMTP password
    "config/smtp.history.json",
    "config/sendgrid.php",    # mail API key
    "config/storage.php",     # S3 keys
    "config/oauth-keys/",     # OAuth signing keys
    "secrets/",
)
# A PEM private key, whatever the file is called (server.key, jwt/private.pem);
# certificates (a CA bundle in vendor/) are kept.
PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")


@dataclass(frozen=True)
class AppArchive:
    data: bytes  # an uncompressed tar with entries under ``prefix``
    sha256: str
    method: str  # "git archive", "git ls-files" or "directory"
    files: int
    excluded: tuple[str, ...]  # top-level names DEFAULT_EXCLUDES dropped
    credentials: tuple[str, ...] = ()  # paths the credential filter dropped


def credential_rule(rel: str) -> str | None:
    """The ``CREDENTIAL_FILES`` pattern that ``rel`` (a path in the app) matches, if any."""
    parts = PurePosixPath(rel.lower()).parts
    for pattern in CREDENTIAL_FILES:
        pat = pattern.lower().rstrip("/")
        if "/" in pat:
            depth = pat.count("/") + 1
            if len(parts) >= depth and fnmatch.fnmatchcase("/".join(parts[:depth]), pat):
                return pattern
        elif any(fnmatch.fnmatchcase(part, pat) for part in parts):
            return pattern
    return None


def is_excluded(rel: str, excludes: Sequence[tuple[str, bool]] = DEFAULT_EXCLUDES) -> bool:
    """Whether ``rel`` stays out of the archive by name (``excludes`` or a credential)."""
    return _build_excluded(rel, excludes) or credential_rule(rel) is not None


def _build_excluded(rel: str, excludes: Sequence[tuple[str, bool]] = DEFAULT_EXCLUDES) -> bool:
    parts = PurePosixPath(rel).parts
    for pattern, anywhere in excludes:
        candidates = parts if anywhere else parts[:1]
        if any(fnmatch.fnmatchcase(p, pattern) for p in candidates):
            return True
    return False


_git_toplevel = git.toplevel
_committed_treeish = git.committed_treeish


def _git_members(app: Path, top: Path, treeish: str) -> Iterator[tuple[str, int, bytes | str]]:
    """(relpath, mode, content-or-link-target) of the committed tree of ``app``."""
    with tarfile.open(fileobj=io.BytesIO(git.archive_tar(app, top, treeish))) as tar:
        for m in tar.getmembers():
            if m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                yield m.name, m.mode, f.read()
            elif m.issym():
                yield m.name, m.mode, m.linkname
    if git.has_uncommitted_changes(app):
        logger.warning("    note: %s has uncommitted changes; git archive ships the last commit only", app)


def _walk(app: Path, below: str = "") -> Iterator[str]:
    """Paths (relative to ``app``) of the files and symlinks under ``app/below``, excluded dirs pruned."""
    for root, dirs, files in os.walk(app / below):
        dirs.sort()
        rel_root = Path(root).relative_to(app)
        # prune excluded directories early (node_modules can be huge)
        dirs[:] = [d for d in dirs if not _build_excluded((rel_root / d).as_posix())]
        for name in sorted(files) + [d for d in dirs if Path(root, d).is_symlink()]:
            yield (rel_root / name).as_posix()


def _git_listed(app: Path, top: Path) -> list[str] | None:
    """What git would offer to commit in ``app``: tracked files, and untracked ones it does not ignore.

    None when the enclosing repository ignores ``app`` as a whole: its rules
    then say nothing about the app's own files.
    """
    if app.resolve() != top.resolve() and git.is_ignored(app):
        return None
    listed: set[str] = set()
    for raw in git.offered_files(app).split(b"\0"):
        rel = os.fsdecode(raw).rstrip("/")
        if not rel or _build_excluded(rel):  # as the walk prunes them: node_modules can be huge
            continue
        path = app / rel
        if path.is_dir() and not path.is_symlink():  # a nested repository (or submodule): all of it
            listed.update(_walk(app, rel))
        elif os.path.lexists(path):  # a tracked file deleted from the work tree is not
            listed.add(rel)
    return sorted(listed)


def _disk_selection(app: Path, top: Path | None) -> tuple[str, list[str]]:
    """How the app is read from the disk, and the paths that are read (not yet filtered)."""
    if top is not None:
        listed = _git_listed(app, top)
        if listed is not None:
            return "git ls-files", listed
        return f"directory (ignored by the git work tree {top})", list(_walk(app))
    return "directory", list(_walk(app))


def _disk_members(app: Path, paths: Sequence[str]) -> Iterator[tuple[str, int, bytes | str]]:
    for rel in paths:
        p = app / rel
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            yield rel, st.st_mode, os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            yield rel, st.st_mode, p.read_bytes()


def _credential(rel: str, content: bytes | str) -> str | None:
    """Why ``rel`` is a credential (its ``CREDENTIAL_FILES`` rule, or its content), else None."""
    rule = credential_rule(rel)
    if rule is not None:
        return f"matches {rule}"
    if isinstance(content, bytes) and b"PRIVATE KEY-----" in content and PRIVATE_KEY.search(content):
        return "holds a private key"
    return None


def newest_mtime(app: Path) -> int | None:
    """The mtime (whole seconds) of the newest file an archive of ``app`` from the disk takes, or None.

    The fallback ``SOURCE_DATE_EPOCH`` of an app that git has no commit for: a
    true date (not 1970) that the same tree always gives.  The same files as
    the archive count: what git would commit or the walk finds, less
    ``DEFAULT_EXCLUDES`` and credentials.
    """
    try:
        _method, paths = _disk_selection(app, _git_toplevel(app))
    except BuildError:
        return None
    stamps: list[tuple[int, str]] = []
    for rel in paths:
        if is_excluded(rel):
            continue
        try:
            st = (app / rel).lstat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            stamps.append((int(st.st_mtime), rel))
    # newest first; only the few newest are read, to skip a private key the archive leaves out
    for mtime, rel in sorted(stamps, reverse=True):
        path = app / rel
        try:
            content: bytes | str = os.readlink(path) if path.is_symlink() else path.read_bytes()
        except OSError:
            continue
        if _credential(rel, content) is None:
            return mtime
    return None


def leaves_app(rel: str, links: Mapping[str, str]) -> bool:
    """Whether the symlink at ``rel`` ends up outside the app, resolved as the kernel would in the extracted app.

    ``links`` maps every symlink of the archive to its target, so a chain of
    links (``a -> b/../..`` with ``b -> ..``) is followed; an absolute target
    is outside (the app is extracted to a temporary directory on the server).
    """
    if links[rel].startswith("/"):
        return True
    todo = list(reversed(PurePosixPath(rel).parent.parts + tuple(links[rel].split("/"))))
    here: list[str] = []
    hops = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                return True
            here.pop()
            continue
        here.append(part)
        target = links.get("/".join(here))
        if target is None:
            continue
        if target.startswith("/"):
            return True
        hops += 1
        if hops > 40:  # a loop leads nowhere, in or out
            return False
        here.pop()
        todo.extend(reversed(target.split("/")))
    return False


def archive_app(app: Path, *, epoch: int, prefix: str = "app/",
                excludes: Sequence[tuple[str, bool]] = DEFAULT_EXCLUDES,
                allow_external_symlinks: bool = False) -> AppArchive:
    """Archive ``app`` deterministically; ``prefix`` is put before every entry.

    A symlink that points outside the app is refused (BuildError naming each
    one) unless ``allow_external_symlinks``; then each is named in a warning.
    """
    top = _git_toplevel(app)
    treeish = _committed_treeish(app, top) if top is not None else None
    if top is not None and treeish is not None:
        method, members = "git archive", _git_members(app, top, treeish)
    else:  # not a git checkout, or not committed in the one it sits in
        method, paths = _disk_selection(app, top)
        members = _disk_members(app, paths)
        if method == "git ls-files":
            logger.info("    note: %s is not committed in the git work tree %s; archiving the files git "
                        "would commit (its ignore rules honoured)", app, top)
    kept: dict[str, tuple[int, bytes | str]] = {}
    excluded: set[str] = set()
    credentials: dict[str, str] = {}
    for rel, mode, content in members:
        rel = rel.rstrip("/")
        if _build_excluded(rel, excludes):
            excluded.add(PurePosixPath(rel).parts[0])
            continue
        why = _credential(rel, content)
        if why is not None:
            credentials[rel] = why
            continue
        kept[rel] = (mode, content)
    for rel, why in sorted(credentials.items()):
        logger.warning("    left out %s (%s): credentials and per-installation state are never embedded", rel, why)
    links = {rel: content for rel, (_mode, content) in kept.items() if isinstance(content, str)}
    outside = [f"{rel} -> {links[rel]}" for rel in sorted(links) if leaves_app(rel, links)]
    if outside and not allow_external_symlinks:
        raise BuildError(
            f"{app} has symlinks that point outside it: {'; '.join(outside)}. In the binary they would reach "
            "whatever is at that path on the server (the app is extracted to a temporary directory there). "
            "Replace each with the file it points at, or with a relative link inside the app; or set "
            "app_external_symlinks=true (OSCB_APP_EXTERNAL_SYMLINKS=true) to archive them anyway"
        )
    for link in outside:
        logger.warning("    symlink %s points outside the app (archived: app_external_symlinks is set)", link)

    def entry(rel: str, item: tuple[int, bytes | str] | None) -> TarEntry:
        if item is None:
            return TarEntry.dir(prefix + rel)
        mode, content = item
        if isinstance(content, str):
            return TarEntry.symlink(prefix + rel, content)
        return TarEntry.file(prefix + rel, content, 0o755 if mode & 0o111 else 0o644)

    rows = sorted([(d, None) for d in parent_dirs(kept)] + [(r, kept[r]) for r in kept], key=lambda e: e[0])
    data = tar_bytes((entry(rel, item) for rel, item in rows), format=GNU_FORMAT, mtime=epoch)
    return AppArchive(data=data, sha256=sha256_bytes(data), method=method,
                      files=len(kept), excluded=tuple(sorted(excluded)), credentials=tuple(sorted(credentials)))
