"""The OS package as data: one ``PackageSpec`` for both formats.

``build_spec`` is the planning step: from the config, the assembled
``dist/native`` tree and the packaging templates it computes every file,
directory, owner, mode, script and header field of the .deb and the .rpm.  It
writes nothing.  The backends (``nfpm``, ``fpm``) only translate a spec into
their own input; ``build.py`` runs them.

Files the package build generates itself (maintainer scripts, copyright,
changelog, man page, lint overrides) are ``Generated`` sources carrying their
bytes; everything else is a ``Path`` into ``dist/native``.

The spec is the same for both formats; what differs by format (file and
architecture names, owners, script names, the files only one format ships)
comes from ``formats/deb.py`` and ``formats/rpm.py``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from .. import __version__
from ..assemble import BINARY_PATH
from ..config import BuildConfig, parse_license
from ..errors import BuildError, ConfigError
from ..reproducible import GZIP_OS_UNIX, gzip_bytes, iso_date, rfc2822, sha256_bytes, utc_year
from ..resources import source_root
from .formats import FORMATS, Arch, Compression, Format, format_of
from .formats import deb as deb_format
from .formats import rpm as rpm_format

# What the package needs from dist/native (paths inside the tree).
NATIVE_VALIDATOR = "helpers/validate-env.sh"
NATIVE_APP_STATE = "helpers/app-state.sh"
NATIVE_SERVER_ENV = "helpers/server-env.sh"
NATIVE_ENV_EXAMPLE = ".env.example"
NATIVE_SYSUSERS = "systemd/sysusers.conf"
NATIVE_TMPFILES = "systemd/tmpfiles.conf"
NATIVE_README = "README.md"
UNIT_DIR = "/usr/lib/systemd/system"
ENV_FILE_NAME = "orangescrum.env"
# The shipped template of the settings file: data the maintainer scripts read
# (so not under /usr/share/doc, which path-exclude and --excludedocs may drop).
ENV_TEMPLATE_DIR = "/usr/share/{name}"

DEB_SECTION = deb_format.SECTION
RPM_GROUP = rpm_format.GROUP
SUMMARY = "Project and task management web application in one static binary"

# Script names per format, in the order pre, post, preun, postun.
SCRIPT_NAMES: dict[Format, tuple[str, str, str, str]] = {fmt: format_of(fmt).script_names for fmt in FORMATS}


@dataclass(frozen=True)
class Generated:
    """A file the package build writes itself; ``name`` is unique within a spec."""

    name: str
    data: bytes = field(repr=False)


Source = Path | Generated


@dataclass(frozen=True)
class FileEntry:
    dst: str
    src: Source
    mode: int
    owner: str = "root"
    group: str = "root"
    config: bool = False  # deb conffile / rpm %config(noreplace)
    doc: bool = False  # rpm %doc (documentation and man pages)
    formats: tuple[Format, ...] = FORMATS


@dataclass(frozen=True)
class GhostEntry:
    """A path the package owns without shipping it (rpm ``%ghost``): a file the scripts create."""

    dst: str
    mode: int
    owner: str = "root"
    group: str = "root"
    formats: tuple[Format, ...] = ("rpm",)


@dataclass(frozen=True)
class DirEntry:
    dst: str
    mode: int
    owner: str = "root"
    group: str = "root"
    formats: tuple[Format, ...] = FORMATS


@dataclass(frozen=True)
class Scripts:
    pre: Generated
    post: Generated
    preun: Generated
    postun: Generated

    def items(self) -> tuple[tuple[str, Generated], ...]:
        return (("pre", self.pre), ("post", self.post), ("preun", self.preun), ("postun", self.postun))


@dataclass(frozen=True)
class ChangelogEntry:
    version: str  # VERSION-RELEASE
    epoch: int
    author: str
    changes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PackageSpec:
    name: str
    version: str
    release: str
    arch: Arch
    maintainer: str
    vendor: str
    homepage: str
    license: str
    summary: str
    description: str  # the long description, plain lines
    deb_section: str
    rpm_group: str
    depends: Mapping[Format, tuple[str, ...]]
    recommends: tuple[str, ...]
    files: tuple[FileEntry, ...]
    directories: tuple[DirEntry, ...]
    ghosts: tuple[GhostEntry, ...] = ()
    scripts: Mapping[Format, Scripts]
    compression: Mapping[Format, Compression]
    source_date_epoch: int
    changelog: ChangelogEntry

    def arch_for(self, fmt: Format) -> str:
        return format_of(fmt).arch(self.arch)

    @property
    def full_version(self) -> str:
        return f"{self.version}-{self.release}"

    def filename(self, fmt: Format) -> str:
        """The conventional file name: name_version-release_arch.deb, name-version-release.arch.rpm."""
        return format_of(fmt).filename(self.name, self.full_version, self.arch)

    def files_for(self, fmt: Format) -> tuple[FileEntry, ...]:
        """The files of ``fmt``, with the owners that format carries (``PackageFormat.owner``)."""
        return tuple(_owned_for(f, fmt) for f in self.files if fmt in f.formats)

    def dirs_for(self, fmt: Format) -> tuple[DirEntry, ...]:
        return tuple(_owned_for(d, fmt) for d in self.directories if fmt in d.formats)

    def ghosts_for(self, fmt: Format) -> tuple[GhostEntry, ...]:
        return tuple(g for g in self.ghosts if fmt in g.formats)

    def fingerprint_data(self, fmt: Format) -> dict[str, Any]:
        """Everything about ``fmt`` except the bytes of Path sources (hashed separately)."""

        def src(s: Source) -> str:
            return f"generated:{s.name}:{_sha(s.data)}" if isinstance(s, Generated) else f"path:{s}"

        return {
            "header": {k: getattr(self, k) for k in (
                "name", "version", "release", "arch", "maintainer", "vendor", "homepage", "license",
                "summary", "description", "deb_section", "rpm_group", "recommends", "source_date_epoch")},
            "depends": list(self.depends[fmt]),
            "compression": self.compression[fmt],
            "changelog": [self.changelog.version, self.changelog.epoch, self.changelog.author,
                          list(self.changelog.changes)],
            "files": [[f.dst, src(f.src), f.mode, f.owner, f.group, f.config, f.doc] for f in self.files_for(fmt)],
            "dirs": [[d.dst, d.mode, d.owner, d.group] for d in self.dirs_for(fmt)],
            "ghosts": [[g.dst, g.mode, g.owner, g.group] for g in self.ghosts_for(fmt)],
            "scripts": [[k, src(g)] for k, g in self.scripts[fmt].items()],
        }


# Every path of a .deb is root's (formats/deb.py says why).
DEB_OWNER = deb_format.OWNER
_Entry = TypeVar("_Entry", FileEntry, DirEntry)


def _owned_for(entry: _Entry, fmt: Format) -> _Entry:
    owner, group = format_of(fmt).owner(entry.owner, entry.group)
    if (owner, group) != (entry.owner, entry.group):
        return dataclasses.replace(entry, owner=owner, group=group)
    return entry


_sha = sha256_bytes


# --------------------------------------------------------------------------
# Facts read from the app (the only inputs that are not config or dist/native)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AppLicense:
    spdx: str
    text: str | None  # the app's LICENSE file, when it has one
    source: str


LICENSE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "COPYING", "LICENCE")


def read_app_license(cfg: BuildConfig) -> AppLicense:
    """package.license, else composer.json "license"; the text from LICENSE* when present."""
    text = None
    for name in LICENSE_FILES:
        try:
            # Form feeds and CRs (old GPL texts) are no text a deb822 continuation line can carry.
            text = (cfg.app / name).read_text(encoding="utf-8").replace("\r\n", "\n").replace("\f", "")
            break
        except (OSError, UnicodeDecodeError):
            continue
    if cfg.package.license:
        return AppLicense(cfg.package.license, text, cfg.source_of("package.license"))
    try:
        data = json.loads((cfg.app / "composer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    value = data.get("license") if isinstance(data, dict) else None
    if isinstance(value, list):
        value = " or ".join(str(v) for v in value)
    if isinstance(value, str) and value.strip():
        where = f"{cfg.app / 'composer.json'} \"license\""
        if not parse_license(value.strip()):
            # It goes into the control file, the rpm header and copyright, like package.license.
            raise ConfigError(f"license={value.strip()!r} (from {where}) is not an SPDX license expression; "
                              "set package.license (OSCB_PACKAGE_LICENSE), e.g. AGPL-3.0-only")
        return AppLicense(value.strip(), text, where)
    return AppLicense("LicenseRef-OrangeScrum", text, "default")


# --------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------


def packaging_root(root: Path | None = None) -> Path:
    return (root or source_root()) / "packaging"


MIGRATE_UNIT = "orangescrum-migrate.service"


def _units(native: Path) -> list[str]:
    unit_dir = native / "systemd"
    return sorted(p.name for p in unit_dir.glob("*") if p.suffix in (".service", ".timer")) if unit_dir.is_dir() else []


def _start_order(units: list[str], native: Path) -> list[str]:
    """Units enabled at boot (those with [Install]): the web server, other services, then timers."""
    enabled = [u for u in units if "[Install]" in (native / "systemd" / u).read_text(encoding="utf-8")]
    return sorted(enabled, key=lambda u: (u.endswith(".timer"), u != "orangescrum.service", u))


def _stop_order(units: list[str]) -> list[str]:
    """Timers first (so nothing triggers a service being stopped), then the services, web last."""
    return sorted(units, key=lambda u: (not u.endswith(".timer"), u == "orangescrum.service", u))


_rfc2822 = rfc2822


def _gz(data: bytes) -> bytes:
    """gzip -9n: no name, mtime 0, so the same text gives the same bytes."""
    return gzip_bytes(data, level=9, os_code=GZIP_OS_UNIX)


def _require(native: Path, rel: str) -> Path:
    path = native / rel
    if not path.is_file():
        raise BuildError(
            f"{native} is incomplete: {rel} is missing; re-assemble it with `invoke dist.native` "
            "(or `invoke build`) before packaging"
        )
    return path


def template_context(cfg: BuildConfig, license: AppLicense, native: Path) -> dict[str, Any]:
    """What the packaging templates see (plain data; no paths of this machine)."""
    package = {k: getattr(cfg.package, k) for k in cfg.package.__dataclass_fields__}
    package["license"] = license.spdx
    units = _units(native)
    return {
        **cfg.template_context(),
        "package": package,
        "license_text": license.text,
        "builder_version": __version__,
        "env_file": f"{cfg.paths.config_dir}/{ENV_FILE_NAME}",
        "env_template": f"{ENV_TEMPLATE_DIR.format(name=cfg.package.name)}/{ENV_FILE_NAME}.example",
        "validator": f"{cfg.paths.libexec_dir}/validate-env",
        "app_state": f"{cfg.paths.libexec_dir}/app-state",
        "sysusers_conf": f"/usr/lib/sysusers.d/{cfg.package.name}.conf",
        "tmpfiles_conf": f"/usr/lib/tmpfiles.d/{cfg.package.name}.conf",
        "enable_units": _start_order(units, native),
        "stop_units": _stop_order(units),
        # The oneshot the services require (no [Install]: pulled in by them); empty when absent.
        "migrate_unit": MIGRATE_UNIT if MIGRATE_UNIT in units else "",
        "sysusers_text": _sysusers_entries(native),
        "date_rfc2822": _rfc2822(cfg.source_date_epoch),
        "date_man": iso_date(cfg.source_date_epoch),
        "year": utc_year(cfg.source_date_epoch),
        "man_name": PurePosixPath(cfg.paths.binary).name,
        "doc_dir": f"/usr/share/doc/{cfg.package.name}",
        "compression": {"deb": cfg.package.deb_compression, "rpm": cfg.package.rpm_compression},
    }


def _sysusers_entries(native: Path) -> str:
    """The sysusers.d lines without comments (for the scripts' stdin fallback)."""
    text = _require(native, NATIVE_SYSUSERS).read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def render(name: str, context: Mapping[str, Any], root: Path | None = None) -> str:
    """Render packaging/<name> (jinja2, StrictUndefined, like the trees' templates)."""
    from ..assemble import render_file

    base = packaging_root(root)
    return render_file(base / name, context, search_path=(base,))


def build_spec(cfg: BuildConfig, native: Path, license: AppLicense, *, root: Path | None = None) -> PackageSpec:
    """The package of ``native`` (an assembled dist/native) for the config ``cfg``. Writes nothing."""
    ctx = template_context(cfg, license, native)
    pkg = cfg.package
    user = cfg.service.user
    doc = ctx["doc_dir"]
    name = pkg.name

    binary = _require(native, BINARY_PATH["native"])
    files: list[FileEntry] = [
        FileEntry(dst=cfg.paths.binary, src=binary, mode=0o755),
        FileEntry(dst=ctx["validator"], src=_require(native, NATIVE_VALIDATOR), mode=0o755),
        # Links the state paths (app.state_paths) into the extracted app before each unit's command.
        FileEntry(dst=ctx["app_state"], src=_require(native, NATIVE_APP_STATE), mode=0o755),
        FileEntry(dst=f"{cfg.paths.libexec_dir}/server-env", src=_require(native, NATIVE_SERVER_ENV), mode=0o755),
        # The template of the admin's settings (placeholders only, no secret).
        # The settings file itself is no conffile: dpkg would stop an unattended
        # upgrade at a prompt whenever the template changed. postinst / %post
        # create it from this template when it is absent and never replace it.
        FileEntry(dst=ctx["env_template"], src=_require(native, NATIVE_ENV_EXAMPLE), mode=0o644),
        FileEntry(dst=ctx["sysusers_conf"], src=_require(native, NATIVE_SYSUSERS), mode=0o644),
        FileEntry(dst=ctx["tmpfiles_conf"], src=_require(native, NATIVE_TMPFILES), mode=0o644),
    ]
    units = _units(native)
    if not any(u.endswith(".service") for u in units):
        raise BuildError(f"{native}/systemd has no units; re-assemble it with `invoke dist.native`")
    files += [FileEntry(dst=f"{UNIT_DIR}/{u}", src=native / "systemd" / u, mode=0o644) for u in units]

    files.append(FileEntry(dst=f"{doc}/README.md", src=_require(native, NATIVE_README), mode=0o644, doc=True))
    for sub, target in (("docs", "docs"), ("config", "examples")):
        folder = native / sub
        if folder.is_dir():
            files += [FileEntry(dst=f"{doc}/{target}/{p.name}", src=p, mode=0o644, doc=True)
                      for p in sorted(folder.iterdir()) if p.is_file()]

    files.append(FileEntry(dst=f"{doc}/copyright", mode=0o644, doc=True,
                           src=Generated("copyright", render("common/copyright.j2", ctx, root).encode())))
    files.append(FileEntry(dst=f"/usr/share/man/man1/{ctx['man_name']}.1.gz", mode=0o644, doc=True,
                           src=Generated("manpage.1.gz", _gz(render("common/manpage.1.j2", ctx, root).encode()))))
    for fmt in FORMATS:  # the changelog.Debian.gz and lintian overrides of the .deb, the .rpm's rpmlintrc
        for own in format_of(fmt).files(name, doc):
            data = render(own.template, ctx, root).encode()
            files.append(FileEntry(dst=own.dst, mode=0o644, doc=own.doc, formats=(fmt,),
                                   src=Generated(own.name, _gz(data) if own.gzip else data)))

    dirs = [DirEntry(dst=cfg.paths.config_dir, mode=0o755),
            DirEntry(dst=cfg.paths.libexec_dir, mode=0o755),
            DirEntry(dst=str(PurePosixPath(ctx["env_template"]).parent), mode=0o755),
            DirEntry(dst=doc, mode=0o755)]
    dirs += [DirEntry(dst=f"{doc}/{sub}", mode=0o755) for sub in ("docs", "examples")
             if any(f.dst.startswith(f"{doc}/{sub}/") for f in files)]
    dirs += [DirEntry(dst=cfg.paths.state_dir, mode=0o750, owner=user, group=user),
             DirEntry(dst=cfg.paths.cache_dir, mode=0o750, owner=user, group=user)]

    scripts = {}
    for fmt in FORMATS:
        rendered = [render(f"{fmt}/{script}.j2", {**ctx, "format": fmt}, root).encode()
                    for script in SCRIPT_NAMES[fmt]]
        scripts[fmt] = Scripts(*(Generated(f"{fmt}-{n}", data) for n, data in zip(SCRIPT_NAMES[fmt], rendered)))

    # rpm owns the settings file without shipping it (%ghost): `rpm -qf` names
    # the package, and an upgrade from a package that shipped it as
    # %config(noreplace) does not take it away (as .rpmsave) with the old files.
    ghosts = [GhostEntry(dst=ctx["env_file"], mode=0o640, group=user)]

    _check_unique(files, dirs, ghosts)
    return PackageSpec(
        name=name,
        version=cfg.version,
        release=pkg.release,
        arch="amd64" if cfg.builder.platform == "linux/amd64" else "arm64",
        maintainer=pkg.maintainer,
        vendor=pkg.vendor,
        homepage=pkg.homepage,
        license=license.spdx,
        summary=SUMMARY,
        description=render("common/description.j2", ctx, root).strip(),
        deb_section=DEB_SECTION,
        rpm_group=RPM_GROUP,
        depends={"deb": pkg.deb_depends, "rpm": pkg.rpm_depends},
        recommends=pkg.recommends,
        files=tuple(sorted(files, key=lambda f: f.dst)),
        directories=tuple(sorted(dirs, key=lambda d: d.dst)),
        ghosts=tuple(ghosts),
        scripts=scripts,
        compression={"deb": pkg.deb_compression, "rpm": pkg.rpm_compression},
        source_date_epoch=cfg.source_date_epoch,
        changelog=ChangelogEntry(
            version=f"{cfg.version}-{pkg.release}",
            epoch=cfg.source_date_epoch,
            author=pkg.maintainer,
            changes=(f"OrangeScrum {cfg.version}, packaged by the OrangeScrum Cloud Builder {__version__}.",),
        ),
    )


def _check_unique(files: list[FileEntry], dirs: list[DirEntry], ghosts: list[GhostEntry]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for entry in [*files, *dirs, *ghosts]:
        for fmt in entry.formats:
            key = (fmt, entry.dst)
            if key in seen:
                raise BuildError(f"two package entries install {entry.dst} ({fmt}); check the paths.* settings")
            seen[key] = entry.dst
    names = [f.src.name for f in files if isinstance(f.src, Generated)]
    assert len(names) == len(set(names)), names


__all__ = [
    "AppLicense", "ChangelogEntry", "DirEntry", "FileEntry", "FORMATS", "Format", "Generated", "GhostEntry",
    "PackageSpec",
    "Scripts", "build_spec", "read_app_license", "render", "template_context",
]
