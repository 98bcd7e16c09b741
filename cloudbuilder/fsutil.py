"""Filesystem helpers: content hashes with a stat cache, atomic writes and swaps."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
from pathlib import Path

from .reproducible import sha256_file  # HashCache uses it; release and repo import it from here


class HashCache:
    """Content hashes of big files, keyed by their stat (like make, but by content).

    A file whose size, mtime, ctime and inode are unchanged is not read again,
    which keeps a no-op build of a 100 MB binary well under a second.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._data: dict[str, list] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._data = {}
        self._dirty = False

    def digest(self, file: Path) -> str:
        st = file.stat()
        key = str(file.resolve())
        ident = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        hit = self._data.get(key)
        if hit and hit[:4] == ident:
            return hit[4]
        digest = sha256_file(file)
        self._data[key] = [*ident, digest]
        self._dirty = True
        return digest

    def record(self, file: Path, digest: str) -> None:
        """Note ``digest`` for ``file`` as it is now: for a file just written from, or
        hard-linked to, content whose digest is known (no need to read it again)."""
        st = file.stat()
        self._data[str(file.resolve())] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, digest]
        self._dirty = True

    def relinked(self, file: Path) -> None:
        """``file`` got another hard link: that changes the inode's ctime, not its content.

        Refresh the entries of every known path of that inode whose size and mtime
        are unchanged, so the next build does not read 100+ MB again.
        """
        st = file.stat()
        for key, hit in self._data.items():
            if hit[3] == st.st_ino and hit[:2] == [st.st_size, st.st_mtime_ns]:
                try:
                    same = os.stat(key).st_ino == st.st_ino and os.stat(key).st_dev == st.st_dev
                except OSError:
                    same = False
                if same:
                    hit[2] = st.st_ctime_ns
                    self._dirty = True

    def save(self) -> None:
        if self._dirty:
            write_atomic(self.path, json.dumps(self._data, sort_keys=True).encode())
            self._dirty = False


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def swap_into_place(new: Path, dest: Path) -> None:
    """Make the fully written directory ``new`` become ``dest``, atomically.

    With an existing ``dest`` the two are exchanged in one ``renameat2`` call (so
    ``dest`` is never missing, even for an instant) and the old tree is removed
    afterwards.  Where the kernel or libc lacks it, two renames are used.
    """
    if not dest.exists():
        os.rename(new, dest)
        return
    fn = _renameat2()
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(dest), _RENAME_EXCHANGE) == 0:
            shutil.rmtree(new)
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(dest))
    old = dest.with_name(f".old-{dest.name}-{os.getpid()}")
    os.rename(dest, old)
    os.rename(new, dest)
    shutil.rmtree(old)


def fresh_temp_dir(parent: Path, prefix: str) -> Path:
    """An empty ``parent/<prefix><pid>`` directory (beside the output, so renames are atomic).

    Directories of earlier runs that were killed (their pid is gone) are removed first.
    """
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(parent, prefix)
    tmp = parent / f"{prefix}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def remove_stale_temp_dirs(parent: Path, prefix: str) -> None:
    """Remove ``parent/<prefix>*-<pid>`` dirs whose writer process is gone (a killed run)."""
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
