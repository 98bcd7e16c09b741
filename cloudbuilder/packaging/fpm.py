"""The fpm backend (the Ruby gem, run as a subprocess).

Checked against the real fpm 1.17.0 (its source: lib/fpm/package/{deb,rpm}.rb,
templates/{deb,rpm}.erb).  What each flag is for:

* ``-s dir -t deb|rpm`` with ``SRC=DST`` path mappings, one per file; fpm
  copies a file's mode from the file it copies (``needs_exact_modes``);
  ``--workdir``: the build's own work directory (fpm requires it to exist);
* ``--config-files`` (conffiles / ``%config(noreplace)``), and
  ``--deb-no-default-config-files`` so that nothing else under /etc becomes one;
* ``--before-install/--after-install/--before-remove/--after-remove`` with our
  own scripts, and never ``--deb-systemd`` (its wrappers rewrite the scripts);
* reproducibility: ``SOURCE_DATE_EPOCH`` and ``--source-date-epoch-default``
  (tar mtimes and order, gzip headers); the build runs fpm under umask 022
  (fpm's staging directory and the changelogs it writes take the umask).

The .deb (what fpm does differently per format is in ``_deb_args``/``_rpm_args``; the
formats' own syntax and names are in ``formats/deb.py`` and ``formats/rpm.py``):

* the control file is ours (``--deb-custom-control``, ``deb_control()``):
  fpm's template always writes ``License:`` and, with ``--vendor``,
  ``Vendor:``, fields dpkg does not know (lintian: unknown-field);
  the fields are ``formats.deb.control``'s;
* ``--deb-user root --deb-group root``: fpm has one owner for every path of a
  .deb; the spec says so for both backends (``formats.deb.OWNER``);
* ``--deb-compression zst`` with ``--deb-compression-level 0``: fpm passes
  ``ZSTD_CLEVEL=-<level>``, a *negative* (fast) zstd level (-3 by default: 52 %
  larger than nfpm's); ``-0`` is level 0, zstd's default level 3, which is what
  nfpm's zstd writer (klauspost SpeedDefault) also targets.  xz: see below;
* the changelog: ``--deb-changelog`` with the text of the shared template
  (packaging/deb/changelog.j2).  fpm renames a lone ``changelog.Debian.gz`` to
  ``changelog.gz`` (an upstream name), so the payload carries a relative link
  ``changelog.gz -> changelog.Debian.gz`` that stops the rename (a second copy
  would be lintian's duplicate-changelog-files).

The .rpm:

* ``--rpm-attr MODE,USER,GROUP:PATH`` for per-file ownership;
* ``--directories`` only on the outermost directories of the spec: fpm adds
  every directory below each one itself (a nested one would be listed twice);
* ``--rpm-compression gzip|xzmt|none``: fpm has no zstd for rpm (its spec
  template fixes ``_binary_payload``, which a ``--define`` cannot override), so
  ``auto`` picks nfpm for a zstd .rpm;
* fpm's spec template writes ``Prefix: /`` (a relocatable package) and turns
  blank description lines into `` .``; there is no flag for either, so the
  build runs fpm with ``--edit`` and ``FPM_EDITOR`` set to a ``sed`` that
  deletes the one and restores the other (fpm's documented hook for editing
  the generated spec);
* fpm has no ``%ghost``: the same ``sed`` adds one ``%ghost %attr(...) PATH``
  line (``formats.rpm.ghost``) per ``spec.ghosts_for("rpm")`` after ``%defattr`` (rpmbuild 4.18 takes a
  ghost that is not in the build root; ``clamp_mtime_to_source_date_epoch``
  gives it the mtime nfpm writes);
* rpmbuild expands macros in the whole spec file fpm writes: header fields,
  ``%description``, the scriptlets and ``%changelog`` (``%{...}`` replaced,
  ``%(...)`` run by a shell).  Every text fpm puts there goes through
  ``escape.rpm_spec_text`` (``%`` -> ``%%``), the scriptlets too (fpm reads
  escaped copies, ``scripts/rpm-*.fpm``), so the .rpm carries what nfpm's
  does.  fpm itself expands no ``$VAR``; its environment is the minimal one
  of every packager (``packager.packager_environment``);
* ``--rpm-rpmbuild-define`` ``_buildhost``, ``use_source_date_epoch_as_buildtime``,
  ``clamp_mtime_to_source_date_epoch`` and ``_build_id_links none``; ``--rpm-digest sha256``.

xz, both formats: level 3 (``XZ_OPT=-3`` for the .deb, ``w3T.xzdio`` for the
.rpm; fpm's rpm default is 9) with liblzma's multi-threaded compressor
(``XZ_DEFAULTS=-T0``, rpm's ``xzmt``), which uses every core where nfpm's Go
xz uses one.  Measured on 30 MB of machine code, 2 busy shared cores
(benchmarks/package_speed.py, medians of 3): .deb 11.5 s and 9.3 MiB with fpm,
12.2 s and 10.4 MiB with nfpm; xz -3 alone takes 9.3 s with -T0, 14.5 s with
-T1.  (Single-threaded ``xz -6`` made fpm twice as slow as nfpm.)  xz >= 5.4
uses the multi-threaded compressor for every ``-T`` but 1, also on one core, so
the bytes do not depend on the machine's number of cores.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import shlex
import shutil
from pathlib import Path

from .. import runner
from ..errors import ConfigError
from ..escape import path as installed_path
from ..escape import rpm_spec_text
from .formats import Format, compressions, format_of
from .formats import deb as deb_format
from .formats import rpm as rpm_format
from .packager import Invocation, Layout, packager_environment
from .spec import Generated, PackageSpec


def _compressions(fmt: Format) -> dict[str, str]:
    """What fpm calls each compression of ``fmt`` it can write (formats/<fmt>.py's compressors)."""
    return compressions(fmt, "fpm")


_SCRIPT_FLAGS = (("pre", "--before-install"), ("post", "--after-install"),
                 ("preun", "--before-remove"), ("postun", "--after-remove"))
# What FPM_EDITOR does to the generated rpm spec file (run by `fpm --edit`); rpm_spec_edit adds the ghosts.
RPM_SPEC_EDIT = ("sed", "-i", "-e", r"/^Prefix: \/$/d", "-e", r"/^%description$/,/^%prep$/s/^ \.$//")


def rpm_spec_edit(spec: PackageSpec) -> tuple[str, ...]:
    """``RPM_SPEC_EDIT`` plus one ``%ghost`` line per ghost of the .rpm, after fpm's ``%defattr``."""
    edit = list(RPM_SPEC_EDIT)
    for g in spec.ghosts_for("rpm"):
        # installed_path: a plain absolute path, safe in a sed `a` text and a %files line.
        edit += ["-e", f"/^%defattr(/a {rpm_format.ghost(installed_path(g.dst), g.mode, g.owner, g.group)}"]
    return tuple(edit)

# fpm 1.16.0 added zstd .debs and --deb-compression-level (CHANGELOG.rst); checked against 1.17.0.
MIN_VERSION = (1, 16)
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@functools.lru_cache(maxsize=8)
def _version_output(path: str, _ident: tuple[int, int]) -> str:
    """What ``fpm --version`` prints (cached per binary: Ruby takes a while to start)."""
    try:
        done = runner.run([path, "--version"], what="fpm --version", timeout=120,
                          env=packager_environment(os.environ, {}))
    except runner.NOT_RUN as exc:
        return f"<failed: {exc}>"
    return (done.stdout + done.stderr).strip()


def installed_version(program: str = "fpm") -> tuple[tuple[int, ...] | None, str]:
    """(version, what it printed) of the ``program`` on PATH; version None when it is not fpm 1.x.

    The Fortran package manager is also called ``fpm``; it prints ``Version: 0.x.y, alpha``
    and more lines, where fpm (the packager) prints its bare version.
    """
    path = shutil.which(program)
    if path is None:
        return None, ""
    st = os.stat(path)
    out = _version_output(path, (st.st_mtime_ns, st.st_size))
    match = _VERSION.fullmatch(out)
    if match is None or match.group(1) != "1":
        return None, out
    return tuple(int(x) for x in match.groups()), out


def deb_control(spec: PackageSpec, installed_size_kib: int) -> str:
    """The .deb's control file (``--deb-custom-control``): ``formats.deb.control`` of the spec."""
    return deb_format.control(
        package=spec.name, version=spec.full_version, section=spec.deb_section, arch=spec.arch, maintainer=spec.maintainer,
        installed_size_kib=installed_size_kib, depends=spec.depends["deb"], recommends=spec.recommends,
        homepage=spec.homepage, summary=spec.summary, description=spec.description)


def installed_size_kib(spec: PackageSpec) -> int:
    """Installed-Size of the .deb's payload (``formats.deb.installed_size_kib``)."""
    return deb_format.installed_size_kib(
        len(f.src.data) if isinstance(f.src, Generated) else f.src.stat().st_size for f in spec.files_for("deb"))


class FpmBackend:
    name = "fpm"
    program = "fpm"
    needs_exact_modes = True  # fpm takes a file's mode from the file it copies

    def preflight(self) -> None:
        """Nothing beyond ``missing()`` (which checks the version and rpmbuild)."""

    def missing(self, fmt: Format) -> str | None:
        version, printed = installed_version(self.program)
        if version is None:
            if not printed:
                return "`fpm` is not on PATH"
            first = printed.splitlines()[0] if printed else ""
            return (f"the `fpm` on PATH ({shutil.which(self.program)}) is not fpm 1.x, the packager: "
                    f"`fpm --version` printed {first!r} (the Fortran package manager is also called fpm)")
        if version[:2] < MIN_VERSION:
            return (f"fpm {'.'.join(map(str, version))} is too old: zstd .debs and --deb-compression-level "
                    f"need fpm >= {'.'.join(map(str, MIN_VERSION))}")
        if fmt == "rpm" and shutil.which("rpmbuild") is None:
            return "fpm writes an .rpm with rpmbuild, which is not on PATH (apt-get install rpm; dnf install rpm-build)"
        return None

    def unsupported(self, fmt: Format, compression: str) -> str | None:
        if compression not in _compressions(fmt):
            supported = ", ".join(_compressions(fmt))
            return (f"fpm cannot write a {compression}-compressed .{fmt} (it knows {supported}); "
                    f"set package.{fmt}_compression to one of those, or use package.backend=nfpm")
        return None

    def rpm_changelog(self, spec: PackageSpec) -> str:
        """The %changelog entry (``formats.rpm.changelog``)."""
        entry = spec.changelog
        return rpm_format.changelog(version=entry.version, epoch=entry.epoch, author=entry.author,
                                    changes=entry.changes)

    def plan(self, spec: PackageSpec, fmt: Format, layout: Layout, output: Path) -> Invocation:
        compression = spec.compression[fmt]
        reason = self.unsupported(fmt, compression)
        if reason:
            raise ConfigError(reason)
        work = layout.work
        epoch = str(spec.source_date_epoch)
        # The .rpm's texts reach rpmbuild's macro expansion (the module docstring); the .deb's control
        # file is ours and fpm reads --maintainer/--url there for nothing it writes.
        text = rpm_spec_text if fmt == "rpm" else str
        argv: list[str] = [
            self.program, "-s", "dir", "-t", fmt, "--force", "--package", str(output),
            "--workdir", str(work),
            "--name", spec.name, "--version", spec.version, "--iteration", spec.release,
            "--architecture", spec.arch_for(fmt), "--maintainer", text(spec.maintainer),
            "--url", text(spec.homepage),
            "--source-date-epoch-default", epoch, "--no-auto-depends",
        ]
        for entry in spec.files_for(fmt):
            if entry.config:
                argv += ["--config-files", entry.dst]
        level = format_of(fmt).compressors[compression].fpm_level
        files: dict[str, str] = {}
        for name, flag in _SCRIPT_FLAGS:
            if fmt == "rpm":  # an escaped copy: rpmbuild expands macros in scriptlets
                script = getattr(spec.scripts["rpm"], name)
                assert isinstance(script, Generated)
                files[f"scripts/rpm-{name}.fpm"] = rpm_spec_text(script.data.decode("utf-8"))
                argv += [flag, str(work / f"scripts/rpm-{name}.fpm")]
            else:
                argv += [flag, str(layout.scripts[name])]
        links: dict[str, str] = {}  # work-relative path -> link target
        env = {"SOURCE_DATE_EPOCH": epoch}
        extra: list[str] = []  # SRC=DST mappings that are not spec entries
        if fmt == "deb" and compression == "xz":
            # tar runs xz(1), which reads XZ_DEFAULTS before fpm's XZ_OPT=-LEVEL: all cores,
            # as rpm's xzmt does for the .rpm (see the module docstring).
            env["XZ_DEFAULTS"] = "-T0"
        if fmt == "deb":
            argv += self._deb_args(spec, layout, files, links, extra, level)
        else:
            argv += self._rpm_args(spec, layout, files, env, level)
        # The payload: empty directories first, then every file, as SRC=DST.
        for d in spec.dirs_for(fmt):
            argv.append(f"{layout.dirs[d.dst]}/={d.dst}/")
        for entry in spec.files_for(fmt):
            if fmt == "deb" and entry.dst.endswith(f"/{deb_format.CHANGELOG}"):
                continue  # fpm writes it from --deb-changelog
            argv.append(f"{layout.sources[entry.dst]}={entry.dst}")
        argv += extra
        return Invocation(argv=tuple(argv), env=env, files=files, links=links, cwd=work)

    def _deb_args(self, spec: PackageSpec, layout: Layout, files: dict[str, str], links: dict[str, str],
                  extra: list[str], level: str | None) -> list[str]:
        work = layout.work
        changelog = next(f for f in spec.files_for("deb") if f.dst.endswith(f"/{deb_format.CHANGELOG}"))
        assert isinstance(changelog.src, Generated)
        files["control"] = deb_control(spec, installed_size_kib(spec))
        files["changelog.Debian"] = gzip.decompress(changelog.src.data).decode()
        # Stops fpm renaming its changelog.Debian.gz to changelog.gz (see the module docstring).
        links["links/changelog.gz"] = "changelog.Debian.gz"
        extra.append(f"{work / 'links/changelog.gz'}={changelog.dst.rsplit('/', 1)[0]}/changelog.gz")
        args = ["--deb-custom-control", str(work / "control"), "--deb-no-default-config-files",
                "--deb-user", "root", "--deb-group", "root",
                "--deb-compression", _compressions("deb")[spec.compression["deb"]]]
        if level is not None:
            args += ["--deb-compression-level", level]
        args += ["--deb-changelog", str(work / "changelog.Debian")]
        return args

    def _rpm_args(self, spec: PackageSpec, layout: Layout, files: dict[str, str], env: dict[str, str],
                  level: str | None) -> list[str]:
        description = format_of("rpm").description(spec.summary, spec.description)
        text = rpm_spec_text  # every text below lands in the spec file (the module docstring)
        args = ["--vendor", text(spec.vendor), "--license", text(spec.license), "--description", text(description),
                "--category", text(spec.rpm_group)]
        for dep in spec.depends["rpm"]:
            args += ["--depends", text(dep)]
        args += ["--rpm-os", "linux", "--rpm-summary", text(spec.summary), "--rpm-digest", "sha256",
                 "--rpm-compression", _compressions("rpm")[spec.compression["rpm"]]]
        if level is not None:
            args += ["--rpm-compression-level", level]
        args += ["--rpm-changelog", str(layout.work / "changelog.rpm"),
                 "--rpm-rpmbuild-define", f"_buildhost {rpm_format.BUILDHOST}",
                 "--rpm-rpmbuild-define", "use_source_date_epoch_as_buildtime 1",
                 "--rpm-rpmbuild-define", "clamp_mtime_to_source_date_epoch 1",
                 "--rpm-rpmbuild-define", "_build_id_links none",
                 "--edit"]
        env["FPM_EDITOR"] = shlex.join(rpm_spec_edit(spec))
        for dep in spec.recommends:
            args += ["--rpm-tag", f"Recommends: {text(dep)}"]
        dirs = spec.dirs_for("rpm")
        for d in dirs:
            if not any(d.dst.startswith(other.dst + "/") for other in dirs):
                args += ["--directories", d.dst]
        for d in dirs:
            args += ["--rpm-attr", _rpm_attr(d.mode, d.owner, d.group, d.dst)]
        for entry in spec.files_for("rpm"):
            args += ["--rpm-attr", _rpm_attr(entry.mode, entry.owner, entry.group, entry.dst)]
        files["changelog.rpm"] = text(self.rpm_changelog(spec))
        return args


def _rpm_attr(mode: int, owner: str, group: str, dst: str) -> str:
    """fpm's ``--rpm-attr MODE,USER,GROUP:PATH`` (it writes ``%attr(MODE,USER,GROUP) PATH``)."""
    return f"{mode:04o},{owner},{group}:{dst}"
