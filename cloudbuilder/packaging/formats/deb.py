"""The .deb: everything that differs from the .rpm (deb-control(5), Debian Policy 5 and 7.1).

File names ``name_version-release_arch.deb``, dpkg's architecture names, the
maintainer script names, the control file's syntax (single-line fields,
continuation lines with "." for an empty one), Debian relations, the
changelog.Debian.gz and lintian overrides the package ships, root:root
ownership, and how fpm and nfpm spell each payload compression.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ...errors import BuildError
from .base import Arch, Compressor, Format, FormatFile

SECTION = "web"
PRIORITY = "optional"
# A .deb carries every path as root:root, whatever the backend: fpm writes one owner
# for all of them (--deb-user/--deb-group).  The owners that matter (the env file's
# group, the state and cache directories) are set by the tmpfiles.d entry, which
# postinst applies before anything starts, and which every boot re-applies.
OWNER = ("root", "root")
CHANGELOG = "changelog.Debian.gz"

# Debian relations (Policy 7.1) of a binary package: name[:arch] [(op version)], alternatives with "|".
_NAME = r"[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?"
_VERSION = r"[0-9][A-Za-z0-9.+~:-]*"
_RELATION = rf"{_NAME}(?:\s*\(\s*(?:<<|<=|=|>=|>>)\s*{_VERSION}\s*\))?"
RELATION_RE = re.compile(rf"{_RELATION}(?:\s*\|\s*{_RELATION})*")


def control_field(name: str, value: str) -> str:
    """One single-line control field; a value that would start another field is refused."""
    if "\n" in value or "\r" in value or not value.strip():
        raise BuildError(f"package: the .deb's {name} field {value!r} must be one non-empty line")
    return f"{name}: {value}\n"


def relations(deps: Sequence[str]) -> str:
    """A Depends/Recommends value: the relations, comma-separated."""
    return ", ".join(deps)


def installed_size_kib(sizes: Iterable[int]) -> int:
    """Installed-Size as nfpm computes it: the payload's file bytes, in KiB, rounded down."""
    return sum(sizes) // 1024


def control(*, package: str, version: str, section: str, arch: Arch, maintainer: str, installed_size_kib: int,
            depends: Sequence[str], recommends: Sequence[str], homepage: str, summary: str,
            description: str) -> str:
    """The control file: the fields nfpm writes, in dpkg's syntax (deb-control(5))."""
    lines = [
        control_field("Package", package),
        control_field("Version", version),
        control_field("Section", section),
        control_field("Priority", PRIORITY),
        control_field("Architecture", DEB.arch(arch)),
        control_field("Maintainer", maintainer),
        control_field("Installed-Size", str(installed_size_kib)),
    ]
    if depends:
        lines.append(control_field("Depends", relations(depends)))
    if recommends:
        lines.append(control_field("Recommends", relations(recommends)))
    lines.append(control_field("Homepage", homepage))
    # Continuation lines start with a space; "." stands for an empty line (the spec writes it so).
    body = "".join(f" {line if line.strip() else '.'}\n" for line in description.splitlines())
    lines.append(control_field("Description", summary) + body)
    return "".join(lines)


class Deb:
    name: Format = "deb"
    script_names = ("preinst", "postinst", "prerm", "postrm")
    compressors = {
        # fpm passes ZSTD_CLEVEL=-<level>: level "0" is zstd's default level 3, what nfpm writes (fpm.py).
        "zstd": Compressor(fpm="zst", fpm_level="0", nfpm="zstd"),
        "xz": Compressor(fpm="xz", fpm_level="3", nfpm="xz"),
        "gzip": Compressor(fpm="gz", fpm_level=None, nfpm="gzip"),
        "none": Compressor(fpm="none", fpm_level=None, nfpm="none"),
    }

    def arch(self, arch: Arch) -> str:
        return arch

    def filename(self, name: str, full_version: str, arch: Arch) -> str:
        return f"{name}_{full_version}_{self.arch(arch)}.deb"

    def owner(self, owner: str, group: str) -> tuple[str, str]:
        return OWNER

    def description(self, summary: str, description: str) -> str:
        return f"{summary}\n{description}"  # "." lines already separate the paragraphs

    def files(self, name: str, doc_dir: str) -> tuple[FormatFile, ...]:
        return (FormatFile(dst=f"{doc_dir}/{CHANGELOG}", template="deb/changelog.j2", name=CHANGELOG, gzip=True),
                FormatFile(dst=f"/usr/share/lintian/overrides/{name}", template="deb/lintian-overrides.j2",
                           name="lintian-overrides"))


DEB = Deb()
