"""The one adapter for git: every question the build asks a repository.

The app's version and date (``config.probe_app``), what ``archive`` ships
(``git archive`` of the last commit, or ``git ls-files`` of what git would
commit) and the image's revision label all come from here.  git is optional:
where the old code treated a missing or hanging git as "not a repository",
these functions return None; where git's answer is needed, they raise
``BuildError`` with the fix.  Every call goes through the runner.
"""

from __future__ import annotations

from pathlib import Path

from . import runner
from .errors import BuildError


def _git(where: Path, *args: str, timeout: float, text: bool = True) -> runner.Completed:
    return runner.run(["git", "-C", str(where), *args], what=f"git {args[0]} in {where}", timeout=timeout, text=text)


def output(cwd: Path, *args: str, timeout: float = 10) -> str | None:
    """git's stripped stdout for ``args`` run in ``cwd``; None if git is missing, fails or hangs."""
    try:
        done = runner.run(["git", *args], what=f"git {args[0]}", cwd=cwd, timeout=timeout)
    except runner.NOT_RUN:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def toplevel(path: Path) -> Path | None:
    """The root of the work tree ``path`` is in, or None (no repository, or no git)."""
    try:
        done = _git(path, "rev-parse", "--show-toplevel", timeout=30)
    except runner.NOT_RUN:
        return None
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def head_revision(path: Path) -> str | None:
    """The commit HEAD names in ``path``'s repository, or None."""
    try:
        done = _git(path, "rev-parse", "HEAD", timeout=30)
    except runner.NOT_RUN:
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def committed_treeish(app: Path, top: Path) -> str | None:
    """``HEAD[:sub]`` when ``app`` is committed in its repository ``top``, else None."""
    sub = app.resolve().relative_to(top.resolve()).as_posix()
    treeish = "HEAD" if sub == "." else f"HEAD:{sub}"
    done = _git(top, "rev-parse", "--verify", "--quiet", f"{treeish}^{{tree}}", timeout=30)
    return treeish if done.returncode == 0 else None


def archive_tar(app: Path, top: Path, treeish: str) -> bytes:
    """``git archive --format=tar`` of ``treeish`` in ``top`` (the committed tree of ``app``)."""
    try:
        done = _git(top, "archive", "--format=tar", treeish, timeout=600, text=False)
    except runner.NOT_RUN as exc:
        raise BuildError(f"git archive of {app} failed: {exc}") from None
    if done.returncode != 0:
        raise BuildError(
            f"git archive of {app} failed: {done.stderr.decode(errors='replace').strip()}; "
            "commit the app (git archive ships what is committed) or fix the repository"
        )
    return done.stdout


def has_uncommitted_changes(app: Path) -> bool:
    """Whether ``git status`` lists changes below ``app``."""
    return bool(_git(app, "status", "--porcelain", "--", ".", timeout=60).stdout.strip())


def _listing(app: Path, *args: str) -> runner.Completed:
    try:
        return _git(app, *args, timeout=600, text=False)
    except runner.NOT_RUN as exc:
        raise BuildError(f"git ls-files in {app} failed: {exc}") from None


def is_ignored(app: Path) -> bool:
    """Whether the repository ``app`` sits in ignores ``app`` as a whole."""
    return _listing(app, "check-ignore", "-q", "--", ".").returncode == 0


def offered_files(app: Path) -> bytes:
    """NUL-separated paths git would offer to commit below ``app`` (tracked, and untracked not ignored)."""
    done = _listing(app, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".")
    if done.returncode != 0:
        raise BuildError(f"git ls-files in {app} failed: {done.stderr.decode(errors='replace').strip()}; "
                         "fix the repository, or commit the app")
    return done.stdout
