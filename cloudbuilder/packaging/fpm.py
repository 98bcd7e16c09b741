"""The fpm backend (the Ruby gem, run as a subprocess).

fpm cannot be installed on our build machines (no gem registry), so this
backend is proven by golden tests of its argv and by a real-run test wherever
fpm is on PATH.  Flags as documented by fpm (docs/packages/cli/{deb,rpm}.rst,
lib/fpm/package/{deb,rpm}.rb, templates/rpm.erb):

* ``-s dir -t deb|rpm`` with ``SRC=DST`` path mappings, one per file;
* ``--config-files`` (conffiles / ``%config(noreplace)``), and
  ``--deb-no-default-config-files`` so that nothing else under /etc becomes one;
* ``--before-install/--after-install/--before-remove/--after-remove`` with our
  own scripts, and never ``--deb-systemd`` (its wrappers rewrite the scripts);
* ``--rpm-attr MODE,USER,GROUP:PATH`` for per-file ownership in the rpm (the
  .deb gets root-owned files; the scripts' tmpfiles.d entry sets the owners);
* ``--deb-compression gz|xz|zst|none`` and ``--rpm-compression gzip|xz|none``:
  fpm has no zstd for rpm (its spec template fixes ``_binary_payload``, which
  a ``--define`` cannot override), so ``auto`` picks nfpm for a zstd .rpm;
* reproducibility: ``SOURCE_DATE_EPOCH`` and ``--source-date-epoch-default``
  (tar mtimes and order, gzip headers), and for rpmbuild
  ``--rpm-rpmbuild-define`` ``_buildhost``, ``use_source_date_epoch_as_buildtime``,
  ``clamp_mtime_to_source_date_epoch`` and ``_build_id_links none``; ``--rpm-digest sha256``.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import ConfigError
from .backends import Invocation, Layout
from .nfpm import BUILDHOST
from .spec import Format, PackageSpec

_COMPRESSION: dict[Format, dict[str, str]] = {
    "deb": {"zstd": "zst", "xz": "xz", "gzip": "gz", "none": "none"},
    "rpm": {"xz": "xz", "gzip": "gzip", "none": "none"},
}
_SCRIPT_FLAGS = (("pre", "--before-install"), ("post", "--after-install"),
                 ("preun", "--before-remove"), ("postun", "--after-remove"))


class FpmBackend:
    name = "fpm"
    program = "fpm"
    needs_exact_modes = True  # fpm takes a file's mode from the file it copies

    def preflight(self) -> None:
        """Nothing to check beyond PATH (fpm's flags used here are old and stable)."""

    def unsupported(self, fmt: Format, compression: str) -> str | None:
        if compression not in _COMPRESSION[fmt]:
            supported = ", ".join(_COMPRESSION[fmt])
            return (f"fpm cannot write a {compression}-compressed .{fmt} (it knows {supported}); "
                    f"set package.{fmt}_compression to one of those, or use package.backend=nfpm")
        return None

    def rpm_changelog(self, spec: PackageSpec) -> str:
        entry = spec.changelog
        day = time.strftime("%a %b %d %Y", time.gmtime(entry.epoch))
        return f"* {day} {entry.author} - {entry.version}\n" + "".join(f"- {c}\n" for c in entry.changes)

    def deb_changelog(self, spec: PackageSpec) -> str:
        """fpm gzips this into changelog.Debian.gz (the spec's own copy is not mapped)."""
        entry = spec.changelog
        date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(entry.epoch))
        changes = "".join(f"  * {c}\n" for c in entry.changes)
        return f"{spec.name} ({entry.version}) stable; urgency=medium\n\n{changes}\n -- {entry.author}  {date}\n"

    def plan(self, spec: PackageSpec, fmt: Format, layout: Layout, output: Path) -> Invocation:
        reason = self.unsupported(fmt, spec.compression[fmt])
        if reason:
            raise ConfigError(reason)
        work = layout.work
        epoch = str(spec.source_date_epoch)
        description = spec.summary + "\n" + (spec.description if fmt == "deb" else
                                             spec.description.replace("\n.\n", "\n\n"))
        argv: list[str] = [
            self.program, "-s", "dir", "-t", fmt, "--force", "--package", str(output),
            "--workdir", str(work / "fpm-tmp"),
            "--name", spec.name, "--version", spec.version, "--iteration", spec.release,
            "--architecture", spec.arch_for(fmt),
            "--maintainer", spec.maintainer, "--vendor", spec.vendor, "--url", spec.homepage,
            "--license", spec.license, "--description", description,
            "--category", spec.deb_section if fmt == "deb" else spec.rpm_group,
            "--source-date-epoch-default", epoch,
            "--no-auto-depends",
        ]
        for dep in spec.depends[fmt]:
            argv += ["--depends", dep]
        for entry in spec.files_for(fmt):
            if entry.config:
                argv += ["--config-files", entry.dst]
        for name, flag in _SCRIPT_FLAGS:
            argv += [flag, str(layout.scripts[name])]
        files: dict[str, str] = {}
        if fmt == "deb":
            argv += ["--deb-no-default-config-files", "--deb-priority", "optional",
                     "--deb-user", "root", "--deb-group", "root",
                     "--deb-compression", _COMPRESSION["deb"][spec.compression["deb"]],
                     "--deb-changelog", str(work / "changelog.Debian"),
                     # Without an upstream changelog fpm renames ours to changelog.gz.
                     "--deb-upstream-changelog", str(work / "changelog.Debian")]
            for dep in spec.recommends:
                argv += ["--deb-recommends", dep]
            files["changelog.Debian"] = self.deb_changelog(spec)
        else:
            argv += ["--rpm-os", "linux", "--rpm-summary", spec.summary, "--rpm-digest", "sha256",
                     "--rpm-compression", _COMPRESSION["rpm"][spec.compression["rpm"]],
                     "--rpm-changelog", str(work / "changelog.rpm"),
                     "--rpm-rpmbuild-define", f"_buildhost {BUILDHOST}",
                     "--rpm-rpmbuild-define", "use_source_date_epoch_as_buildtime 1",
                     "--rpm-rpmbuild-define", "clamp_mtime_to_source_date_epoch 1",
                     "--rpm-rpmbuild-define", "_build_id_links none"]
            for dep in spec.recommends:
                argv += ["--rpm-tag", f"Recommends: {dep}"]
            for d in spec.dirs_for(fmt):
                argv += ["--directories", d.dst]
            for d in spec.dirs_for(fmt):
                argv += ["--rpm-attr", f"{d.mode:04o},{d.owner},{d.group}:{d.dst}"]
            for entry in spec.files_for(fmt):
                argv += ["--rpm-attr", f"{entry.mode:04o},{entry.owner},{entry.group}:{entry.dst}"]
            files["changelog.rpm"] = self.rpm_changelog(spec)
        # The payload: empty directories first, then every file, as SRC=DST.
        for d in spec.dirs_for(fmt):
            argv.append(f"{layout.dirs[d.dst]}/={d.dst}/")
        for entry in spec.files_for(fmt):
            if fmt == "deb" and entry.dst.endswith("/changelog.Debian.gz"):
                continue  # fpm writes it from --deb-changelog
            argv.append(f"{layout.sources[entry.dst]}={entry.dst}")
        return Invocation(argv=tuple(argv), env={"SOURCE_DATE_EPOCH": epoch}, files=files, cwd=work)
