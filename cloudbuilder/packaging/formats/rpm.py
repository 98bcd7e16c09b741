"""The .rpm: everything that differs from the .deb (the rpm spec file syntax, rpm's conventions).

File names ``name-version-release.arch.rpm``, rpm's architecture names, the
scriptlet names, paragraphs separated by blank lines, rpm dependencies,
``%changelog`` entries and their dates, ``%attr``/``%ghost`` lines, the
build host written into the header, the rpmlintrc the package ships, and how
fpm and nfpm spell each payload compression.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ...errors import BuildError
from ...reproducible import rpm_changelog_date
from .base import Arch, Compressor, Format, FormatFile

GROUP = "Applications/Internet"
# The BUILDHOST of the rpm header: fixed, so that rebuilds elsewhere are identical.
BUILDHOST = "reproducible"

# rpm dependencies: a name (or a capability such as perl(Foo), or a path) [op EVR].
_NAME = r"(?:[A-Za-z0-9_][A-Za-z0-9_.+-]*(?:\([A-Za-z0-9_.:/+-]+\))?|/[A-Za-z0-9_.+/-]+)"
RELATION_RE = re.compile(rf"{_NAME}(?:\s+(?:<|<=|=|>=|>)\s+[A-Za-z0-9_.+~^:-]+)?")
# A user or group name an %attr can carry.
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


def changelog(*, version: str, epoch: int, author: str, changes: Sequence[str]) -> str:
    """One %changelog entry, with the time of day (rpmbuild 4.18 of Debian 12 reads it) so that
    its CHANGELOGTIME is the exact epoch nfpm writes, not noon of that day."""
    return f"* {rpm_changelog_date(epoch)} {author} - {version}\n" + "".join(f"- {c}\n" for c in changes)


def attr(mode: int, owner: str, group: str) -> str:
    """``%attr(0640,root,orangescrum)``: a path's mode and owners in a %files list."""
    return f"%attr({mode:04o},{owner},{group})"


def ghost(path: str, mode: int, owner: str, group: str) -> str:
    """The %files line of a path the package owns without shipping it; ``path`` is a plain absolute path."""
    if not (USER_RE.fullmatch(owner) and USER_RE.fullmatch(group)):
        raise BuildError(f"package: the owner {owner}:{group} of the %ghost {path} is no plain user name")
    return f"%ghost {attr(mode, owner, group)} {path}"


class Rpm:
    name: Format = "rpm"
    script_names = ("pre", "post", "preun", "postun")
    compressors = {
        # fpm has no zstd for rpm (its spec template fixes _binary_payload); xzmt: rpm's multi-threaded xz.
        "zstd": Compressor(fpm=None, fpm_level=None, nfpm="zstd"),
        "xz": Compressor(fpm="xzmt", fpm_level="3", nfpm="xz"),
        "gzip": Compressor(fpm="gzip", fpm_level=None, nfpm="gzip"),
        "none": Compressor(fpm="none", fpm_level=None, nfpm=None),
    }

    def arch(self, arch: Arch) -> str:
        return _ARCH[arch]

    def filename(self, name: str, full_version: str, arch: Arch) -> str:
        return f"{name}-{full_version}.{self.arch(arch)}.rpm"

    def owner(self, owner: str, group: str) -> tuple[str, str]:
        return owner, group

    def description(self, summary: str, description: str) -> str:
        # The first line is the synopsis; a blank line separates paragraphs in an rpm.
        return f"{summary}\n" + description.replace("\n.\n", "\n\n")

    def files(self, name: str, doc_dir: str) -> tuple[FormatFile, ...]:
        return (FormatFile(dst=f"{doc_dir}/{name}.rpmlintrc", template="rpm/rpmlintrc.j2", name="rpmlintrc",
                           doc=True),)


RPM = Rpm()
